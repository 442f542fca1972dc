# One-command entry points. Everything installs itself into .venv from pinned versions.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.8
LOCK := requirements/test.txt
STAMP := $(VENV)/.installed

.PHONY: help venv demo airflow test services stress-e2e bench lint format sandbox lock clean

help:
	@echo "make demo     set up .venv and run the example DAG against the local sandbox"
	@echo "make test     set up .venv (pinned) and run lint and the whole test suite"
	@echo "make airflow  run Airflow (API server, scheduler, DAG processor, triggerer) with the sandbox"
	@echo "              (DB=postgres: on a throwaway PostgreSQL instead of SQLite)"
	@echo "make sandbox  run the HubSpot sandbox on 127.0.0.1:8765 in the foreground"
	@echo "make stress-e2e  the end-to-end modules RUNS times (10) in a row with one core kept busy"
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

RUNS ?= 10
stress-e2e: $(STAMP) services
	$(BIN)/python devtools/stress_e2e.py --runs $(RUNS)

bench: $(STAMP)
	$(BIN)/python -m benchmarks

DB ?= sqlite
airflow: $(STAMP)
	$(BIN)/python scripts/airflow_local.py --database $(DB)

sandbox: $(STAMP)
	$(BIN)/python -m airflow_provider_hubexport.sandbox --port 8765

lock: $(BIN)/uv
	$(BIN)/uv pip compile --quiet --universal --python-version 3.10 setup.cfg --extra test -o $(LOCK)

clean:
	rm -rf $(VENV) .airflow build *.egg-info
