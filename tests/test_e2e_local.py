"""End to end on real Airflow: API server, scheduler (LocalExecutor), DAG processor and triggerer
as separate processes, driven through the REST API, against the sandbox on loopback.

One stack serves the module; every test stops what it started, and the stack stops everything
(escalating to SIGKILL) even when a test fails.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest
from conftest import SECRET_TOKEN

from airflow_provider_hubexport.hooks.hubspot import PROBE_TASK_ID
from airflow_provider_hubexport.sandbox import ExportPlan, Packaging, Sandbox
from airflow_provider_hubexport.sandbox.state import most_at_once, most_in_window
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
    # Waits in the task (poke): this DAG is about the download, and a deferral that ends at once
    # meets Airflow's stale-executor-event race (apache/airflow#72716).
    wait = HubSpotExportSensor(task_id="wait", export_task_id="{{ ti.xcom_pull(task_ids='start_export') }}",
                               deferrable=False, poke_interval=1)
    download = HubSpotDownloadExportOperator(
        task_id="download", export_task_id="{{ ti.xcom_pull(task_ids='start_export') }}",
        destination=__import__("os").environ["HUBSPOT_EXPORT_DIR"] + "/big", filename="contacts",
        retries=2, retry_delay=timedelta(seconds=1),
    )
    start >> wait >> download
"""


# A reschedule-mode wait: each poke is a new task process with a new sensor object. Pokes 15 s
# apart: a reschedule that starts again within seconds meets Airflow 3.3.2's stale-executor-event
# race (apache/airflow#72716), which fails the task whatever it does (seen at 1 s).
RESCHEDULE_DAG = """
import pendulum
from airflow.sdk import DAG
from airflow_provider_hubexport.operators.export import HubSpotStartExportOperator
from airflow_provider_hubexport.sensors.export import HubSpotExportSensor

with DAG("e2e_reschedule_errors", schedule=None, start_date=pendulum.datetime(2026, 1, 1), catchup=False) as dag:
    start = HubSpotStartExportOperator(task_id="start_export", object_type="CONTACT", object_properties=["email"])
    HubSpotExportSensor(task_id="wait", export_task_id="{{ ti.xcom_pull(task_ids='start_export') }}",
                        mode="reschedule", deferrable=False, poke_interval=15, max_poke_interval=15,
                        timeout=600, max_transient_errors=2) << start
"""


# Incremental exports on Airflow 3's default daily schedule (CronTriggerTimetable: each run's data
# interval is a point), once with the default one-hour lookback and once without. The DAGs end
# with the backfill's last day, so unpausing them schedules no run of their own. Waits in the task
# (poke): deferrals that end within seconds meet apache/airflow#72716.
INCREMENTAL_DAG = """
import os
from datetime import timedelta
import pendulum
from airflow.sdk import DAG
from airflow_provider_hubexport.operators.export import HubSpotExportOperator

for dag_id, lookback in (("e2e_incremental", timedelta(hours=1)), ("e2e_incremental_no_lookback", 0)):
    with DAG(dag_id, schedule="@daily", start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
             end_date=pendulum.datetime(2026, 1, 12, tz="UTC"), catchup=False, max_active_runs=1) as dag:
        HubSpotExportOperator(
            task_id="export", object_type="CONTACT", object_properties=["email"],
            incremental=True, lookback=lookback, export_internal_values_options=["NAMES"],
            destination=os.environ["HUBSPOT_EXPORT_DIR"] + "/" + dag_id + "/{{ ds }}", filename="contacts",
            deferrable=False, poke_interval=1,
        )
    globals()[dag_id] = dag
"""


# A DAG on the connection the UI test saves through the REST API, as the connection form does.
UI_CONN_DAG = """
import pendulum
from airflow.sdk import DAG
from airflow_provider_hubexport.operators.export import HubSpotStartExportOperator

with DAG("e2e_ui_connection", schedule=None, start_date=pendulum.datetime(2026, 1, 1), catchup=False) as dag:
    HubSpotStartExportOperator(task_id="start_export", object_type="CONTACT", object_properties=["email"],
                               hubspot_conn_id="hubspot_ui")
"""


@pytest.fixture(scope="module")
def sandbox_e2e():
    sandbox = Sandbox(token=SECRET_TOKEN, identify_clients=True)
    sandbox.start()
    yield sandbox
    sandbox.stop()


