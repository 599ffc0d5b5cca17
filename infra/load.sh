#!/usr/bin/env bash
# `make load`: the Locust suite headless for ${LOAD_SECONDS:-60}s against the stack of `make up`.
# Reports (HTML, CSV) under .local/load/; exits non-zero when locust/thresholds.json is missed.
# `infra/load.sh ceiling` (`make load-ceiling`, and a part of `make bench`): the same personas with a step load
# (locust/ceiling.py: LOAD_STEP_USERS more users every LOAD_STEP_SECONDS until a step has an error or its p95
# exceeds LOAD_P95_BOUND_MS); reports the ceiling (users, req/s, p95 at 0 % errors) in
# ${LOAD_OUT:-.local/load/ceiling}/ceiling.json and as a BENCH_FORMAT summary line.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-threshold}
PORT=${PORT:-8000}
HOST=${LOAD_HOST:-http://127.0.0.1:$PORT}
OUT=.local/load
[ "$MODE" = ceiling ] && OUT=${LOAD_OUT:-.local/load/ceiling}
mkdir -p "$OUT"
if ! curl -fsS "$HOST/readyz" >/dev/null 2>&1; then
  echo "nothing ready at $HOST: run 'make up' first" >&2; exit 2
fi
eval "$(infra/services.sh env | sed 's/^/export /')"
.venv/bin/python locust/prepare.py --host "$HOST" --out "$OUT/users.json" --residents "${LOAD_RESIDENTS:-40}" >&2
if [ "$MODE" = ceiling ]; then
  LOCUST_USERS_FILE="$OUT/users.json" LOAD_CEILING_OUT="$OUT/ceiling.json" .venv/bin/locust -f locust/ceiling.py \
    --headless --host "$HOST" --html "$OUT/report.html" --csv "$OUT/stats" --only-summary
  echo "reports: $OUT/ceiling.json $OUT/report.html $OUT/stats_stats.csv" >&2
  exit 0
fi
LOCUST_USERS_FILE="$OUT/users.json" .venv/bin/locust -f locust/locustfile.py --headless --host "$HOST" \
  --users "${LOAD_USERS:-20}" --spawn-rate "${LOAD_SPAWN_RATE:-10}" --run-time "${LOAD_SECONDS:-60}s" \
  --html "$OUT/report.html" --csv "$OUT/stats" --only-summary
echo "reports: $OUT/report.html $OUT/stats_stats.csv"
