"""End to end on real Airflow: API server, scheduler (LocalExecutor), DAG processor and triggerer
as separate processes, driven through the REST API, against the sandbox on loopback.

One stack serves the module; every test stops what it started, and the stack stops everything
(escalating to SIGKILL) even when a test fails.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest
from conftest import SECRET_TOKEN

from airflow_provider_hubexport.sandbox import Packaging, Sandbox
from devtools.airflow_stack import AirflowStack

DAGS = Path(__file__).resolve().parent.parent / "dags"

BIG_DOWNLOAD_DAG = """
import pendulum
from datetime import timedelta
from airflow.sdk import DAG
from airflow_provider_hubexport.operators.export import HubSpotDownloadExportOperator, HubSpotStartExportOperator
from airflow_provider_hubexport.sensors.export import HubSpotExportSensor

with DAG("e2e_big_download", schedule=None, start_date=pendulum.datetime(2026, 1, 1), catchup=False) as dag:
    start = HubSpotStartExportOperator(task_id="start_export", object_type="CONTACT",
                                       object_properties=["email", "firstname", "notes"])
    wait = HubSpotExportSensor(task_id="wait", export_task_id="{{ ti.xcom_pull(task_ids='start_export') }}",
                               deferrable=True, poke_interval=1)
    download = HubSpotDownloadExportOperator(
        task_id="download", export_task_id="{{ ti.xcom_pull(task_ids='start_export') }}",
        destination=__import__("os").environ["HUBSPOT_EXPORT_DIR"] + "/big", filename="contacts",
        retries=2, retry_delay=timedelta(seconds=1),
    )
    start >> wait >> download
