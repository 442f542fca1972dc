"""``make airflow``: Airflow 3 on this machine, in the foreground, wired to the HubSpot sandbox.

API server (http://127.0.0.1:8080), scheduler with the LocalExecutor, DAG processor and triggerer,
on SQLite in .airflow/local (git-ignored), with dags/ as the DAGs folder and a ``hubspot_default``
connection pointing at a sandbox on 127.0.0.1:8765. Ctrl-C stops everything.

``--database postgres`` (``make airflow DB=postgres``) runs the metadata database on a throwaway
PostgreSQL on 127.0.0.1 instead, as a scaled-out deployment would; it is removed on exit.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devtools.airflow_stack import AirflowStack  # noqa: E402

HOME = ROOT / ".airflow" / "local"
SANDBOX_PORT = 8765
API_PORT = 8080
PENDING_SECONDS, PROCESSING_SECONDS = 10, 20
# Stored with port 0, not null: the UI's Test button sends Number(port), 0 for null, and the API
# server refuses a test whose port differs from the stored one (Airflow 3.3.2).
CONNECTION = {
    "conn_id": "hubspot_default",
    "conn_type": "hubspot",
    "host": f"http://127.0.0.1:{SANDBOX_PORT}",
    "port": 0,
    "password": "sandbox-token",
}


def prepare(stack: AirflowStack) -> dict:
    """The database (migrated only when behind) and the connection, in one process."""
    stack.home.mkdir(parents=True, exist_ok=True)
    stack.logs.mkdir(exist_ok=True)
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "local_setup.py"), json.dumps(CONNECTION)],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        raise SystemExit(f"set-up failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    options = parser.parse_args()
    postgres = None
    if options.database == "postgres":
        from devtools.postgres import PostgresServer

        print("==> starting PostgreSQL on 127.0.0.1 (temporary data directory)", flush=True)
        postgres = PostgresServer().start()
    try:
        return run(postgres.create_database("airflow") if postgres else None)
    finally:
        if postgres is not None:
            postgres.stop()


def run(database_url: str | None) -> int:
    stack = AirflowStack(
        HOME,
        ROOT / "dags",
        api_port=API_PORT,
        database_url=database_url,
        env={"HUBSPOT_EXPORT_DIR": str(ROOT / ".airflow" / "exports"), "HUBSPOT_POKE_INTERVAL": "2"},
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    started = time.monotonic()
    print("==> preparing .airflow/local (database schema, hubspot_default connection)", flush=True)
    setup = prepare(stack)
    sandbox = subprocess.Popen(
        [
            sys.executable, "-m", "airflow_provider_hubexport.sandbox", "--port", str(SANDBOX_PORT),
            # Tens of seconds, as HubSpot's own exports take: the sensor's check before deferring
            # sees PENDING, so the wait defers and shows on the triggerer, on any machine.
            "--pending-seconds", str(PENDING_SECONDS), "--processing-seconds", str(PROCESSING_SECONDS),
        ],
        stdout=open(stack.logs / "sandbox.log", "ab"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    stack.processes["sandbox"] = [sandbox]
    try:
        print("==> starting the API server, scheduler, DAG processor and triggerer", flush=True)
        components = time.monotonic()
        stack.start_all()
        stack.wait_healthy()
        now = time.monotonic()
        print(
            f"""
Airflow is up after {now - started:.0f} s: http://127.0.0.1:{API_PORT}  (no login: every visitor is
an admin in this local setup only)
  (set-up {components - started:.0f} s: database {setup["database_s"]:.0f} s ({"migrated" if setup["migrated"] else "schema current, not migrated"}), connection {setup["connection_s"]:.0f} s, Airflow import {setup["import_s"]:.0f} s; components healthy {now - components:.0f} s)

  * DAGs: unpause and trigger hubspot_list_export, hubspot_contacts_daily or hubspot_export_one_task.
  * Connections (Admin > Connections): hubspot_default is the HubSpot type with its own fields;
    its Test button checks the token against the sandbox.
  * Files land in .airflow/exports/; component logs are in .airflow/local/component-logs/.

Press Ctrl-C to stop everything.""",
            flush=True,
        )
        while not stop.is_set():
            if any(p.poll() is not None for procs in stack.processes.values() for p in procs):
                print("A component exited; see .airflow/local/component-logs/. Stopping.", file=sys.stderr)
                return 1
            stop.wait(1)
        return 0
    finally:
        print("\n==> stopping (SIGINT, then SIGTERM, then SIGKILL)", flush=True)
        stack.stop()
        print("stopped.", flush=True)


if __name__ == "__main__":
    sys.exit(main())
