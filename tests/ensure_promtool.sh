#!/usr/bin/env bash
# Makes Debian's promtool (the prometheus package) available for the tests of the alert
# rules (tests/integration/test_prometheus_rules.py: `promtool check rules` and `promtool
# test rules`), as tests/ensure_docker.sh does for the Docker engine: installs it as root
# with apt-get when missing, without the recommended node exporter. Nothing is downloaded
# at test time. Without root or apt it only reports, and those tests skip with a reason
# (CI sets AEGIS_REQUIRE_DOCKER=1, which turns the skips into failures).
set -u

say() { echo "ensure_promtool: $*" >&2; }

if command -v promtool >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
  say "no promtool and no root/apt to install it; the alert rules' tests will skip"
  exit 0
fi
say "installing prometheus (for promtool)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null \
  && apt-get install -y -qq --no-install-recommends prometheus >/dev/null \
  || { say "apt-get install prometheus failed"; exit 1; }
say "installed ($(promtool --version 2>&1 | head -n 1))"
