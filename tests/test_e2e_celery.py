"""Scaled out: the Celery executor with a Redis broker and two triggerers, 50 export waits at once.

Checks that every wait succeeds, that no export is polled by two triggerers at once, and that
killing the triggerer holding the waits hands them to the other one.
"""

from __future__ import annotations

import itertools
import signal
import time
from collections import Counter, defaultdict

import pytest
from conftest import CONTACTS, SECRET_TOKEN

from airflow_provider_hubexport.sandbox import Sandbox
from devtools.airflow_stack import AirflowStack, free_port, start_redis

WAITS = 50
POLL = 3.0
# Poll-counted exports: the sensor's check before deferring is poll 1 and always sees PENDING, so
# every run defers however late it starts; the triggerers then make the other polls.
PENDING_POLLS = 6
PROCESSING_POLLS = 6

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
def celery_stack(tmp_path_factory, postgres):
    home = tmp_path_factory.mktemp("airflow-celery")
    (home / "dags").mkdir()
    (home / "dags" / "e2e_wait.py").write_text(WAIT_DAG)
    (home / "logs").mkdir()
    sandbox = Sandbox(token=SECRET_TOKEN, identify_clients=True)
    sandbox.start()
    redis_port = free_port()
    redis = start_redis(redis_port, home / "logs")
    stack = AirflowStack(
        home / "home",
        home / "dags",
        executor="CeleryExecutor",
        database_url=postgres.create_database("e2e_celery"),
        env={
            "AIRFLOW_CONN_HUBSPOT_DEFAULT": sandbox.connection_json(
                retry_max_attempts=3, retry_max_seconds=10
            ),
            "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{redis_port}/0",
            "AIRFLOW__CELERY__RESULT_BACKEND": f"redis://127.0.0.1:{redis_port}/1",
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": "16",
            "AIRFLOW__CORE__PARALLELISM": "64",
            # The DAG files are written before the stack starts: parse each once, not every 30 s (CPU
            # the other legs of `make test` need).
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "3600",
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


def _triggerer_polls(sandbox, triggerer_groups):
    """Status polls the sandbox recorded from a triggerer's process group: (export id, group, time)."""
    return [
        (request.path.split("/")[-2], request.pgid, request.at)
        for request in sandbox.api_requests("/status", method="GET")
        if request.pgid in triggerer_groups
    ]


def test_fifty_waits_two_triggerers_one_killed(celery_stack, monkeypatch):
    from airflow_provider_hubexport.hooks.hubspot import HubSpotHook

    stack, sandbox = celery_stack, celery_stack.sandbox
    monkeypatch.setenv("AIRFLOW_CONN_HUBSPOT_DEFAULT", sandbox.connection_json())
    hook = HubSpotHook()
    export_ids = []
    for _ in range(WAITS):
        sandbox.plan_next(pending_polls=PENDING_POLLS, processing_polls=PROCESSING_POLLS)
        export_ids.append(hook.start_export(CONTACTS))
    hook.close()
    triggerers = {proc.pid: proc for proc in stack.processes["triggerer"]}  # group id == leader's pid
    started = time.monotonic()
    runs = [stack.trigger("e2e_wait", {"export_id": export_id}) for export_id in export_ids]

    # The triggerer to kill is the one the sandbox has seen polling the most waits (at least 10
    # waits polled by triggerers by then, so it holds several).
    def busiest_triggerer():
        polls = _triggerer_polls(sandbox, triggerers)
        if len({export_id for export_id, _, _ in polls}) < 10:
            return None
        counts = Counter(group for _, group in {(export_id, group) for export_id, group, _ in polls})
        return counts.most_common(1)[0]

    victim_group, held = stack.wait_until("triggerers polling", busiest_triggerer, timeout=300, every=0.5)
    stack.kill(triggerers[victim_group], signal.SIGKILL)
    killed_at = time.monotonic()
    print(f"\nkilled triggerer {victim_group} {killed_at - started:.1f} s in, with {held} waits polled by it")

    def all_done():
        states = [stack.run_state("e2e_wait", run_id) for run_id in runs]
        return states if all(s in ("success", "failed") for s in states) else None

    states = stack.wait_until("all 50 runs", all_done, timeout=600, every=2)
    print(f"{WAITS} runs finished {time.monotonic() - started:.1f} s after the first trigger")
    assert states.count("success") == WAITS, stack.failure_report("e2e_wait", runs)

    # From the sandbox's complete record: every export was polled by a triggerer, each export's
    # polls came from one triggerer at a time (the victim's, then the survivor's, never back and
    # forth), about POLL seconds apart, and the victim's unfinished waits moved to the survivor.
    by_export = defaultdict(list)
    for export_id, group, at in _triggerer_polls(sandbox, triggerers):
        by_export[export_id].append((at, group))
    assert set(by_export) == set(export_ids), (
        f"exports never polled by a triggerer: {set(export_ids) - set(by_export)}"
    )
    handed_over = 0
    for export_id, seen in by_export.items():
        groups = [group for _, group in sorted(seen)]
        switches = sum(1 for a, b in itertools.pairwise(groups) if a != b)
        assert switches <= 1, f"export {export_id} polled back and forth between triggerers: {groups}"
        if switches:
            assert groups[0] == victim_group, f"export {export_id} left a live triggerer: {groups}"
            handed_over += 1
        total_polls = len(sandbox.api_requests(f"/tasks/{export_id}/status", method="GET"))
        assert total_polls >= PENDING_POLLS + PROCESSING_POLLS + 1  # polled until COMPLETE
    assert handed_over >= 1, "no wait moved from the killed triggerer to the other one"
    gaps = [b - a for seen in by_export.values() for (a, _), (b, _) in itertools.pairwise(sorted(seen))]
    print(
        f"status polls by triggerers: {sum(map(len, by_export.values()))}, waits handed over: {handed_over}, "
        f"smallest gap between polls of one export {min(gaps):.2f} s"
    )
    assert min(gaps) > POLL / 2
