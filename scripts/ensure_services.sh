#!/usr/bin/env bash
# The end-to-end tests' Celery leg needs Debian's redis-server (started by the tests themselves
# on 127.0.0.1). Install it when it is missing; it is the only system package the tests need.
set -euo pipefail
if command -v redis-server >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "redis-server is missing: install it (sudo apt-get install redis-server) and run again." >&2
  exit 1
fi
echo "Installing redis-server (Debian package) for the Celery end-to-end tests..."
apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null
redis-server --version
