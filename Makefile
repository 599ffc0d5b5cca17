# Qingdao carbon-inclusion backend. `make help` lists the targets; README.md explains each.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PY_BOOT ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000
LOCALSTRIPE_PORT ?= 8420
PG_PORT ?= 55432
REDIS_PORT ?= 56379
export PG_PORT REDIS_PORT
SERVICES_ENV = DATABASE_URL=postgres://postgres@127.0.0.1:$(PG_PORT)/qingdao REDIS_URL=redis://127.0.0.1:$(REDIS_PORT)/0
TEST_WORKERS ?= 2
LOCAL := .local
SCHEMA_FILE ?= api_schema/openapi.yaml

.PHONY: help venv run shell client test test-only lint schema schema-check messages services-up services-down up down load load-ceiling bench bench-redeem lock clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.txt
	@test -x $(PY) || $(PY_BOOT) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	@touch $@

venv: $(VENV)/.installed ## Create .venv and install the pinned dependencies

run: venv ## Serve the API on the embedded default (SQLite, in-process tasks, beat beside it) at http://127.0.0.1:$(PORT)
	@mkdir -p $(LOCAL)/logs
	$(PY) manage.py migrate --noinput
	@# The quick-start demo (partner + secret, residents with linked cards and a week of credited rides, a
	@# reviewer, an admin; logins printed and in the README). Idempotent; SEED_DEMO=0 leaves it out.
	$(PY) manage.py seed $(if $(filter 0,$(SEED_DEMO)),,--demo)
	@# The beat schedule runs beside the server: with the embedded default's in-process tasks, each due task
	@# runs inside the beat process itself (version activation, reconciler, Merkle roots, expiries). Without a
	@# STRIPE_SECRET_KEY, localstripe runs beside them on loopback and delivers its webhooks to this server.
	@pids=""; \
	  if [ -z "$$STRIPE_SECRET_KEY" ]; then \
	    echo "STRIPE_SECRET_KEY unset: localstripe on 127.0.0.1:$(LOCALSTRIPE_PORT), webhooks to this server"; \
	    $(PY) infra/localstripe_server.py --port $(LOCALSTRIPE_PORT) \
	      --webhook-url http://127.0.0.1:$(PORT)/api/v1/stripe/webhook \
	      --webhook-secret "$${STRIPE_WEBHOOK_SECRET:-whsec_local_development}" & pids="$$!"; \
	    export STRIPE_API_BASE=http://127.0.0.1:$(LOCALSTRIPE_PORT); \
	  fi; \
	  $(VENV)/bin/celery -A backend beat -s $(LOCAL)/beat-schedule --pidfile= --loglevel INFO \
	    >>$(LOCAL)/logs/beat.log 2>&1 & pids="$$pids $$!"; \
	  trap "kill $$pids 2>/dev/null" EXIT INT TERM; \
	  echo "beat running (log $(LOCAL)/logs/beat.log)"; \
	  $(PY) manage.py runserver 127.0.0.1:$(PORT)

shell: venv ## Django shell against the `make up` stack (exports infra/services.sh env); `make shell CMD=...` runs any manage.py command
	@set -a; eval "$$(infra/services.sh env)"; set +a; $(PY) manage.py $(or $(CMD),shell)

messages: venv ## Extract our messages into locale/zh_Hans/LC_MESSAGES/django.po and compile django.mo
	@command -v msgfmt >/dev/null || { echo "msgfmt missing: installing gettext"; \
	  $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get update -qq && \
	  $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get install -y -qq gettext; }
	$(PY) manage.py makemessages -l zh_Hans --no-obsolete --ignore=$(VENV) --ignore=$(LOCAL) --ignore=tests
	$(PY) manage.py compilemessages -l zh_Hans --ignore=$(VENV) --ignore=$(LOCAL)

services-up: ## Install (when missing) and start private PostgreSQL and Redis on loopback ports
	infra/services.sh start

services-down: ## Stop the private PostgreSQL and Redis
	infra/services.sh stop

lint: venv ## Ruff over the whole tree
	$(VENV)/bin/ruff check .

schema: venv ## Regenerate api_schema/openapi.yaml (English texts; the served /api/schema/ follows Accept-Language)
	$(PY) manage.py spectacular --lang en --validate --fail-on-warn --file api_schema/openapi.yaml

schema-check: venv ## Fail when the committed schema differs from the code
	@$(PY) manage.py spectacular --lang en --validate --fail-on-warn --file $(LOCAL)/openapi.check.yaml 2>$(LOCAL)/schema.log \
	  || { cat $(LOCAL)/schema.log; exit 1; }
	@diff -u $(SCHEMA_FILE) $(LOCAL)/openapi.check.yaml >/dev/null \
	  || { diff -u $(SCHEMA_FILE) $(LOCAL)/openapi.check.yaml | head -40; \
	       echo "$(SCHEMA_FILE) is out of date: run 'make schema' and commit it"; exit 1; }
	@echo "schema up to date"

CLIENT_GENERATOR := openapi-python-client==0.29.1
client: ## Generate a typed Python client from the committed schema into .local/qingdao-client; fails on any warning
	@mkdir -p $(LOCAL)
	@test -x $(LOCAL)/client-venv/bin/openapi-python-client || { $(PY_BOOT) -m venv $(LOCAL)/client-venv && \
	  $(LOCAL)/client-venv/bin/pip install -q --disable-pip-version-check "$(CLIENT_GENERATOR)"; }
	@rm -rf $(LOCAL)/qingdao-client
	@cd $(LOCAL) && client-venv/bin/openapi-python-client generate --path ../$(SCHEMA_FILE) \
	  --config ../api_schema/client-config.yaml --output-path qingdao-client >client.log 2>&1; \
	  status=$$?; cat client.log; \
	  if [ $$status -ne 0 ] || grep -qi warning client.log; then echo "client generation failed or warned"; exit 1; fi
	@echo "client generated in $(LOCAL)/qingdao-client"

test: venv ## Install what is needed (PostgreSQL, Redis, headless Chromium), start them, run lint, schema check and the whole suite
	@mkdir -p $(LOCAL)
	infra/services.sh start
	@infra/browser.sh
	@trap 'infra/services.sh stop' EXIT; \
	  $(MAKE) --no-print-directory lint schema-check client && \
	  $(SERVICES_ENV) $(MAKE) --no-print-directory test-only

test-only: ## Run pytest against already running services (DATABASE_URL / REDIS_URL)
	$(VENV)/bin/pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

up: venv ## Production-like local stack: PostgreSQL, Redis, gunicorn, Celery worker and beat (logs in .local/logs)
	infra/stack.sh up

down: ## Stop everything `make up` started
	infra/stack.sh down

load: venv ## Locust suite, headless, 60 s against `make up`; fails when thresholds in locust/ are missed
	infra/load.sh

load-ceiling: venv ## Locust step load against `make up`: adds users until errors or p95 > bound; reports the ceiling
	infra/load.sh ceiling

bench: venv ## Every benchmark on a durable PostgreSQL: ratios table, chart (docs/bench.svg), Locust ceiling, capacity model
	infra/bench.sh

bench-redeem: venv ## Only the redemption benchmark (one reward, 10,000 items, 50 residents over HTTP) and its SQL floor
	infra/bench.sh redeem

lock: ## Re-pin requirements.txt from requirements.in
	$(PY) -m pip install -q -r requirements.in && $(PY) -m pip freeze --exclude-editable > requirements.txt

clean: down ## Remove .local (databases, logs, reports)
	rm -rf $(LOCAL)