@pytest.fixture(scope="module")
def stack(sandbox_e2e, tmp_path_factory, postgres):
    home = tmp_path_factory.mktemp("airflow-e2e")
    dags = home / "dags"
    dags.mkdir()
    for name in ("hubspot_list_export.py", "hubspot_contacts_daily.py"):
        shutil.copy(DAGS / name, dags / name)
    (dags / "e2e_big_download.py").write_text(BIG_DOWNLOAD_DAG)
    (dags / "e2e_ui_connection.py").write_text(UI_CONN_DAG)
    (dags / "e2e_reschedule_errors.py").write_text(RESCHEDULE_DAG)
    (dags / "e2e_incremental.py").write_text(INCREMENTAL_DAG)
    exports = home / "exports"
    env = {
        "AIRFLOW_CONN_HUBSPOT_DEFAULT": sandbox_e2e.connection_json(
            # Not shorter: Airflow (3.3.2 and before) may fail a task whose trigger fires within
            # seconds of its deferral, if the scheduler has not yet seen the deferral's exit
            # (apache/airflow#67287, #72716).
            retry_max_attempts=3,
            retry_max_seconds=10,
            quota_retry_interval=20,
        ),
        "HUBSPOT_EXPORT_DIR": str(exports),
        "HUBSPOT_POOL": "hubspot_exports",
        # The DAG files are written before the stack starts: parse each once, not every 30 s (CPU
        # the other legs of `make test` need).
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "3600",
        # Waits on the triggerer where the DAG does not say: the daily DAG's start and sensor.
        "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True",
        "HUBSPOT_POKE_INTERVAL": "1",
        "HUBSPOT_MAX_POKE_INTERVAL": "2",
    }
    # Four components write the metadata database at once: PostgreSQL, as in production.
    airflow = AirflowStack(home / "home", dags, database_url=postgres.create_database("e2e_local"), env=env)
    try:
        started = time.monotonic()
        airflow.prepare()
        airflow.start_all()
        healthy_after = airflow.wait_healthy()
        print(
            f"\nAirflow healthy {healthy_after:.1f} s after start ({time.monotonic() - started:.1f} s with db migrate)"
        )
        for dag_id in (
            "hubspot_list_export",
            "e2e_big_download",
            "e2e_ui_connection",
            "e2e_reschedule_errors",
            "e2e_incremental",
            "e2e_incremental_no_lookback",
        ):
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


def _live_groups(stack, name):
    """Process groups of a component's live processes (each runs in its own group)."""
    return {proc.pid for proc in stack.processes[name] if proc.poll() is None}


def _status_polls(sandbox, export_id):
    return sandbox.api_requests(f"/tasks/{export_id}/status", method="GET")


def test_list_export_defers_to_the_triggerer(stack, sandbox_e2e):
    # Counted polls: the sensor's check before deferring (poll 1) sees PENDING whatever the
    # machine's speed, so the wait always defers, and the triggerer makes exactly the rest: eleven
    # polls 1-2 s apart, so the trigger fires some 20 s after the deferral (sooner meets Airflow's
    # stale-executor-event race on a loaded machine: apache/airflow#72716).
    pending, processing = 6, 6
    sandbox_e2e.plan_next(pending_polls=pending, processing_polls=processing, row_count=300)
    triggerers = _live_groups(stack, "triggerer")

    started = time.monotonic()
    run_id = stack.trigger("hubspot_list_export", {"list_id": "77"})
    state, seen = stack.wait_run("hubspot_list_export", run_id, timeout=300)
    print(f"\nhubspot_list_export run took {time.monotonic() - started:.1f} s")
    assert state == "success", stack.failure_report("hubspot_list_export", [run_id], runs=1, lines=60)
    assert "deferred" in seen["wait_for_export"]
    assert len(sandbox_e2e.api_requests("/async", method="POST")) == 1
    (export_id,) = [e for e in sandbox_e2e.exports if sandbox_e2e.exports[e].request.get("listId") == "77"]

    # From the sandbox's record of every status request and the process group that sent it:
    # the worker checked once, the triggerer made every poll of the deferred wait (until COMPLETE),
    # and the download asked once more from a worker.
    polls = _status_polls(sandbox_e2e, export_id)
    senders = ["triggerer" if r.pgid in triggerers else "worker" for r in polls]
    assert None not in [r.pgid for r in polls]
    assert senders[0] == "worker"
    assert senders[1 : 1 + pending + processing] == ["triggerer"] * (pending + processing), senders
    assert senders[1 + pending + processing :] == ["worker"], senders
    assert all(r.headers.get("User-Agent", "").endswith(" aiohttp") for r in polls if r.pgid in triggerers)
    landed = list((stack.exports / "lists" / "77").glob("*/*"))
    assert len(landed) == 1 and _sha(landed[0]) == _sha(sandbox_e2e.served_file(export_id))


