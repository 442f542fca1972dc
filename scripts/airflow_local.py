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
    print("==> preparing .airflow/local (airflow db migrate)", flush=True)
    stack.prepare()
    sandbox = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_hubexport.sandbox", "--port", str(SANDBOX_PORT)],
        stdout=open(stack.logs / "sandbox.log", "ab"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    stack.processes["sandbox"] = [sandbox]
    try:
        conn = {
            "conn_type": "hubspot",
            "host": f"http://127.0.0.1:{SANDBOX_PORT}",
            "password": "sandbox-token",
        }
        try:
            stack.airflow("connections", "delete", "hubspot_default")
        except RuntimeError:
            pass  # not there yet
        stack.airflow("connections", "add", "hubspot_default", "--conn-json", json.dumps(conn))
        print("==> starting the API server, scheduler, DAG processor and triggerer", flush=True)
        stack.start_all()
        stack.wait_healthy()
        print(
            f"""
Airflow is up after {time.monotonic() - started:.0f} s: http://127.0.0.1:{API_PORT}  (no login: every visitor is
an admin in this local setup only)

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
