#!/bin/sh
# Installs the Debian packages the benchmarks run as peers, when they are missing.
# Mosquitto: every benchmark starts its own broker on a free port (scripts/system-deps.sh).
# InfluxDB 1.6 (package influxdb): bench/dashboard.py starts its own influxd, with its own
# config, data directory and free ports. The package's service is stopped and disabled right
# after the install, so nothing is left listening on 8086/8088.
set -eu
missing=""
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing="$missing mosquitto"
[ -x /usr/bin/influxd ] || missing="$missing influxdb"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "bench-deps: missing Debian packages:$missing (run as root: apt-get install -y$missing)" >&2
  exit 1
fi
echo "bench-deps: installing$missing"
apt-get update -qq
# policy-rc.d exit 101 keeps the maintainer scripts from starting the services at all, where
# invoke-rc.d is used; the stop below covers the rest.
policy=/usr/sbin/policy-rc.d
own_policy=""
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  own_policy=1
fi
status=0
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null || status=$?
[ -n "$own_policy" ] && rm -f "$policy"
[ "$status" -eq 0 ] || exit "$status"
case "$missing" in
*influxdb*)
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl disable --now influxdb >/dev/null 2>&1 || true
  else
    service influxdb stop >/dev/null 2>&1 || true
    update-rc.d influxdb disable >/dev/null 2>&1 || true
  fi
  ;;
esac
exit 0
