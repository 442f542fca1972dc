"""Shared fixtures: a private AIRFLOW_HOME, a sandbox on loopback, and a connection to it.

AIRFLOW_HOME is set before anything imports airflow, so no test touches ~/airflow.
"""

from __future__ import annotations

import itertools
import json
import os
import tempfile

_home = tempfile.mkdtemp(prefix="hubexport-tests-airflow-")
os.environ["AIRFLOW_HOME"] = _home
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
# dag.test() in Airflow 3.3 syncs the DAG from its bundle: test DAG files are written here.
DAGS_DIR = os.path.join(_home, "dags")
os.makedirs(DAGS_DIR)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = DAGS_DIR
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
os.environ.pop("AIRFLOW_CONN_HUBSPOT_DEFAULT", None)

import pytest  # noqa: E402

from airflow_provider_hubexport.sandbox import Sandbox  # noqa: E402

# Recognisable secrets: a test can search any output for them.
SECRET_TOKEN = "pat-na1-SECRET-TOKEN-1b2c3d"
SECRET_CLIENT_ID = "client-id-7f"
SECRET_CLIENT_SECRET = "SECRET-CLIENT-SECRET-9e8d"
SECRET_REFRESH_TOKEN = "SECRET-REFRESH-TOKEN-5a4b"
# A short first backoff: tests count attempts, they do not wait out production backoffs (one test
# checks that the waits follow this extra).
FAST_RETRY = {"retry_max_attempts": 4, "retry_max_seconds": 20, "retry_backoff_seconds": 0.05}


@pytest.fixture
def sandbox():
    sb = Sandbox(
        token=SECRET_TOKEN,
        oauth_client=(SECRET_CLIENT_ID, SECRET_CLIENT_SECRET, SECRET_REFRESH_TOKEN),
    )
    sb.start()
    try:
        yield sb
    finally:
        sb.stop()


@pytest.fixture(scope="session")
def airflow_db():
    """An empty metadata database (SQLite in the private AIRFLOW_HOME), made once per session."""
    from airflow.utils import db

    db.initdb()
    return DAGS_DIR


@pytest.fixture(scope="session")
def postgres():
    """One PostgreSQL server on 127.0.0.1 for the session's multi-process legs (each stack gets its
    own database); started on first use, stopped and removed at the end."""
    from devtools.postgres import PostgresServer

    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _fresh_token_cache():
    from airflow_provider_hubexport.hooks import auth

    auth.clear_cache()
    yield
    auth.clear_cache()


@pytest.fixture
def connect(sandbox, monkeypatch):
    """Point ``hubspot_default`` (or another id) at the sandbox with the given fields and extras."""

    def _connect(conn_id: str = "hubspot_default", **fields):
        extra = {**FAST_RETRY, **fields.pop("extra", {})}
        conn = {**sandbox.connection(**extra), **fields}
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
        return conn

    return _connect


@pytest.fixture
def start(sandbox, connect):
    """Starts an export on the sandbox (with the given plan) through the hook; returns its task id."""
    from airflow_provider_hubexport.hooks.hubspot import HubSpotHook

    connect()

    def _start(**plan):
        sandbox.plan_next(**plan)
        return HubSpotHook().start_export(CONTACTS)

    return _start


@pytest.fixture
def hook(connect):
    from airflow_provider_hubexport.hooks.hubspot import HubSpotHook

    connect()
    h = HubSpotHook()
    yield h
    h.close()


@pytest.fixture
def complete(sandbox, hook):
    """Starts an export (with the given plan, and request) that is COMPLETE at once; returns its
    task id once the sandbox has written its file."""

    def _complete(request=None, **plan):
        sandbox.plan_next(pending_polls=0, processing_polls=0, **plan)
        task_id = hook.start_export(request or CONTACTS)
        hook.get_export_status(task_id)  # COMPLETE: the sandbox has written the file
        return task_id

    return _complete


def arrival_gaps(requests) -> list[float]:
    """Seconds between consecutive requests as the sandbox saw them arrive: a client that waited
    ``w`` before resending shows a gap of at least ``w`` however loaded the machine is (load only
    lengthens gaps), so waits are asserted from the sandbox's record, never from a stopwatch."""
    times = [r.at for r in requests]
    return [b - a for a, b in itertools.pairwise(times)]


CONTACTS = {
    "exportType": "VIEW",
    "format": "CSV",
    "exportName": "contacts",
    "objectType": "CONTACT",
    "objectProperties": ["email", "firstname", "lastname", "notes"],
    "language": "EN",
}
