#!/usr/bin/env bash
# Makes a Docker engine, the static busybox (for test images), docker-compose,
# debootstrap (for the local base images of tests/images), openssl (for the TLS engine
# test's certificates), iproute2 (the fault tests' private engines run in network
# namespaces of their own), pgbouncer (the tests of aegis through a pooler in
# transaction mode) and postgresql-15 (a primary and its standby for the failover tests)
# available when this machine allows it: installs the Debian
# packages as root if missing, starts dockerd in the background, and waits for it.
# Without root or apt it only reports, and the Docker tests skip with a reason (CI sets
# AEGIS_REQUIRE_DOCKER=1, which turns those skips into failures).
set -u

say() { echo "ensure_docker: $*" >&2; }

have_compose() { docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null 2>&1; }
if docker info >/dev/null 2>&1 && [ -x /bin/busybox ] && have_compose \
   && command -v debootstrap >/dev/null 2>&1 && command -v openssl >/dev/null 2>&1 \
   && command -v ip >/dev/null 2>&1 && command -v pgbouncer >/dev/null 2>&1 \
   && [ -x /usr/lib/postgresql/15/bin/pg_basebackup ]; then
  exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
  say "no Docker engine and no root/apt to install one; Docker tests will skip"
  exit 0
fi
missing=""
command -v dockerd >/dev/null 2>&1 || missing="$missing docker.io"
[ -x /bin/busybox ] || missing="$missing busybox-static"
have_compose || missing="$missing docker-compose"
# debootstrap builds the local base images of tests/images (no registry here)
command -v debootstrap >/dev/null 2>&1 || missing="$missing debootstrap"
command -v openssl >/dev/null 2>&1 || missing="$missing openssl"
command -v ip >/dev/null 2>&1 || missing="$missing iproute2"
command -v pgbouncer >/dev/null 2>&1 || missing="$missing pgbouncer"
[ -x /usr/lib/postgresql/15/bin/pg_basebackup ] || missing="$missing postgresql-15"
if [ -n "$missing" ]; then
  say "installing$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq $missing >/dev/null \
    || { say "apt-get install$missing failed"; exit 1; }
fi
if ! docker info >/dev/null 2>&1; then
  say "starting dockerd"
  nohup dockerd >/tmp/aegis-dockerd.log 2>&1 &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
fi
if docker info >/dev/null 2>&1; then
  say "engine ready ($(docker version --format '{{.Server.Version}}'))"
else
  say "dockerd did not start; see /tmp/aegis-dockerd.log"
  exit 1
fi