"""


@pytest.fixture(scope="module")
def sandbox_e2e():
    sandbox = Sandbox(token=SECRET_TOKEN)
    sandbox.start()
    yield sandbox
    sandbox.stop()


@pytest.fixture(scope="module")
def stack(sandbox_e2e, tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow-e2e")
    dags = home / "dags"
    dags.mkdir()
    for name in ("hubspot_list_export.py",):
        shutil.copy(DAGS / name, dags / name)
    (dags / "e2e_big_download.py").write_text(BIG_DOWNLOAD_DAG)
    exports = home / "exports"
    env = {
        "AIRFLOW_CONN_HUBSPOT_DEFAULT": sandbox_e2e.connection_json(
            retry_max_attempts=3, retry_max_seconds=10
        ),
        "HUBSPOT_EXPORT_DIR": str(exports),
        "HUBSPOT_POKE_INTERVAL": "1",
    }
    airflow = AirflowStack(home / "home", dags, env=env)
    try:
        started = time.monotonic()
        airflow.prepare()
        airflow.start_all()
        healthy_after = airflow.wait_healthy()
        print(
            f"\nAirflow healthy {healthy_after:.1f} s after start ({time.monotonic() - started:.1f} s with db migrate)"
        )
        for dag_id in ("hubspot_list_export", "e2e_big_download"):
            airflow.unpause(dag_id)
        airflow.exports = exports
        yield airflow
    finally:
        airflow.stop()
        leftovers = [p for procs in airflow.processes.values() for p in procs if p.poll() is None]
        assert not leftovers, f"processes left running: {[p.pid for p in leftovers]}"


@pytest.fixture(autouse=True)
def _fresh_sandbox(sandbox_e2e):
    sandbox_e2e.requests.clear()
    sandbox_e2e.faults.clear()
    sandbox_e2e.packaging = Packaging()
    yield


def _sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _group_pids(proc):
    try:
        root = psutil.Process(proc.pid)
        return {root.pid, *(c.pid for c in root.children(recursive=True))}
    except psutil.NoSuchProcess:
        return set()


def _pids_talking_to(port):
    return {c.pid for c in psutil.net_connections(kind="tcp") if c.raddr and c.raddr.port == port and c.pid}


def test_list_export_defers_to_the_triggerer(stack, sandbox_e2e):
    sandbox_e2e.plan_next(pending_seconds=3, processing_seconds=3, row_count=300)
    triggerer_pids = set().union(*(_group_pids(p) for p in stack.processes["triggerer"]))
    pollers: set[int] = set()

    def watch(states):
        if states.get("wait_for_export") == "deferred":
            pollers.update(_pids_talking_to(sandbox_e2e.port))

    started = time.monotonic()
    run_id = stack.trigger("hubspot_list_export", {"list_id": "77"})
    state, seen = stack.wait_run("hubspot_list_export", run_id, timeout=180, on_poll=watch)
    print(f"\nhubspot_list_export run took {time.monotonic() - started:.1f} s")
    assert state == "success"
    assert "deferred" in seen["wait_for_export"]
    assert pollers and pollers <= triggerer_pids  # the polls while deferred came from the triggerer
    assert len(sandbox_e2e.api_requests("/async", method="POST")) == 1
    (export_id,) = [e for e in sandbox_e2e.exports if sandbox_e2e.exports[e].request.get("listId") == "77"]
    landed = list((stack.exports / "lists" / "77").glob("*/*"))
    assert len(landed) == 1 and _sha(landed[0]) == _sha(sandbox_e2e.served_file(export_id))


def test_triggerer_killed_mid_wait_is_replaced(stack, sandbox_e2e):
    sandbox_e2e.plan_next(pending_seconds=8, processing_seconds=4)
    run_id = stack.trigger("hubspot_list_export", {"list_id": "78"})
    stack.wait_until(
        "sensor deferred",
        lambda: stack.task_states("hubspot_list_export", run_id).get("wait_for_export") == "deferred",
        timeout=90,
        every=0.25,
    )
    (old,) = [p for p in stack.processes["triggerer"] if p.poll() is None]
    stack.kill(old, signal.SIGKILL)
    stack.start("triggerer")
    state, _ = stack.wait_run("hubspot_list_export", run_id, timeout=180)
    assert state == "success"
    assert len(sandbox_e2e.api_requests("/async", method="POST")) == 1


def test_task_killed_mid_download_retries_without_partial_file(stack, sandbox_e2e):
    sandbox_e2e.packaging = Packaging(zip_over_bytes=10**12, rows_per_file=10**9)
    sandbox_e2e.plan_next(pending_polls=0, processing_polls=1, row_count=400_000, download_rate=4_000_000)
    destination = stack.exports / "big"
    final_names: list[tuple[str, int]] = []
    killed: list[int] = []
    done = threading.Event()

    def killer():
        # Independent of the REST polling: kill whatever holds the file host's connection the
        # moment the download is under way (bounded by the run's own timeout).
        while not done.is_set() and not killed:
            pids = _pids_talking_to(sandbox_e2e.files_port)
            if pids:
                time.sleep(0.5)  # let some bytes land in the staging file
                for pid in pids:
                    os.kill(pid, signal.SIGKILL)
                killed.extend(pids)
            done.wait(0.05)

    def watch(states):
        # Whatever stands at a final name must be the whole file, at every moment.
        if destination.exists():
            for name in os.listdir(destination):
                if not name.startswith(".hubspot-"):
                    final_names.append((name, os.path.getsize(destination / name)))

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    run_id = stack.trigger("e2e_big_download")
    try:
        state, seen = stack.wait_run("e2e_big_download", run_id, timeout=240, on_poll=watch)
    finally:
        done.set()
        thread.join(10)
    assert killed, "the download finished before it could be killed"
    assert state == "success"
    size = os.path.getsize(
        sandbox_e2e.served_file([e for e, x in sandbox_e2e.exports.items() if x.plan.download_rate][0])
    )
    assert all(seen == ("contacts.csv", size) for seen in final_names)
    tries = stack.api("GET", f"/dags/e2e_big_download/dagRuns/{run_id}/taskInstances/download")["try_number"]
    assert tries >= 2  # the killed try, then the retry that completed
    (export_id,) = [e for e, x in sandbox_e2e.exports.items() if x.plan.download_rate]
    assert os.listdir(destination) == ["contacts.csv"]  # no .part left behind
    assert _sha(destination / "contacts.csv") == _sha(sandbox_e2e.served_file(export_id))
    assert len(sandbox_e2e.api_requests("/async", method="POST")) == 1


def test_rest_api_connection_test(stack, sandbox_e2e):
    body = {
        "connection_id": "probe",
        "conn_type": "hubspot",
        "host": sandbox_e2e.api_url,
        "password": SECRET_TOKEN,
    }
    assert stack.api("POST", "/connections/test", json=body) == {
        "status": True,
        "message": "Connection successfully tested: the token is valid and has the crm.export scope.",
    }
    bad = stack.api("POST", "/connections/test", json={**body, "password": "wrong-token"})
    assert (
        bad["status"] is False
        and "INVALID_AUTHENTICATION" in bad["message"]
        and "wrong-token" not in bad["message"]
    )
