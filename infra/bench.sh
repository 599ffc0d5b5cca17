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
