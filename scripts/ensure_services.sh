#!/usr/bin/env bash
# The end-to-end tests start their own services on 127.0.0.1, from Debian's packages: Redis (the
# Celery leg's broker) and PostgreSQL (the metadata database of every leg with several writers).
# Install what is missing; nothing is started here and no system service is enabled.
set -euo pipefail
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  missing+=(postgresql)
fi
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "Missing for the end-to-end tests: ${missing[*]}. Install (sudo apt-get install ${missing[*]}) and run again." >&2
  exit 1
fi
echo "Installing ${missing[*]} (Debian packages) for the end-to-end tests..."
apt-get update -qq >/dev/null
# policy-rc.d: the packages' install scripts must not start system services.
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
trap 'rm -f /usr/sbin/policy-rc.d' EXIT
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
