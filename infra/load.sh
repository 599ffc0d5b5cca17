#!/usr/bin/env bash
# `make load`: the Locust suite headless for ${LOAD_SECONDS:-60}s against the stack of `make up`.
# Reports (HTML, CSV) under .local/load/; exits non-zero when locust/thresholds.json is missed.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${PORT:-8000}
HOST=${LOAD_HOST:-http://127.0.0.1:$PORT}
OUT=.local/load
mkdir -p "$OUT"
if ! curl -fsS "$HOST/readyz" >/dev/null 2>&1; then
  echo "nothing ready at $HOST: run 'make up' first" >&2; exit 2
fi
eval "$(infra/services.sh env | sed 's/^/export /')"
.venv/bin/python locust/prepare.py --host "$HOST" --out "$OUT/users.json"
LOCUST_USERS_FILE="$OUT/users.json" .venv/bin/locust -f locust/locustfile.py --headless --host "$HOST" \
  --users "${LOAD_USERS:-20}" --spawn-rate "${LOAD_SPAWN_RATE:-10}" --run-time "${LOAD_SECONDS:-60}s" \
  --html "$OUT/report.html" --csv "$OUT/stats" --only-summary
echo "reports: $OUT/report.html $OUT/stats_stats.csv"
