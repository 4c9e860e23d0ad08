#!/usr/bin/env bash
# Start (or stop) a throwaway PostgreSQL for the store tests, as the postgres user, on loopback.
#   scripts/postgres.sh start   -> prints the URL to use as CONVEYOR_TEST_PG_URL
#   scripts/postgres.sh stop
set -euo pipefail
PORT=${CONVEYOR_PG_PORT:-55432}
DIR=${CONVEYOR_PG_DIR:-/tmp/conveyor-pg}
BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
[ -n "$BIN" ] || { echo "postgres: not installed (apt-get install -y postgresql)" >&2; exit 3; }
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
case "${1:-start}" in
  start)
    if [ ! -f "$DIR/PG_VERSION" ]; then
      mkdir -p "$DIR"; [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$DIR"
      as_pg "$BIN/initdb" -D "$DIR" -A trust -U postgres >/dev/null
    fi
    if ! as_pg "$BIN/pg_ctl" -D "$DIR" status >/dev/null 2>&1; then
      as_pg "$BIN/pg_ctl" -D "$DIR" -l "$DIR/server.log" -w \
        -o "-p $PORT -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
    fi
    as_pg "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname='conveyor_test'" | grep -q 1 || \
      as_pg "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres conveyor_test
    echo "postgresql://postgres@127.0.0.1:$PORT/conveyor_test"
    ;;
  stop)
    as_pg "$BIN/pg_ctl" -D "$DIR" -m fast stop >/dev/null 2>&1 || true
    ;;
esac
