# airmlops: two commands to a running MLOps stack (make up) and a tested one (make test).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
UV_VERSION := 0.13.9
STAMP := $(VENV)/.installed

.PHONY: up replay down status test test-unit test-fast test-integration install system-deps lock lint actionlint check audit validate bench clean compose-env dist

# `make up` counts its time from here, install included (see airmlops_dev/up_timeline.py).
MAKE_STARTED := $(shell date +%s)
INSTALL_PHASES := $(VENV)/.install_phases
# $(call step,name,command): run a step of the install, recording its start and end (seconds).
step = s=$$(date +%s) && $(2) && echo "$(1) $$s $$(date +%s)" >> $(INSTALL_PHASES)

# The virtualenv, installed from the committed lock of exact versions; each step says what it
# does and uv shows its progress.
$(STAMP): requirements/lock.txt pyproject.toml dev/pyproject.toml
	@echo "==> install: virtualenv $(VENV) with uv $(UV_VERSION)"
	@rm -f $(INSTALL_PHASES)
	@$(call step,virtualenv and uv,{ test -x $(PY) || $(PYTHON) -m venv $(VENV); } && $(PY) -m pip install --disable-pip-version-check "uv==$(UV_VERSION)")
	@echo "==> install: the locked packages (requirements/lock.txt)"
	@$(call step,locked packages,$(UV) pip install --python $(PY) -r requirements/lock.txt)
	@echo "==> install: the pack and its dev tools, editable"
	@# built with the locked setuptools already installed: no isolated build environments
	@$(call step,the pack (editable),$(UV) pip install --python $(PY) --no-deps --no-build-isolation -e . -e dev)
	@touch $(STAMP)

install: $(STAMP)

# OS packages the tests need (Debian/Ubuntu): Chromium renders the HTML reports headless;
# Redis and PostgreSQL (server) run the distributed-stack test (tests/integration/test_distributed.py);
# Prometheus (with promtool) the monitoring test (tests/integration/test_prometheus.py), which starts
# its own server on a free port (the package's systemd service, where systemd runs, is not used).
# Machine images often ship the PostgreSQL server binaries without the `postgresql` package.
SYSTEM_PACKAGES := chromium redis-server prometheus $(if $(wildcard /usr/lib/postgresql/*/bin/initdb),,postgresql)
system-deps:  ## install missing OS packages the tests use (apt-get; root or sudo)
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing OS packages:$$missing"; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

up: install  ## start the local stack (Airflow, MLflow, webhook receiver) and run the demo
	AIRMLOPS_MAKE_STARTED=$(MAKE_STARTED) $(PY) -m airmlops_core.cli up

replay: install  ## the seasonal replay's report on the running stack (AGAIN=1: replay anew)
	$(PY) -m airmlops_core.cli replay $(if $(AGAIN),--again)

down:  ## stop every process `make up` started
	@test -x $(PY) && $(PY) -m airmlops_dev.localstack down || echo "nothing to stop (no $(VENV))"

status:  ## what runs, where
	@$(PY) -m airmlops_dev.localstack status

test: install system-deps  ## the whole suite: DAG integrity, unit, integration (real Airflow + MLflow)
	$(PY) -m pytest

test-unit: install system-deps
	$(PY) -m pytest tests/unit tests/dags

# The tests that start no server (tests/conftest.py marks the others `integration`).
test-fast: install system-deps  ## DAG integrity and unit tests, no server started
	$(PY) -m pytest -m "not integration"

test-integration: install
	$(PY) -m pytest tests/integration

# Not part of `make test`: it needs PyPI's advisory API, and says "audit skipped: advisory source
# unreachable" (exit 0) where that API does not answer; exit 1 on a finding, 3 if incomplete.
audit: install  ## known vulnerabilities of the locked versions (pip-audit on requirements/lock.txt)
	$(PY) requirements/audit.py --lock requirements/lock.txt

validate: install  ## validate model specs without Airflow
	$(PY) -m airmlops_core.cli validate --deep

lint: install  ## ruff lint and format check, mypy, the import contracts (import-linter)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

actionlint: install  ## check the GitHub Actions workflows (.github/workflows)
	$(VENV)/bin/actionlint

# The fast tier, what a pull request runs (.github/workflows/pr.yml): the targets above, in turn.
check: lint validate actionlint test-fast  ## lint, spec validation, actionlint, DAG and unit tests

bench: install  ## benchmarks (ratios printed)
	$(PY) benchmarks/parse_time.py
	$(PY) benchmarks/task_start.py
	$(PY) benchmarks/log_register.py
	$(PY) benchmarks/score_stream.py
	$(PY) benchmarks/model_api_load.py
	$(PY) benchmarks/drift_check.py

compose-env: install  ## secrets for docker-compose.yml into .env (mode 0600); rotation: docs/deployment.md
	$(PY) -m airmlops_dev.compose_env --output .env

# The distribution a team installs into its own Airflow (docs/settings.md): wheel and sdist.
dist: install  ## build dist/airmlops-<version>-py3-none-any.whl and the sdist
	$(UV) build --out-dir dist .

# Refresh both locks, resolved for Python 3.11: requirements/lock.txt pins everything `make
# install` and the tests use (extra `dev`); requirements/runtime.lock.txt, what the image
# installs (docker/Dockerfile), pins the runtime extras only, at lock.txt's versions (-c), so
# the image runs what the tests ran and no dev tool (tests/unit/dev/test_runtime_lock.py).
RUNTIME_EXTRAS := --extra serve --extra celery --extra stack
lock: install  ## refresh requirements/lock.txt and requirements/runtime.lock.txt
	$(UV) pip compile pyproject.toml --extra dev --python-version 3.11 -o requirements/lock.txt
	$(UV) pip compile pyproject.toml $(RUNTIME_EXTRAS) -c requirements/lock.txt --python-version 3.11 -o requirements/runtime.lock.txt

clean: down
	rm -rf .local
