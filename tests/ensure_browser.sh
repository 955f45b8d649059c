#!/usr/bin/env bash
# Makes Debian's chromium and chromium-driver available for the status page's browser
# tests (tests/browser/), and curl for its acceptance test, as tests/ensure_docker.sh does
# for the Docker engine: installs them as root with apt-get when missing. Nothing is downloaded at test time. Without root
# or apt it only reports, and the browser tests skip with a reason (CI sets
# AEGIS_REQUIRE_BROWSER=1, which turns those skips into failures).
set -u

say() { echo "ensure_browser: $*" >&2; }

if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] && command -v curl >/dev/null 2>&1
then
  exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
  say "no chromium and no root/apt to install it; the browser tests will skip"
  exit 0
fi
say "installing chromium chromium-driver curl"
export DEBIAN_FRONTEND=noninteractive
started=$(date +%s)
apt-get update -qq >/dev/null && apt-get install -y -qq chromium chromium-driver curl >/dev/null \
  || { say "apt-get install chromium chromium-driver curl failed"; exit 1; }
say "installed in $(( $(date +%s) - started ))s ($(/usr/bin/chromium --version 2>/dev/null))"
