#!/usr/bin/env bash
# Installs (from Debian's packages, when missing) and starts a throw-away PostgreSQL on
# loopback for the test suite, then prints the URL to use. Idempotent: a running server on
# the port is reused.
set -euo pipefail
PORT="${GRADESYNC_PG_PORT:-54329}"
DATA="${GRADESYNC_PG_DATA:-/tmp/gradesync-pg-$PORT}"

find_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/pg_ctl" ] && { echo "$d"; return 0; }
  done
  return 1
}

if ! BIN=$(find_bin); then
  [ "${GRADESYNC_PG_NO_INSTALL:-0}" = "1" ] && { echo "PostgreSQL not installed" >&2; exit 1; }
  echo "installing PostgreSQL from Debian's packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >&2
  BIN=$(find_bin)
fi

RUNAS=()
if [ "$(id -u)" = "0" ]; then
  id postgres >/dev/null 2>&1 || useradd --system --home /var/lib/postgresql postgres
  RUNAS=(runuser -u postgres --)
fi

if ! "${RUNAS[@]}" "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" 2>/dev/null; then
  if [ ! -s "$DATA/PG_VERSION" ]; then
    mkdir -p "$DATA"
    [ "${#RUNAS[@]}" -gt 0 ] && chown postgres "$DATA"
    "${RUNAS[@]}" "$BIN/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 >/dev/null
  fi
  "${RUNAS[@]}" "$BIN/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w \
    -o "-p $PORT -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null
fi
"${RUNAS[@]}" "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -tAc \
  "SELECT 1 FROM pg_database WHERE datname='gradesync_test'" | grep -q 1 \
  || "${RUNAS[@]}" "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres gradesync_test
echo "postgresql://postgres@127.0.0.1:$PORT/gradesync_test"
