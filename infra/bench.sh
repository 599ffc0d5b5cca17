#!/usr/bin/env bash
# `make bench`: every benchmark on a DURABLE PostgreSQL (fsync, synchronous_commit, full_page_writes on), in its
# own data dir (.local/bench-pg) and on its own ports (PG_PORT+500, REDIS_PORT+500; BENCH_PG_PORT /
# BENCH_REDIS_PORT), so it never touches the test cluster. It refuses to run when the cluster is not durable.
#   1. records the machine (.local/bench/machine.json: cores, RAM, CPU, PostgreSQL version and settings, process
#      counts);
#   2. runs each benchmark, printing progress; each one's stdout (JSON lines) is kept in .local/bench/logs/:
#      ledger, stats (in-process, scratch database), then against the stack of `make up` on port PORT:
#      ingest, reads, the capacity probe and the Locust step load (load ceiling), then redeem (gunicorn with
#      more threads: 2 workers x 16 by default). A script that does not exist is skipped;
#   3. `locust/benchkit.py report`: .local/bench/summary.json (every summary line), the table of every ratio
#      with its two sides and target, one chart (.local/bench/bench.svg, copied to docs/bench.svg) and the
#      capacity model computed from the measured figures (.local/bench/capacity.json).
# `infra/bench.sh redeem` (`make bench-redeem`) runs only the redemption benchmark (and the report).
# Sizes: BENCH_<NAME>_ARGS (LEDGER, STATS, INGEST, READS, CAPACITY, REDEEM) replace each script's options;
# BENCH_SKIP="stats reads" skips benchmarks by name. The whole run takes about 10 minutes on 2 cores.
set -euo pipefail
ONLY=${1:-}
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=.venv/bin/python
OUT=.local/bench
LOGS=$OUT/logs
mkdir -p "$LOGS"
rm -f "$LOGS"/*.jsonl

export LOCAL_DIR=${BENCH_LOCAL_DIR:-$ROOT/.local/bench-pg}
export PG_PORT=${BENCH_PG_PORT:-$((${PG_PORT:-55432} + 500))}
export REDIS_PORT=${BENCH_REDIS_PORT:-$((${REDIS_PORT:-56379} + 500))}
export PG_DURABLE=1
export PORT=${PORT:-8000}
export JWT_ACCESS_MINUTES=${JWT_ACCESS_MINUTES:-120}  # the Locust users' tokens outlive the whole run
HOST=http://127.0.0.1:$PORT
eval "$(infra/services.sh env | sed 's/^/export /')"
PG_PID_FILE=$LOCAL_DIR/pg/data/postmaster.pid
T0=$(date +%s)
say() { printf '\n== [%4ss] %s\n' "$(($(date +%s) - T0))" "$*" >&2; }

if curl -fsS "$HOST/readyz" >/dev/null 2>&1; then
  echo "something already answers on $HOST: the benchmarks start their own stack on the durable cluster;" \
       "stop it (make down) or choose another PORT" >&2
  exit 2
fi

durable() { $PY -c "
import os, psycopg
with psycopg.connect(os.environ['DATABASE_URL']) as c:
    ok = all(c.execute(f'SHOW {k}').fetchone()[0] == 'on' for k in ('fsync', 'synchronous_commit', 'full_page_writes'))
raise SystemExit(0 if ok else 1)" 2>/dev/null; }

say "durable PostgreSQL in $LOCAL_DIR on port $PG_PORT, Redis on $REDIS_PORT"
infra/services.sh start
if ! durable; then  # a cluster left running without PG_DURABLE: restart it durable
  echo "the bench cluster runs without durability: restarting it with PG_DURABLE=1" >&2
  infra/services.sh stop; infra/services.sh start
fi
cleanup() { infra/stack.sh app-down >/dev/null 2>&1 || true; infra/services.sh stop || true; }
trap cleanup EXIT
export BENCH_REDEEM_GUNICORN="${BENCH_REDEEM_WORKERS:-2} workers x ${BENCH_REDEEM_THREADS:-16} threads"
if ! $PY locust/benchkit.py machine "$OUT" --dsn "$DATABASE_URL"; then
  echo "FATAL: the benchmark cluster is not durable (SHOW fsync / synchronous_commit / full_page_writes)" >&2
  exit 3
fi
$PY manage.py migrate --noinput >/dev/null

failed=()
skip() { [[ " ${BENCH_SKIP:-} " == *" $1 "* ]]; }
bench() {  # name script args...: runs one benchmark, its stdout into $LOGS/name.jsonl and the terminal
  local name=$1 script=$2; shift 2
  if skip "$name"; then say "$name: skipped (BENCH_SKIP)"; return; fi
  if [ ! -f "$script" ]; then say "$name: $script does not exist yet, skipped"; return; fi
  say "$name: $script $*"
  if ! $PY "$script" "$@" | tee "$LOGS/$name.jsonl"; then failed+=("$name"); echo "$name FAILED" >&2; fi
}
app_up() {  # workers threads
  say "stack: gunicorn $1 workers x $2 threads, Celery concurrency ${CELERY_CONCURRENCY:-2}, on $HOST"
  WEB_CONCURRENCY=$1 GUNICORN_THREADS=$2 infra/stack.sh up >/dev/null
}

# shellcheck disable=SC2086  # the *_ARGS are word lists on purpose
if [ "$ONLY" != redeem ]; then
  bench ledger locust/bench_ledger.py ${BENCH_LEDGER_ARGS:---single 500 --bulk 10000 --residents 5000}
  bench stats locust/bench_stats.py ${BENCH_STATS_ARGS:---credits 10000 --repeat 10}
  app_up "${WEB_CONCURRENCY:-4}" "${GUNICORN_THREADS:-2}"
  bench ingest locust/bench_ingest.py --host "$HOST" ${BENCH_INGEST_ARGS:---actions 50000}
  bench reads locust/bench_reads.py --host "$HOST" ${BENCH_READS_ARGS:-}
  bench capacity locust/bench_capacity.py --host "$HOST" --pg-pid-file "$PG_PID_FILE" ${BENCH_CAPACITY_ARGS:-}
  if skip ceiling; then say "ceiling: skipped (BENCH_SKIP)"
  else
    say "ceiling: Locust step load (infra/load.sh ceiling)"
    # 20 residents shared by the users: each costs two Argon2 hashes to prepare.
    LOAD_OUT=$OUT/ceiling LOAD_RESIDENTS=${LOAD_RESIDENTS:-20} infra/load.sh ceiling | tee "$LOGS/ceiling.jsonl" || failed+=(ceiling)
  fi
  infra/stack.sh app-down >/dev/null
fi
if ! skip redeem && [ -f locust/bench_redeem.py ]; then
  # Redemption runs 2 workers x 16 threads. The statement alone costs PostgreSQL more CPU the more sessions queue on
  # the hot row (locust/redeem_sessions.py: 0.84 ms at 4 sessions, 2.1-2.64 ms at 50), but over HTTP the web tier
  # decides how many are in flight, and fewer threads did not win: alternating runs on 2026-12-07 gave 2x16
  # 0.684 and 0.686 of the floor, 2x2 0.589 and 0.573 (README, "Redemption: sessions in flight").
  app_up "${BENCH_REDEEM_WORKERS:-2}" "${BENCH_REDEEM_THREADS:-16}"
  bench redeem locust/bench_redeem.py --host "$HOST" ${BENCH_REDEEM_ARGS:-}
  infra/stack.sh app-down >/dev/null
fi

say "report"
copy=(); [ -z "$ONLY" ] && copy=(--chart-copy "${BENCH_CHART_COPY:-docs/bench.svg}")  # the README's chart
$PY locust/benchkit.py report "$OUT" ${copy[@]+"${copy[@]}"}
say "done in $(($(date +%s) - T0)) s"
if [ ${#failed[@]} -gt 0 ]; then echo "FAILED: ${failed[*]}" >&2; exit 1; fi
