# One-command entry points. Everything installs itself into .venv from pinned versions.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.8
LOCK := requirements/test.txt
STAMP := $(VENV)/.installed

.PHONY: help venv demo airflow test services bench lint format sandbox lock clean lock-legs lock-leg leg test-leg

help:
	@echo "make demo     set up .venv and run the example DAG against the local sandbox"
	@echo "make test     set up .venv (pinned) and run lint and the whole test suite"
	@echo "make airflow  run Airflow (API server, scheduler, DAG processor, triggerer) with the sandbox"
	@echo "make sandbox  run the HubSpot sandbox on 127.0.0.1:8765 in the foreground"
	@echo "make bench    run the benchmarks and write benchmarks/RESULTS.md"
	@echo "make lint     ruff check and format check"
	@echo "make lock     re-pin $(LOCK) from setup.cfg"

$(BIN)/uv:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(STAMP): $(BIN)/uv $(LOCK) setup.cfg pyproject.toml
	$(BIN)/uv pip sync --quiet --python $(BIN)/python $(LOCK)
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	@touch $@

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

services:
	scripts/ensure_services.sh

test: lint services
	$(BIN)/python -m pytest

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

bench: $(STAMP)
	$(BIN)/python -m benchmarks

airflow: $(STAMP)
	$(BIN)/python scripts/airflow_local.py

sandbox: $(STAMP)
	$(BIN)/python -m airflow_provider_hubexport.sandbox --port 8765

lock: $(BIN)/uv
	$(BIN)/uv pip compile --quiet --universal --python-version 3.10 setup.cfg --extra test -o $(LOCK)

# Version legs: one lock per supported Airflow release, pinned to what existed on its release date
# (--exclude-newer), since today's pydantic/FastAPI break older Airflow. LEG is one of LEGS.
LEGS := airflow-3.0 airflow-3.1 airflow-3.2 airflow-3.3-py313
LEG_PY_airflow-3.0 := 3.10
LEG_PY_airflow-3.1 := 3.11
LEG_PY_airflow-3.2 := 3.11
LEG_PY_airflow-3.3-py313 := 3.13
LEG_DATE_airflow-3.0 := 2025-08-30T00:00:00Z
LEG_DATE_airflow-3.1 := 2026-03-12T00:00:00Z
LEG_DATE_airflow-3.2 := 2026-05-30T00:00:00Z
LEG_DATE_airflow-3.3-py313 := 2026-09-18T00:00:00Z
LEG ?= airflow-3.0
LEG_VENV ?= /tmp/venv-$(LEG)

lock-legs: $(BIN)/uv
	for leg in $(LEGS); do $(MAKE) --no-print-directory lock-leg LEG=$$leg || exit 1; done

lock-leg: $(BIN)/uv
	$(BIN)/uv pip compile --quiet --python-version $(LEG_PY_$(LEG)) --exclude-newer $(LEG_DATE_$(LEG)) \
		setup.cfg requirements/$(LEG).in --extra test -o requirements/$(LEG).txt

leg: $(BIN)/uv
	$(BIN)/uv venv --quiet --allow-existing --python $(LEG_PY_$(LEG)) $(LEG_VENV)
	$(BIN)/uv pip sync --quiet --python $(LEG_VENV)/bin/python requirements/$(LEG).txt
	$(BIN)/uv pip install --quiet --python $(LEG_VENV)/bin/python --no-deps -e .

test-leg: leg
	$(LEG_VENV)/bin/python -m pytest --ignore=tests/test_e2e_local.py --ignore=tests/test_e2e_celery.py

clean:
	rm -rf $(VENV) .airflow build *.egg-info
