#!/bin/sh
# Installs the Debian packages the test suite runs for real, when they are missing.
# Mosquitto: the integration tests start their own broker on a free port.
# Chromium: the browser tests drive it headless through Playwright.
set -eu
missing=""
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing="$missing mosquitto"
[ -x /usr/bin/chromium ] || missing="$missing chromium"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "system-deps: missing Debian packages:$missing (run as root: apt-get install -y$missing)" >&2
  exit 1
fi
echo "system-deps: installing$missing"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
