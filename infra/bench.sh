#!/usr/bin/env bash
# `make bench`: benchmarks beside the Locust suite, against the private PostgreSQL of infra/services.sh
# (started here when not running; stopped again only if this script started it). Each benchmark prints JSON
# lines. Add further benchmarks to BENCHMARKS below.
set -euo pipefail
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
for bench in "${BENCHMARKS[@]}"; do
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
