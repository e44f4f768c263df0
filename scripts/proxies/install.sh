#!/usr/bin/env bash
# Installs the proxies the `real_proxy` tests run (tests/real_proxy): nginx and HAProxy
# from the distribution's own packages (Debian 12: nginx 1.22, HAProxy 2.6), the versions
# operators get from `apt-get install`. Needs root or password-less sudo, as
# scripts/asterisk/build.sh does; prints one line and exits 0 when it cannot install, and
# the tests then skip with that line. Installing does not start them (the tests run their
# own, on free ports); on a host with systemd, apt starts the packaged services on port 80:
# `systemctl disable --now nginx haproxy` if you do not want them.
set -euo pipefail

wanted=(nginx haproxy)
missing=()
for p in "${wanted[@]}"; do command -v "$p" >/dev/null 2>&1 || [ -x "/usr/sbin/$p" ] || missing+=("$p"); done
if [ "${#missing[@]}" -eq 0 ]; then exit 0; fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "proxies: no apt-get here; install ${missing[*]} yourself" >&2
  exit 0
fi
sudo=
if [ "$(id -u)" != 0 ]; then
  if sudo -n true 2>/dev/null; then sudo="sudo -n"; else
    echo "proxies: ${missing[*]} missing and neither root nor password-less sudo" >&2
    exit 0
  fi
fi
# apt's own lock makes this wait for a concurrent apt-get (scripts/asterisk/build.sh).
$sudo apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
$sudo env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
  --no-install-recommends "${missing[@]}" >&2
