#!/usr/bin/env bash
# Starts/stops the project's private PostgreSQL 15 and Redis on loopback ports, data under .local/.
# Never the system default ports (5432/6379), so it cannot collide with another service.
#   infra/services.sh install|start|stop|status|env
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
LOCAL=${LOCAL_DIR:-$ROOT/.local}
PG_PORT=${PG_PORT:-55432}
REDIS_PORT=${REDIS_PORT:-56379}
PG_DB=${PG_DB:-qingdao}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PGDATA=$LOCAL/pg/data
PGSOCK=$LOCAL/pg/socket
REDIS_DIR=$LOCAL/redis

as_pg() {  # PostgreSQL refuses to run as root: run its tools as the 'postgres' system user then.
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

install() {
  local missing=()
  [ -x "$PG_BIN/postgres" ] || missing+=(postgresql-15 postgresql-client-15)
  command -v redis-server >/dev/null || missing+=(redis-server)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]} from Debian packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

start_pg() {
  mkdir -p "$LOCAL/pg" "$PGSOCK" "$LOCAL/logs"
  if [ "$(id -u)" = 0 ]; then chown -R postgres:postgres "$LOCAL/pg"; fi
  if [ ! -f "$PGDATA/PG_VERSION" ]; then
    as_pg "$PG_BIN/initdb" -D "$PGDATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
  fi
  if ! as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
    # Tuned for a disposable test/dev cluster: durability off is fine here, never in production.
    # PG_DURABLE=1 (the benchmarks) starts it the way production runs: fsync, synchronous_commit and
    # full_page_writes on.
    local durability="-c fsync=${PG_FSYNC:-off} -c synchronous_commit=off -c full_page_writes=off"
    if [ "${PG_DURABLE:-0}" = 1 ]; then durability="-c fsync=on -c synchronous_commit=on -c full_page_writes=on"; fi
    as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -l "$LOCAL/pg/postgres.log" -w -t 60 start -o \
      "-p $PG_PORT -k $PGSOCK -c listen_addresses=127.0.0.1 -c max_connections=300 $durability \
       -c shared_buffers=512MB -c max_wal_size=4GB ${PG_EXTRA_OPTS:-}" >/dev/null
  fi
  as_pg "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname='$PG_DB'" | grep -q 1 \
    || as_pg "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres "$PG_DB"
}

start_redis() {
  mkdir -p "$REDIS_DIR"
  if ! redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$REDIS_DIR" --daemonize yes \
      --pidfile "$REDIS_DIR/redis.pid" --logfile "$REDIS_DIR/redis.log" --save "" --appendonly no
    for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
  fi
}

stop() {
  if [ -f "$PGDATA/PG_VERSION" ]; then as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -m fast stop >/dev/null 2>&1 || true; fi
  redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
}

case "${1:-}" in
  install) install ;;
  start) install; start_pg; start_redis ;;
  stop) stop ;;
  status) as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" status || true; redis-cli -p "$REDIS_PORT" ping || true ;;
  env)
    echo "DATABASE_URL=postgres://postgres@127.0.0.1:$PG_PORT/$PG_DB"
    echo "REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0" ;;
  *) echo "usage: $0 install|start|stop|status|env" >&2; exit 2 ;;
esac
