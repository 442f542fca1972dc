"""Scaled out: the Celery executor with a Redis broker and two triggerers, 50 export waits at once.

Checks that every wait succeeds, that no export is polled by two triggerers at once, and that
killing the triggerer holding the waits hands them to the other one.
"""

from __future__ import annotations

import itertools
import signal
import time
from collections import defaultdict

import psutil
import pytest
from conftest import CONTACTS, SECRET_TOKEN

from airflow_provider_hubexport.sandbox import Sandbox
from devtools.airflow_stack import AirflowStack, free_port, start_redis

WAITS = 50
POLL = 3.0

WAIT_DAG = f"""
import pendulum
from airflow.sdk import DAG
from airflow_provider_hubexport.sensors.export import HubSpotExportSensor

with DAG("e2e_wait", schedule=None, start_date=pendulum.datetime(2026, 1, 1), catchup=False,
         max_active_runs={WAITS + 10}, max_active_tasks={WAITS + 10}) as dag:
    HubSpotExportSensor(task_id="wait", export_task_id="{{{{ params.export_id }}}}", deferrable=True,
                        poke_interval={POLL}, backoff_factor=1.0, params={{"export_id": "0"}})
"""


@pytest.fixture(scope="module")
def celery_stack(tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow-celery")
    (home / "dags").mkdir()
    (home / "dags" / "e2e_wait.py").write_text(WAIT_DAG)
    (home / "logs").mkdir()
    sandbox = Sandbox(token=SECRET_TOKEN)
    sandbox.start()
    redis_port = free_port()
    redis = start_redis(redis_port, home / "logs")
    stack = AirflowStack(
        home / "home",
        home / "dags",
        executor="CeleryExecutor",
        env={
            "AIRFLOW_CONN_HUBSPOT_DEFAULT": sandbox.connection_json(
                retry_max_attempts=3, retry_max_seconds=10
            ),
            "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{redis_port}/0",
            "AIRFLOW__CELERY__RESULT_BACKEND": f"redis://127.0.0.1:{redis_port}/1",
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": "16",
            "AIRFLOW__CORE__PARALLELISM": "64",
        },
    )
    stack.processes["redis"] = [redis]
    try:
        started = time.monotonic()
        stack.prepare()
        stack.start_all(("api-server", "scheduler", "dag-processor", "triggerer", "triggerer"))
        stack.start("celery", "worker")
        print(
            f"\nCelery stack healthy {stack.wait_healthy():.1f} s after start ({time.monotonic() - started:.1f} s in all)"
        )
        stack.unpause("e2e_wait")
        stack.sandbox = sandbox
        yield stack
    finally:
        stack.stop()
        sandbox.stop()
        leftovers = [p for procs in stack.processes.values() for p in procs if p.poll() is None]
        assert not leftovers, f"processes left running: {[p.pid for p in leftovers]}"


def _pollers(port, triggerers):
    """Which triggerer processes hold connections to the sandbox API."""
    talking = {
        c.pid for c in psutil.net_connections(kind="tcp") if c.raddr and c.raddr.port == port and c.pid
    }
    holders = []
    for proc in triggerers:
        try:
            group = {proc.pid, *(c.pid for c in psutil.Process(proc.pid).children(recursive=True))}
        except psutil.NoSuchProcess:
            continue
        if group & talking:
            holders.append(proc)
    return holders


def test_fifty_waits_two_triggerers_one_killed(celery_stack, monkeypatch):
    from airflow_provider_hubexport.hooks.hubspot import HubSpotHook

    stack, sandbox = celery_stack, celery_stack.sandbox
    monkeypatch.setenv("AIRFLOW_CONN_HUBSPOT_DEFAULT", sandbox.connection_json())
    hook = HubSpotHook()
    export_ids = []
    for _ in range(WAITS):
        sandbox.plan_next(pending_seconds=25, processing_seconds=25)
        export_ids.append(hook.start_export(CONTACTS))
    started = time.monotonic()
    runs = [stack.trigger("e2e_wait", {"export_id": export_id}) for export_id in export_ids]

    def deferred_count():
        listing = stack.api(
            "GET", "/dags/e2e_wait/dagRuns/~/taskInstances", params={"state": "deferred", "limit": 100}
        )
        return listing["total_entries"]

    stack.wait_until("waits deferred", lambda: deferred_count() >= WAITS // 2, timeout=120, every=1)
    holders = stack.wait_until(
        "a triggerer polling", lambda: _pollers(sandbox.port, stack.processes["triggerer"]), timeout=60
    )
    victim = holders[0]
    stack.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    print(f"\nkilled triggerer {victim.pid} {killed_at - started:.1f} s in, with waits on it")

    def all_done():
        states = [stack.run_state("e2e_wait", run_id) for run_id in runs]
        return states if all(s in ("success", "failed") for s in states) else None

    states = stack.wait_until("all 50 runs", all_done, timeout=300, every=2)
    print(f"{WAITS} runs finished {time.monotonic() - started:.1f} s after the first trigger")
    assert states.count("success") == WAITS

    # Every export was polled, one poller at a time: consecutive polls of one export are about
    # POLL seconds apart, never the near-simultaneous pairs two triggerers would make.
    polls = defaultdict(list)
    for request in sandbox.api_requests("/status"):
        if request.headers.get("User-Agent", "").endswith("aiohttp"):
            polls[request.path.split("/")[-2]].append(request.at)
    # A run that starts after its export is done finishes without deferring; nearly all deferred.
    assert set(polls) <= set(export_ids) and len(polls) >= WAITS * 0.8
    gaps = [b - a for times in polls.values() for a, b in itertools.pairwise(sorted(times))]
    print(
        f"status polls: {sum(map(len, polls.values()))}, smallest gap between polls of one export {min(gaps):.2f} s"
    )
    assert min(gaps) > POLL / 2