def test_reschedule_mode_gives_up_after_max_transient_errors_pokes(stack, sandbox_e2e):
    # Issue 26: the error count lived on the sensor object, new in every poke's process, so a
    # persistent 503 ran to the sensor's timeout (600 s here; 24 h by default).
    sandbox_e2e.inject(path="/status", kind="status", status=503, retry_after=0.05, times=10**6)
    run_id = stack.trigger("e2e_reschedule_errors")
    state, seen = stack.wait_run("e2e_reschedule_errors", run_id, timeout=400)

    assert state == "failed" and stack.task_states("e2e_reschedule_errors", run_id)["wait"] == "failed"
    assert "up_for_reschedule" in seen["wait"], seen
    (export_id,) = [
        e
        for e in sandbox_e2e.exports
        if sandbox_e2e.exports[e].request.get("exportName", "").startswith("e2e_reschedule_errors.")
    ]
    polls = _status_polls(sandbox_e2e, export_id)
    # Three pokes (two errors tolerated, the third gives up), each the connection's three attempts,
    # each poke from a process of its own.
    pokes = sorted({r.pgid for r in polls})
    assert len(polls) == 9 and len(pokes) == 3, [(round(r.at, 1), r.pid, r.pgid) for r in polls]
    log = stack.task_log("e2e_reschedule_errors", run_id, "wait")
    assert "(2 in a row, 2 tolerated)" in log, log[-3000:]
    assert "Task failed with exception" in log and "HTTP 503" in log.split("Task failed with exception")[-1]


def test_triggerer_killed_mid_wait_is_replaced(stack, sandbox_e2e):
    pending, processing = 8, 2  # ten polls 1-2 s apart: the kill lands mid-wait on any machine
    sandbox_e2e.plan_next(pending_polls=pending, processing_polls=processing)
    (old,) = [p for p in stack.processes["triggerer"] if p.poll() is None]
    run_id = stack.trigger("hubspot_list_export", {"list_id": "78"})
    (export_id,) = stack.wait_until(
        "the export started",
        lambda: [e for e in sandbox_e2e.exports if sandbox_e2e.exports[e].request.get("listId") == "78"],
        timeout=180,
    )
    stack.wait_until(
        "the old triggerer polling",
        lambda: [r for r in _status_polls(sandbox_e2e, export_id) if r.pgid == old.pid],
        timeout=180,
        every=0.25,
    )
    stack.kill(old, signal.SIGKILL)
    killed_at = time.monotonic()
    new = stack.start("triggerer")
    state, _ = stack.wait_run("hubspot_list_export", run_id, timeout=300)
    assert state == "success", stack.failure_report("hubspot_list_export", [run_id], runs=1, lines=60)
    assert len(sandbox_e2e.api_requests("/async", method="POST")) == 1
    polls = _status_polls(sandbox_e2e, export_id)
    record = [(round(r.at - killed_at, 1), r.pid, r.pgid) for r in polls]
    who = f"old triggerer {old.pid}, new {new.pid}; polls (s after the kill, pid, group): {record}"
    after = [r for r in polls if r.at > killed_at and r.pgid in (old.pid, new.pid)]
    assert after and {r.pgid for r in after} == {new.pid}, who  # the new triggerer took the wait over
    triggerer_polls = [r for r in polls if r.pgid in (old.pid, new.pid)]
    assert len(triggerer_polls) >= pending + processing, who  # until COMPLETE


