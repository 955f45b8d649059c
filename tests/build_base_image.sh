#!/usr/bin/env bash
# Builds a local stand-in for python:3.11-slim when no image registry is reachable:
# a minimal Debian bookworm root (debootstrap, from Debian's own package mirror) with
# python3 and python3-venv, imported as a Docker image. Used as the BASE build argument
# of the Dockerfile:  docker build --build-arg BASE=aegis-base:bookworm-python3 .
# Skips the work when the tag already exists (built once per machine).
set -euo pipefail

TAG="${1:-aegis-base:bookworm-python3}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if docker image inspect "$TAG" >/dev/null 2>&1; then
  echo "build_base_image: $TAG already exists" >&2
  exit 0
fi
command -v debootstrap >/dev/null 2>&1 || {
  echo "build_base_image: debootstrap is missing (apt-get install debootstrap)" >&2; exit 1; }
root="$(mktemp -d /tmp/aegis-base-root.XXXXXX)"
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
  bookworm "$root" "$MIRROR" >/tmp/aegis-base-debootstrap.log 2>&1 || {
  echo "build_base_image: debootstrap failed, see /tmp/aegis-base-debootstrap.log" >&2; exit 1; }
# Keep the image small: package lists, caches and docs are not needed at run time.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/usr/share/doc/* \
  "$root"/usr/share/man/* "$root"/usr/share/locale/*
tar -C "$root" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' - "$TAG" >/dev/null
echo "build_base_image: built $TAG" >&2
