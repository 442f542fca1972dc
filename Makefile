# One-command entry points. Everything installs itself into .venv from pinned versions.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.8
LOCK := requirements/test.txt
STAMP := $(VENV)/.installed
# Bytecode caches (in the venvs and git-ignored __pycache__ folders): without them every Airflow
# process and test subprocess compiles Airflow again, which doubles the time of `import airflow`.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: help venv demo airflow test services stress-e2e bench lint format sandbox docs check-wheel lock lock-legs lock-leg lock-lowest clean

help:
	@echo "make demo     set up .venv and run the example DAG against the local sandbox"
	@echo "make test     set up .venv (pinned) and run lint and the whole test suite, on every Airflow leg"
	@echo "              (AIRFLOW=3.1: one leg alone; legs are 3.0 3.0-lowest 3.1 3.2 3.3 3.3-py313 wheel)"
	@echo "make airflow  run Airflow (API server, scheduler, DAG processor, triggerer) with the sandbox"
	@echo "              (DB=postgres: on a throwaway PostgreSQL instead of SQLite)"
	@echo "make sandbox  run the HubSpot sandbox on 127.0.0.1:8765 in the foreground"
	@echo "make stress-e2e  the end-to-end modules RUNS times (10) in a row with one core kept busy"
	@echo "make bench    run the benchmarks and write benchmarks/RESULTS.md"
	@echo "make lint     ruff check and format check"
	@echo "make docs     build the docs site (Sphinx, warnings as errors) into docs/_build/html"
	@echo "make check-wheel  build the sdist and the wheel, install the wheel in a clean venv and check it"
	@echo "make lock     re-pin $(LOCK) from setup.cfg (make lock-legs: the older legs' locks and requirements/lowest.txt)"

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

# The docs site (docs/, Sphinx in its own .venv-docs from requirements/docs.txt): warnings are
# errors, so a broken page link, anchor or example include fails the build.
docs: $(STAMP)
	$(BIN)/python devtools/build_docs.py

# The whole suite on the newest Airflow, and a leg per older minor and per edge Python, two at a time
# (devtools/test_matrix.py). AIRFLOW=3.1 (or 3.0, 3.0-lowest, 3.2, 3.3, 3.3-py313, wheel) runs one leg alone.
AIRFLOW ?=
test: lint docs services
	$(BIN)/python devtools/test_matrix.py $(if $(AIRFLOW),--leg $(AIRFLOW))

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

lock-legs: $(BIN)/uv
	for leg in $(LEGS); do $(MAKE) --no-print-directory lock-leg LEG=$$leg || exit 1; done
	$(MAKE) --no-print-directory lock-lowest

# The 3.0-lowest leg's lock: our direct dependencies at the floors setup.cfg declares
# (--resolution lowest-direct), everything else constrained to requirements/airflow-3.0.txt
# (Airflow 3.0's official constraints file is on GitHub, which this machine does not reach).
lock-lowest: $(BIN)/uv
	$(BIN)/python devtools/test_matrix.py --lock-lowest

# The package as users get it (also the `wheel` leg of make test).
check-wheel: $(BIN)/uv
	$(BIN)/python devtools/check_wheel.py

lock-leg: $(BIN)/uv
	$(BIN)/uv pip compile --quiet --python-version $(LEG_PY_$(LEG)) --exclude-newer $(LEG_DATE_$(LEG)) \
		setup.cfg requirements/$(LEG).in --extra test -o requirements/$(LEG).txt

clean:
	rm -rf $(VENV) .venv-legs .venv-docs docs/_build .test-logs .airflow build *.egg-info