def test_task_killed_mid_download_retries_without_partial_file(stack, sandbox_e2e):
    sandbox_e2e.packaging = Packaging(zip_over_bytes=10**12, rows_per_file=10**9)
    # 32 MB at 2 MB/s: 16 s of download, so the kill lands mid-file even when the sandbox takes
    # seconds to name the downloading process (a scan of the machine's sockets, slow under load).
    sandbox_e2e.plan_next(pending_polls=0, processing_polls=1, row_count=800_000, download_rate=2_000_000)
    destination = stack.exports / "big"
    final_names: list[tuple[str, int]] = []
    killed: list[int] = []
    gone: list[int] = []
    done = threading.Event()

    def killer():
        # Independent of the REST polling: kill a process that asked the file host for the file
        # (the sandbox records it) while the download is under way; bounded by the run. A process
        # already gone (its try ended some other way) is noted and the next one is awaited.
        while not done.is_set() and not killed:
            pids = [r.pid for r in sandbox_e2e.file_requests if r.pid and r.at >= t0 and r.pid not in gone]
            if pids:
                time.sleep(0.5)  # let some bytes land in the staging file (2 MB/s: seconds left)
                try:
                    os.kill(pids[-1], signal.SIGKILL)
                    killed.append(pids[-1])
                except ProcessLookupError:
                    gone.append(pids[-1])
            done.wait(0.05)

    def watch():
        # Whatever stands at a final name must be the whole file, at every moment.
        while not done.wait(0.1):
            if destination.exists():
                for name in os.listdir(destination):
                    if not name.startswith(".hubspot-"):
                        try:
                            final_names.append((name, os.path.getsize(destination / name)))
                        except FileNotFoundError:  # renamed away between the listing and the look
                            pass

    t0 = time.monotonic()  # the sandbox's clock for ``at``: only this run's downloads count
    threads = [threading.Thread(target=f, daemon=True) for f in (killer, watch)]
    for thread in threads:
        thread.start()
    run_id = stack.trigger("e2e_big_download")
    try:
        state, _ = stack.wait_run("e2e_big_download", run_id, timeout=300)
    finally:
        done.set()
        for thread in threads:
            thread.join(10)
    if gone:
        print(f"\ndownloading processes gone before the kill (their try ended otherwise): {gone}")
    assert killed, f"the download finished before it could be killed (processes already gone: {gone})"
    assert state == "success", stack.failure_report("e2e_big_download", [run_id], runs=1, lines=60)
    size = os.path.getsize(
        sandbox_e2e.served_file([e for e, x in sandbox_e2e.exports.items() if x.plan.download_rate][0])
    )
    assert all(name_size == ("contacts.csv", size) for name_size in final_names), final_names
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


BACKFILL_DAYS = ["2026-01-05", "2026-01-06", "2026-01-07", "2026-01-08", "2026-01-09", "2026-01-10"]


