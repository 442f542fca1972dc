"""``make demo``: run the hubspot_contacts_daily example DAG against the local sandbox.

Starts the sandbox, points a ``hubspot_default`` connection at it, runs the DAG for one logical
date with ``airflow dags test`` on Airflow's embedded SQLite (AIRFLOW_HOME=.airflow, git-ignored),
prints where the file landed, and stops the sandbox. Exits non-zero if anything failed.
"""

from __future__ import annotations

import csv
import datetime
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOME = ROOT / ".airflow"
EXPORTS = HOME / "exports"
# Today: the run exports yesterday's changes (and the hour before), which the sandbox's contacts,
# changed over its last 30 days, have plenty of.
LOGICAL_DATE = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
DAG_ID = "hubspot_contacts_daily"


def step(message: str) -> float:
    print(f"==> {message}", flush=True)
    return time.monotonic()


def start_sandbox(env: dict[str, str], log) -> tuple[subprocess.Popen, str]:
    ready = Path(tempfile.mkdtemp()) / "ready"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_provider_hubexport.sandbox",
            "--port",
            "0",
            "--ready-file",
            str(ready),
            "--pending-seconds",
            "1",
            "--processing-seconds",
            "2",
            "--rows",
            "3000",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the sandbox did not start; see .airflow/demo.log")
        time.sleep(0.1)
    return proc, ready.read_text()


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def run(args: list[str], env: dict[str, str], log) -> int:
    log.write(f"\n$ {' '.join(args)}\n")
    log.flush()
    return subprocess.run(args, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=900).returncode


def main() -> int:
    HOME.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "HUBSPOT_EXPORT_DIR": str(EXPORTS),
        "HUBSPOT_POKE_INTERVAL": "1",
    }
    airflow = [sys.executable, "-m", "airflow"]
    started = time.monotonic()
    with open(HOME / "demo.log", "w") as log:
        step("starting the HubSpot sandbox on 127.0.0.1")
        sandbox, url = start_sandbox(env, log)
        try:
            env["AIRFLOW_CONN_HUBSPOT_DEFAULT"] = json.dumps(
                {"conn_type": "hubspot", "host": url, "password": "sandbox-token"}
            )
            print(f"    sandbox at {url}; connection hubspot_default points at it")
            t = step("preparing Airflow's metadata database (SQLite in .airflow/)")
            # A clean database each time: `airflow dags test` of a date that already has a run in an
            # older DAG version can fail on a foreign key in Airflow 3.3.
            (HOME / "airflow.db").unlink(missing_ok=True)
            if run([*airflow, "db", "migrate"], env, log) != 0:
                return fail("airflow db migrate failed")
            print(f"    done in {time.monotonic() - t:.1f} s")
            t = step(f"running {DAG_ID} for {LOGICAL_DATE} (start -> wait -> download -> count rows)")
            code = run([*airflow, "dags", "test", DAG_ID, LOGICAL_DATE], env, log)
            print(f"    finished in {time.monotonic() - t:.1f} s")
            if code != 0:
                return fail(f"airflow dags test exited with {code}")
        finally:
            stop(sandbox)
    landed = sorted(p for p in (EXPORTS / "contacts").glob(f"*_{LOGICAL_DATE}/*") if p.is_file())
    if not landed:
        return fail("the DAG ran but no file landed")
    print("\nThe export landed here:")
    for path in landed:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = sum(1 for _ in csv.reader(fh)) - 1
        print(f"    {path}  ({path.stat().st_size:,} bytes, {rows} rows)")
    print(f"\nDemo finished in {time.monotonic() - started:.1f} s. Full log: {HOME / 'demo.log'}")
    return 0


def fail(message: str) -> int:
    print(f"\nDEMO FAILED: {message}. The last lines of .airflow/demo.log:\n", file=sys.stderr)
    lines = (HOME / "demo.log").read_text(errors="replace").splitlines()
    print("\n".join(lines[-60:]), file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
