# The studio's two commands: `make run` and `make test`. Everything else here serves those two.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
UV_VERSION := 0.13.9
UV := .tools/bin/uv
PY := .venv/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
PG_URL ?= postgres://postgres@127.0.0.1:5432/studio
REDIS_TEST_URL ?= redis://127.0.0.1:6379/15
PYTEST_ARGS ?=

.PHONY: help install run web worker migrate lint test test-sqlite test-postgres browser-deps bench schema check-services clean

help:
	@echo "make run    install, migrate, load the catalog, start web + workers + beat, print the demo account"
	@echo "make test   the whole suite on SQLite, then on PostgreSQL + Redis"
	@echo "make bench  benchmarks (see docs/BENCHMARKS.md)"

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet "uv==$(UV_VERSION)"

.venv/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --quiet
	@touch $@

install: .venv/.synced

migrate: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py catalog_load

# Web on $(HOST):$(PORT), a worker per queue (`generations`, `previews`, `housekeeping`) and beat, on
# the embedded defaults unless the environment says otherwise, under one
# supervisor (accounts/management/commands/run_studio.py) that prints the demo credentials once all
# are up. Ctrl-C or SIGTERM stops them all within a few seconds.
run: migrate
	@$(PY) manage.py run_studio --host $(HOST) --port $(PORT)

web: migrate
	$(PY) manage.py runserver $(HOST):$(PORT)

# The workers and beat without the web server (`make web` in another terminal).
worker: install
	@$(PY) manage.py run_studio --no-web

# Debian's Chromium and ChromeDriver for the browser tests (Playwright's own download cannot work here).
browser-deps:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; fi; \
	fi

lint: install
	.venv/bin/ruff check .
	.venv/bin/lint-imports
	.venv/bin/mypy

# The two legs run side by side (TEST_JOBS=1 runs them one after the other); each one's output is
# printed whole when it finishes, with its slowest tests and its time against the budget (README,
# "Contributing").
TEST_JOBS ?= 2
test: install browser-deps lint
	@$(MAKE) --no-print-directory -j$(TEST_JOBS) --output-sync=target test-sqlite test-postgres

test-sqlite: install
	rm -rf var/test-sqlite
	env -u DATABASE_URL -u REDIS_URL -u CELERY_BROKER_URL STUDIO_VAR_DIR=var/test-sqlite \
	  $(PY) -m pytest --durations=15 $(PYTEST_ARGS)

# With CI=true a missing PostgreSQL or Redis fails the run; locally it is skipped with a notice.
test-postgres: install
	@if ! $(PY) tests/services_check.py "$(PG_URL)" "$(REDIS_TEST_URL)"; then \
	  if [ "$$CI" = "true" ]; then echo "CI=true: PostgreSQL and Redis are required" >&2; exit 1; fi; \
	  echo "PostgreSQL or Redis is not reachable: skipping the PostgreSQL + Redis leg." >&2; exit 0; \
	fi
	rm -rf var/test-postgres
	env -u CELERY_BROKER_URL STUDIO_VAR_DIR=var/test-postgres DATABASE_URL=$(PG_URL) REDIS_URL=$(REDIS_TEST_URL) \
	  $(PY) -m pytest --durations=15 $(PYTEST_ARGS)

# Scratch files under var/bench/ (BENCH_VAR_DIR moves them); the users that submit jobs, upload or
# page the API are on an unlimited plan (bench/plans.py). tests/bench/test_smoke.py runs every script
# at a tiny size.
bench: install
	$(PY) bench/run.py
	$(PY) bench/adapters.py
	$(PY) bench/ledger.py
	$(PY) bench/previews.py
	$(PY) bench/export.py
	$(PY) bench/uploads.py
	$(PY) bench/gallery.py

schema: install
	$(PY) manage.py spectacular --validate --fail-on-warn --file docs/openapi.yaml

clean:
	rm -rf var .venv .tools