def test_backfill_rides_out_the_export_limit_unattended(stack, sandbox_e2e):
    """Six daily runs against HubSpot's limits scaled down (2 exports per rolling 60 s, one
    PROCESSING at a time), through the README's commands: a one-slot pool that counts deferred
    tasks, and ``airflow backfill create``. Refused starts wait deferred and try again."""
    window = 60.0
    pool = {"name": "hubspot_exports", "slots": 1, "include_deferred": True}
    stack.api("POST", "/pools", json=pool, ok=(409,))  # 409: a resent request found it created
    sandbox_e2e.export_limit, sandbox_e2e.one_at_a_time = (2, window), True
    # Exports of 30 s: the sensor's trigger fires well after its deferral. Airflow 3.3.2 and before
    # may fail a task whose trigger fires within seconds of its deferral, when the scheduler has not
    # yet processed the deferral's exit (apache/airflow#67287, #72716): seen here with 2 s exports,
    # and once with 15 s ones, whose sensor started 11 s after the export on a loaded machine and
    # deferred for 5 s.
    default_plan, sandbox_e2e.plan = sandbox_e2e.plan, ExportPlan(pending_seconds=1, processing_seconds=30)
    first = len(sandbox_e2e.export_history())
    try:
        # Airflow starts no run of a paused DAG, backfill runs included; unpaused, it also
        # schedules its latest interval (catchup=False): one more export, under the same limits.
        stack.unpause("hubspot_contacts_daily")
        started = time.monotonic()
        stack.airflow(
            "backfill", "create", "--dag-id", "hubspot_contacts_daily",
            "--from-date", BACKFILL_DAYS[0], "--to-date", BACKFILL_DAYS[-1],
        )  # fmt: skip

        def runs():
            return stack.api("GET", "/dags/hubspot_contacts_daily/dagRuns", params={"limit": 50})["dag_runs"]

        def all_finished():
            listed = runs()
            backfilled = [r for r in listed if r["run_type"] == "backfill"]
            done = all(r["state"] in ("success", "failed") for r in listed)
            return listed if len(backfilled) == len(BACKFILL_DAYS) and done else None

        listed = stack.wait_until("the backfill finished", all_finished, timeout=900, every=2)
        print(
            f"\nbackfill of {len(BACKFILL_DAYS)} days (+{len(listed) - len(BACKFILL_DAYS)} scheduled) "
            f"took {time.monotonic() - started:.0f} s; {len(sandbox_e2e.refused_starts())} starts refused"
        )
        failed = [r["dag_run_id"] for r in listed if r["state"] != "success"]
        assert not failed, stack.failure_report("hubspot_contacts_daily", failed)
        backfilled = sorted(r["data_interval_start"][:10] for r in listed if r["run_type"] == "backfill")
        assert backfilled == BACKFILL_DAYS
        # No task failed along the way: every try of every task was its first.
        for run in listed:
            tis = stack.api("GET", f"/dags/hubspot_contacts_daily/dagRuns/{run['dag_run_id']}/taskInstances")
            assert {ti["task_id"]: (ti["state"], ti["try_number"]) for ti in tis["task_instances"]} == {
                task: ("success", 1)
                for task in ("start_export", "wait_for_export", "download_export", "count_rows")
            }, run["dag_run_id"]
    finally:
        sandbox_e2e.export_limit, sandbox_e2e.one_at_a_time, sandbox_e2e.plan = None, False, default_plan
    history = sandbox_e2e.export_history()[first:]
    assert len(history) == len(listed)  # one export per run: no duplicate start
    assert sandbox_e2e.refused_starts(), "the limit was never reached: the test proves nothing"
    assert most_in_window([r.started for r in history], window) <= 2
    assert most_at_once([(r.processing_at, r.completed_at) for r in history if r.processing_at]) == 1
    for day in BACKFILL_DAYS:
        end = (datetime.date.fromisoformat(day) + datetime.timedelta(days=1)).isoformat()
        (export_id,) = [
            e for e in sandbox_e2e.exports
            if sandbox_e2e.exports[e].request.get("exportName") == f"contacts modified {day}"
        ]  # fmt: skip
        landed = stack.exports / "contacts" / f"{day}_{end}" / "contacts.csv"
        assert _sha(landed) == _sha(sandbox_e2e.served_file(export_id)), day


# -- incremental exports: nothing lost through a backfill -------------------------------------------
INCREMENTAL_POINTS = [datetime.datetime(2026, 1, d, tzinfo=datetime.timezone.utc) for d in range(6, 13)]
MINUTE_MS = 60_000


def _ms(moment: datetime.datetime) -> int:
    return int(moment.timestamp()) * 1000


def _plan_changes(crm) -> tuple[set[int], set[int]]:
    """Contacts modified through the backfill's week while it "runs": each day some mid-interval
    changes, one 30 minutes before the day's end (in that day's export, and again in the next one's
    lookback), one exactly at the day's end (the next window's first millisecond), one 10 minutes
    before the end, inside the index lag of 20 minutes (not in that day's export: the run exports 5
    minutes after its point), and three records changed on several days (3, 2 and 2 of them).
    Returns (the lagged ids, the boundary ids)."""
    old = sorted(crm.changes("contacts", crm.genesis_ms - 30 * 86_400_000, crm.genesis_ms - 20 * 86_400_000))
    ids = iter(old)
    lagged, boundary = set(), set()
    again = [next(ids) for _ in range(3)]
    for day, end in enumerate(INCREMENTAL_POINTS):
        start = _ms(end) - 86_400_000
        for k in range(5):
            crm.modify(
                "contacts", next(ids), start + (k + 1) * 3 * 3_600_000, email=f"day{day}-{k}@example.com"
            )
        crm.modify("contacts", again[day % 3], start + 7 * 3_600_000 + day, email=f"again{day}@example.com")
        # 30 minutes before the end: indexed in time for its own day, and in the next day's lookback
        crm.modify("contacts", next(ids), _ms(end) - 30 * MINUTE_MS)
        if end != INCREMENTAL_POINTS[-1]:  # the last day's lagged and boundary changes are the next run's
            lagged.add(record := next(ids))
            crm.modify("contacts", record, _ms(end) - 10 * MINUTE_MS)
            boundary.add(record := next(ids))
            crm.modify("contacts", record, _ms(end))
    return lagged, boundary


