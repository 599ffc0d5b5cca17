#!/usr/bin/env bash
# `make bench`: benchmarks beside the Locust suite, against the private PostgreSQL of infra/services.sh
# (started here when not running; stopped again only if this script started it). Each benchmark prints JSON
# lines. Add further benchmarks to BENCHMARKS below. `infra/bench.sh redeem` (`make bench-redeem`) runs only
# the redemption benchmark.
set -euo pipefail
ONLY=${1:-}
cd "$(dirname "$0")/.."
PY=.venv/bin/python
eval "$(infra/services.sh env | sed 's/^/export /')"
started=0
if ! infra/services.sh status >/dev/null 2>&1 || ! $PY -c "import psycopg,os; psycopg.connect(os.environ['DATABASE_URL']).close()" 2>/dev/null; then
  infra/services.sh start; started=1
fi
trap '[ "$started" = 1 ] && infra/services.sh stop' EXIT

BENCHMARKS=(
  "locust/bench_ledger.py"
  "locust/bench_stats.py"
)
[ "$ONLY" = redeem ] && BENCHMARKS=() && BENCH_FLOOR=0 && BENCH_INGEST=0
for bench in ${BENCHMARKS[@]+"${BENCHMARKS[@]}"}; do
  echo "== $bench" >&2
  $PY $bench ${BENCH_ARGS:-}
done
FLOOR=${SQL_FLOOR:-../shared/bench/sql_floor.py}
if [ -f "$FLOOR" ] && [ "${BENCH_FLOOR:-1}" = 1 ]; then
  echo "== $FLOOR (the database floor, for comparison)" >&2
  $PY "$FLOOR" "$DATABASE_URL" --actions 20000 --clients 1
fi

# Ingestion end to end (signed HTTP batches -> gunicorn -> PostgreSQL -> Celery worker -> credited), with
# pgbench TPC-B and the SQL floor measured in the same run. Needs the stack of `make up` (started here if
# it is not running, and stopped again afterwards).
if [ "${BENCH_INGEST:-1}" = 1 ]; then
  stack_started=0
  if ! curl -fsS "http://127.0.0.1:${PORT:-8000}/readyz" >/dev/null 2>&1; then
    infra/stack.sh up >/dev/null; stack_started=1
  fi
  echo "== locust/bench_ingest.py" >&2
  $PY locust/bench_ingest.py --host "http://127.0.0.1:${PORT:-8000}" ${BENCH_INGEST_ARGS:-} || status=$?
  if [ "$stack_started" = 1 ]; then infra/stack.sh down >/dev/null; started=0; fi
  [ "${status:-0}" = 0 ] || exit "$status"
fi

# Redemption end to end (50 residents over HTTP -> gunicorn -> PostgreSQL on one reward with 10,000 items),
# beside ../shared/bench/redeem_floor.py measured in the same run. Needs the stack of `make up` (started here if
# it is not running, and stopped again afterwards). BENCH_REDEEM=0 skips it; BENCH_REDEEM_ARGS passes options.
# A redemption waits on ~20 database round trips, so gunicorn gets more threads than CPUs (4 workers x 16 threads
# by default here; WEB_CONCURRENCY / GUNICORN_THREADS override).
if [ "${BENCH_REDEEM:-1}" = 1 ]; then
  eval "$(infra/services.sh env | sed 's/^/export /')"
  stack_started=0
  if ! curl -fsS "http://127.0.0.1:${PORT:-8000}/readyz" >/dev/null 2>&1; then
    WEB_CONCURRENCY=${WEB_CONCURRENCY:-4} GUNICORN_THREADS=${GUNICORN_THREADS:-16} infra/stack.sh up >/dev/null
    stack_started=1
  fi
  echo "== locust/bench_redeem.py" >&2
  $PY locust/bench_redeem.py --host "http://127.0.0.1:${PORT:-8000}" ${BENCH_REDEEM_ARGS:-} || status=$?
  if [ "$stack_started" = 1 ]; then infra/stack.sh down >/dev/null; started=0; fi
  [ "${status:-0}" = 0 ] || exit "$status"
fi

# Reads (issue 17): wallet, ledger, actions, methodologies, rewards each beside /healthz on the same gunicorn, with
# wrk at 16 connections (locust/bench_reads.py). Needs the stack of `make up` (started here if it is not running,
# and stopped again afterwards). BENCH_READS=0 skips it; BENCH_READS_ARGS passes options.
if [ "${BENCH_READS:-1}" = 1 ] && [ "$ONLY" != redeem ]; then
  eval "$(infra/services.sh env | sed 's/^/export /')"
  stack_started=0
  if ! curl -fsS "http://127.0.0.1:${PORT:-8000}/readyz" >/dev/null 2>&1; then
    infra/stack.sh up >/dev/null; stack_started=1
  fi
  echo "== locust/bench_reads.py" >&2
  $PY locust/bench_reads.py --host "http://127.0.0.1:${PORT:-8000}" ${BENCH_READS_ARGS:-} || status=$?
  if [ "$stack_started" = 1 ]; then infra/stack.sh down >/dev/null; started=0; fi
  [ "${status:-0}" = 0 ] || exit "$status"
fi
