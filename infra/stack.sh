#!/usr/bin/env bash
# `make up` / `make down`: the production-like local stack, each a separate process, logs in .local/logs/.
# `infra/stack.sh app-down` stops only gunicorn, the worker and beat (infra/bench.sh between configurations).
# PostgreSQL and Redis (infra/services.sh), gunicorn on 127.0.0.1:$PORT, a Celery worker and Celery beat.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT_DIR=$(pwd)
LOCAL=.local
RUN=$LOCAL/run
LOGS=$LOCAL/logs
PORT=${PORT:-8000}
mkdir -p "$RUN" "$LOGS"
eval "$(infra/services.sh env | sed 's/^/export /')"
export DJANGO_ENV=${STACK_DJANGO_ENV:-development} DEBUG=${DEBUG:-false} LOG_JSON=${LOG_JSON:-true}
# The load test hits the API from one address far faster than a person: keep the throttles out of its way.
export THROTTLE_ANON=${THROTTLE_ANON:-100000/min} THROTTLE_USER=${THROTTLE_USER:-100000/min}
PY=.venv/bin/python
# Prometheus multiprocess mode: every gunicorn worker's samples in one folder, added up at each scrape.
export PROMETHEUS_MULTIPROC_DIR=${PROMETHEUS_MULTIPROC_DIR:-$ROOT_DIR/$RUN/prometheus}

start() {  # name, command...
  local name=$1; shift
  if [ -f "$RUN/$name.pid" ] && kill -0 "$(cat "$RUN/$name.pid")" 2>/dev/null; then
    echo "$name already running"; return
  fi
  nohup "$@" >>"$LOGS/$name.log" 2>&1 &
  echo $! >"$RUN/$name.pid"
  echo "$name started (pid $(cat "$RUN/$name.pid"), log $LOGS/$name.log)"
}

stop() {
  local name=$1
  if [ -f "$RUN/$name.pid" ]; then
    local pid; pid=$(cat "$RUN/$name.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$RUN/$name.pid"
    echo "$name stopped"
  fi
}

case "${1:-}" in
  up)
    infra/services.sh start
    $PY manage.py migrate --noinput >/dev/null
    $PY manage.py seed >/dev/null
    $PY manage.py collectstatic --noinput >/dev/null
    rm -rf "$PROMETHEUS_MULTIPROC_DIR" && mkdir -p "$PROMETHEUS_MULTIPROC_DIR"  # stale files would add old counts
    start gunicorn .venv/bin/gunicorn backend.wsgi:application --config infra/gunicorn.conf.py --bind "127.0.0.1:$PORT" \
      --workers "${WEB_CONCURRENCY:-4}" --threads "${GUNICORN_THREADS:-2}" --timeout 60 --access-logfile -
    start worker .venv/bin/celery -A backend worker --loglevel INFO --concurrency "${CELERY_CONCURRENCY:-2}" \
      -Q "${CELERY_QUEUE:-celery}"
    start beat .venv/bin/celery -A backend beat --loglevel INFO --schedule "$RUN/celerybeat-schedule"
    for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
    curl -fsS "http://127.0.0.1:$PORT/readyz" && echo && echo "stack up at http://127.0.0.1:$PORT"
    ;;
  down)
    stop beat; stop worker; stop gunicorn
    infra/services.sh stop
    ;;
  app-down)  # gunicorn, worker and beat only; PostgreSQL and Redis keep running (infra/bench.sh between runs)
    stop beat; stop worker; stop gunicorn
    ;;
  *) echo "usage: $0 up|down|app-down" >&2; exit 2 ;;
esac