def _landed_latest(folder: Path) -> tuple[dict[int, int], int]:
    """The union of the landed files de-duplicated by hs_object_id, keeping the latest
    modification (the README's recipe), and how many rows there were before."""
    import csv

    latest: dict[int, int] = {}
    rows = 0
    for path in sorted(folder.glob("*/contacts.csv")):
        with open(path, newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                rows += 1
                modified = datetime.datetime.fromisoformat(row["lastmodifieddate"].replace("Z", "+00:00"))
                record, ms = int(row["hs_object_id"]), int(modified.timestamp() * 1000)
                latest[record] = max(latest.get(record, ms), ms)
    return latest, rows


def _backfill_incremental(stack, sandbox, dag_id: str) -> None:
    """Backfill the week, each export seeing the CRM as of 5 minutes after its run's point."""
    crm = sandbox.crm
    crm.as_of_queue.extend(_ms(p) + 5 * MINUTE_MS for p in INCREMENTAL_POINTS)
    first = len(sandbox.export_history())
    try:
        stack.airflow(
            "backfill", "create", "--dag-id", dag_id, "--max-active-runs", "1",
            "--from-date", INCREMENTAL_POINTS[0].date().isoformat(), "--to-date", INCREMENTAL_POINTS[-1].date().isoformat(),
        )  # fmt: skip

        def finished():
            listed = stack.api("GET", f"/dags/{dag_id}/dagRuns", params={"limit": 50})["dag_runs"]
            done = len(listed) == len(INCREMENTAL_POINTS) and all(
                r["state"] in ("success", "failed") for r in listed
            )
            return listed if done else None

        listed = stack.wait_until(f"the backfill of {dag_id}", finished, timeout=600, every=2)
        failed = [r["dag_run_id"] for r in listed if r["state"] != "success"]
        assert not failed, stack.failure_report(dag_id, failed)
    finally:
        left = len(crm.as_of_queue)
        crm.as_of_queue.clear()
    history = sandbox.export_history()[first:]
    assert left == 0 and len(history) == len(INCREMENTAL_POINTS), (left, len(history))
    # The as-of times were handed out in start order: the runs must have started in date order.
    names = [sandbox.exports[r.id].request["exportName"] for r in history]
    assert names == sorted(names), names


def test_an_incremental_backfill_loses_no_record_and_without_lookback_loses_the_lagged_ones(
    stack, sandbox_e2e
):
    crm = sandbox_e2e.crm
    crm.index_lag_ms = 20 * MINUTE_MS
    crm.set_population("contacts", 3000)  # all last modified in the 30 days before the sandbox started
    try:
        lagged, boundary = _plan_changes(crm)
        for dag_id in ("e2e_incremental", "e2e_incremental_no_lookback"):
            _backfill_incremental(stack, sandbox_e2e, dag_id)
    finally:
        crm.index_lag_ms = 0
        crm.set_population("contacts", 25)
    whole = crm.changes("contacts", _ms(INCREMENTAL_POINTS[0]) - 86_400_000, _ms(INCREMENTAL_POINTS[-1]))
    # the plan, and nothing else changed in that week: 5 a day, 3 changed on several days, 1 a day
    # in the last half hour, and 6 lagged and 6 boundary ones
    assert len(whole) == 7 * 5 + 3 + 7 + 6 + 6
    repeats = (3 - 1) + (2 - 1) + (2 - 1)  # rows beyond the first of the records changed on several days

    with_lookback, rows = _landed_latest(stack.exports / "e2e_incremental")
    assert with_lookback == whole  # every record, at its latest modification, once after de-duplication
    assert rows == len(whole) + repeats + 6  # the lookback delivers the last half hour of 6 days twice

    without, rows_without = _landed_latest(stack.exports / "e2e_incremental_no_lookback")
    assert set(whole) - set(without) == lagged  # exactly the records inside the index lag are lost
    assert {k: v for k, v in whole.items() if k not in lagged} == without
    assert rows_without == len(without) + repeats  # half-open windows: no record in two of them
    assert boundary <= set(without)
    print(
        f"\nincremental backfill of {len(INCREMENTAL_POINTS)} days: {len(whole)} records changed; "
        f"lookback 1 h: {len(with_lookback)} landed ({rows} rows); lookback 0: {len(without)} landed, "
        f"{len(lagged)} lost inside the index lag"
    )


# -- the UI's requests -----------------------------------------------------------------------------
def _form_extra():
    """The extras the connection form sends for an unchanged HubSpot form: every field of the
    provider's form, the empty ones as null and the numbers with their defaults."""
    from airflow_provider_hubexport import get_provider_info

    (conn_type,) = get_provider_info()["connection-types"]
    return {name: field["schema"].get("default") for name, field in conn_type["conn-fields"].items()}


def test_connection_form_round_trip_test_button_and_a_bad_param(stack, sandbox_e2e):
    host = sandbox_e2e.api_url
    # Added through the form: a hidden port is not sent, so it is stored as null.
    stack.api(
        "POST",
        "/connections",
        json={"connection_id": "hubspot_ui", "conn_type": "hubspot", "host": host, "password": SECRET_TOKEN,
              "extra": json.dumps(_form_extra())},
    )  # fmt: skip
    stored = stack.api("GET", "/connections/hubspot_ui")
    assert stored["port"] is None and stored["password"] != SECRET_TOKEN

    def test_button(conn):
        # What the connections list's Test button sends: the listed fields, Number(port) (0 for
        # null) and the masked password, which tells the server to use the stored one.
        body = {"connection_id": conn["connection_id"], "conn_type": conn["conn_type"],
                "description": conn["description"] or "", "extra": conn["extra"] or "{}", "host": conn["host"] or "",
                "login": conn["login"] or "", "password": conn["password"] or "", "port": conn["port"] or 0,
                "schema": conn["schema"] or ""}  # fmt: skip
        return stack.api("POST", "/connections/test", json=body, ok=(400,))

    # Saved unchanged through the edit form: the hidden port "" goes back as null, the masked
    # password as the mask (kept), the extras as they were.
    saved = stack.api("PATCH", "/connections/hubspot_ui", json={**stored, "port": None})
    assert saved["port"] is None and json.loads(saved["extra"]) == _form_extra()
    # Airflow 3.3.2 refuses that test (0 is not null): the README says so, with the workaround
    # that `make airflow` uses, port 0 stored outside the form.
    refused = test_button(saved)
    assert "differs from the stored connection" in json.dumps(refused), refused
    stack.api("PATCH", "/connections/hubspot_ui", json={**saved, "port": 0})
    tested = test_button(stack.api("GET", "/connections/hubspot_ui"))
    assert tested["status"] is True and "token is valid" in tested["message"], tested
    polls = _status_polls(sandbox_e2e, PROBE_TASK_ID)  # the token check: a status that must not exist
    assert polls and polls[-1].headers["Authorization"] == f"Bearer {SECRET_TOKEN}"

    # A task on the saved connection: its null extras count as absent, and nothing short or empty
    # reaches the secrets masker.
    run_id = stack.trigger("e2e_ui_connection")
    state, _ = stack.wait_run("e2e_ui_connection", run_id, timeout=300)
    log = stack.task_log("e2e_ui_connection", run_id, "start_export")
    assert state == "success", stack.failure_report("e2e_ui_connection", [run_id], runs=1, lines=60)
    assert "Skipping masking" not in log and "Started HubSpot export" in log

    # A test of a connection id that does not exist names no random id of the server's.
    missing = stack.api("POST", "/connections/test",
                        json={"connection_id": "hubspot_missing", "conn_type": "hubspot", "host": host, "port": 0})  # fmt: skip
    assert missing["status"] is False and missing["message"].startswith("This connection has no credentials")

    # The trigger form's params: a list id that is not a number is refused before any run starts.
    runs_before = stack.api("GET", "/dags/hubspot_list_export/dagRuns")["total_entries"]
    refused = stack.api("POST", "/dags/hubspot_list_export/dagRuns", json={"logical_date": None,
                        "conf": {"list_id": "abc"}}, ok=(400,))  # fmt: skip
    assert "list_id" in json.dumps(refused.get("detail")), refused  # a 400's detail, not a new run
    assert stack.api("GET", "/dags/hubspot_list_export/dagRuns")["total_entries"] == runs_before
