#!/usr/bin/env bash
# Builds a Debian bookworm root image with debootstrap, from Debian's own package mirror,
# and imports it into the engine at DOCKER_HOST: the local stand-ins for registry images
# on a machine that cannot pull (tests/images/__init__.py names them and their packages).
#   bash tests/images/debootstrap.sh TAG PACKAGE[,PACKAGE...]
# Skips the work when TAG already exists: built once per machine.
set -euo pipefail

TAG="${1:?usage: debootstrap.sh TAG PACKAGES}"
PACKAGES="${2:?usage: debootstrap.sh TAG PACKAGES}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if docker image inspect "$TAG" >/dev/null 2>&1; then
  echo "debootstrap.sh: $TAG already exists" >&2
  exit 0
fi
command -v debootstrap >/dev/null 2>&1 || {
  echo "debootstrap.sh: debootstrap is missing (apt-get install debootstrap)" >&2; exit 1; }
root="$(mktemp -d /tmp/aegis-test-root.XXXXXX)"
log="$root.log"
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase --include="$PACKAGES" bookworm "$root" "$MIRROR" \
  >"$log" 2>&1 || {
  echo "debootstrap.sh: debootstrap failed for $TAG, see $log" >&2; exit 1; }
rm -f "$log"
# Keep the image small: package lists, caches and docs are not needed at run time.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/usr/share/doc/* \
  "$root"/usr/share/man/* "$root"/usr/share/locale/*
tar -C "$root" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' - "$TAG" >/dev/null
echo "debootstrap.sh: built $TAG" >&2
