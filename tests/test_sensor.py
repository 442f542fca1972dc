"""HubSpotExportSensor in real Airflow (``dag.test()``) against the sandbox, in every mode."""

from __future__ import annotations

import time
import types

import pytest
from conftest import SECRET_TOKEN
from dagrun import assert_failed_with, run_dag

from airflow_provider_hubexport.compat import AirflowSensorTimeout
from airflow_provider_hubexport.exceptions import (
    HubSpotExportCanceledError,
    HubSpotExportError,
    HubSpotExportRequestError,
    HubSpotExportTimeoutError,
)

SENSOR_DAG = """
import pendulum
from airflow.sdk import DAG
from airflow_provider_hubexport.sensors.export import HubSpotExportSensor

with DAG({dag_id}, schedule=None, start_date=pendulum.datetime(2026, 1, 1), catchup=False) as dag:
    HubSpotExportSensor(task_id="wait", export_task_id={task_id}, **{kwargs})
"""

MODES = {
    "poke": {"mode": "poke", "deferrable": False},
    "reschedule": {"mode": "reschedule", "deferrable": False},
    "deferrable": {"deferrable": True},
}
FAST = {"poke_interval": 0.2, "max_poke_interval": 0.5}
TIMEOUT = 60  # a test whose outcome is the timeout makes it pass: _deadline_passes_once_the_trigger_polled


@pytest.fixture
def start(start, airflow_db):
    """conftest's ``start``, with the metadata database the DAG runs need."""
    return start


def _wait(name, task_id, **kwargs):
    return run_dag(f"sensor_{name}", SENSOR_DAG, task_id=task_id, kwargs={**FAST, **kwargs})


def _agents(sandbox, task_id):
    return [
        r.headers["User-Agent"].rsplit(" ", 1)[-1] for r in sandbox.api_requests(f"/tasks/{task_id}/status")
    ]


@pytest.mark.parametrize("mode", MODES)
def test_pending_processing_complete(sandbox, start, mode):
    task_id = start(pending_polls=1, processing_polls=1)
    result = _wait(f"ok_{mode}", task_id, **MODES[mode])
    assert result.state == "success" and result.tasks == {"wait": "success"}
    xcom = result.xcom["wait"]
    assert xcom["status"] == "COMPLETE" and xcom["export_task_id"] == task_id and xcom["num_errors"] == 0
    assert xcom["completed_at"] and xcom["requested_at"]
    assert "Signature" not in str(xcom) and sandbox.files_url not in str(xcom)
    agents = _agents(sandbox, task_id)
    assert len(agents) == 3  # PENDING, PROCESSING, COMPLETE: one call each
    if mode == "deferrable":
        # One check before deferring (requests), then the trigger's polls on the triggerer (aiohttp).
        assert agents == ["requests", "aiohttp", "aiohttp"]
    else:
        assert set(agents) == {"requests"}


def test_deferrable_finishes_without_trigger_when_already_done(sandbox, start):
    task_id = start(pending_polls=0, processing_polls=0)
    result = _wait("already_done", task_id, deferrable=True)
    assert result.state == "success" and _agents(sandbox, task_id) == ["requests"]


CANCEL = {
    "pending_polls": 1,
    "processing_polls": 0,
    "cancel": True,
    "errors": [{"message": "Too many associated objects", "category": "VALIDATION_ERROR"}],
}


@pytest.mark.parametrize("mode", MODES)
def test_canceled_fails_without_retries(sandbox, start, mode):
    task_id = start(**CANCEL)
    result = _wait(f"canceled_{mode}", task_id, retries=2, retry_delay=0, **MODES[mode])
    assert result.tasks == {"wait": "failed"}  # not up_for_retry: retrying cannot help
    assert result.tries["wait"] == 1
    assert_failed_with(result, "wait", HubSpotExportCanceledError, rf"{task_id}.*Too many associated objects")


@pytest.mark.parametrize("mode", MODES)
def test_canceled_with_soft_fail_is_skipped(sandbox, start, mode):
    task_id = start(**CANCEL)
    result = _wait(f"canceled_soft_{mode}", task_id, soft_fail=True, **MODES[mode])
    assert result.tasks == {"wait": "skipped"}


def test_canceled_message_lists_hubspots_errors(sandbox, start, caplog):
    from airflow_provider_hubexport.exceptions import HubSpotExportCanceledError
    from airflow_provider_hubexport.sensors.export import HubSpotExportSensor

    task_id = start(**CANCEL)
    sensor = HubSpotExportSensor(task_id="wait", export_task_id=task_id, poke_interval=0)
    assert sensor.poke({}) is False
    with pytest.raises(HubSpotExportCanceledError) as err:
        sensor.poke({})
    assert "Too many associated objects" in str(err.value) and task_id in str(err.value)


@pytest.mark.parametrize("mode", ["poke", "deferrable"])
def test_permanent_error_fails_even_with_soft_fail(sandbox, start, mode):
    task_id = start(pending_polls=5)
    # The first status check passes; the next (the trigger's, in deferrable mode) gets a 403.
    sandbox.inject("status", status=403, path="/status", after=1, times=10)
    result = _wait(f"forbidden_{mode}", task_id, soft_fail=True, **MODES[mode])
    assert_failed_with(result, "wait", HubSpotExportError, r"HTTP 403")
    assert len(sandbox.api_requests("/status")) == 2  # no retry of a 403


def test_403_fails_at_once_without_retrying(sandbox, start):
    sandbox.add_token("narrow", scopes=("crm.objects.contacts.read",))
    task_id = start()
    sandbox.tokens.pop(SECRET_TOKEN)
    sandbox.add_token(SECRET_TOKEN, scopes=())
    result = _wait("forbidden_once", task_id, mode="poke", deferrable=False)
    assert_failed_with(result, "wait", HubSpotExportError, r"HTTP 403.*crm\.export")
    assert len(sandbox.api_requests("/status")) == 1


def _deadline_passes_once_the_trigger_polled(monkeypatch, sandbox, task_id, by: float) -> None:
    """The trigger's clock (dag.test() runs the trigger in this process) jumps ``by`` seconds once
    the sandbox has seen the trigger's first poll: its deadline passes after that poll, however long
    dag.test() took to pick the trigger up. Before the jump it is the real clock, so a trigger that
    never polls still times out, ``by`` seconds after the deferral (a hang guard, not a measure)."""
    import airflow_provider_hubexport.triggers.export as module

    real = time.time

    def now() -> float:
        return real() + (by if "aiohttp" in _agents(sandbox, task_id) else 0.0)

    monkeypatch.setattr(module, "time", types.SimpleNamespace(time=now))


@pytest.mark.parametrize("soft_fail,expected", [(False, "failed"), (True, "skipped")])
def test_deferrable_timeout(sandbox, start, monkeypatch, soft_fail, expected):
    task_id = start(pending_seconds=3600)
    _deadline_passes_once_the_trigger_polled(monkeypatch, sandbox, task_id, by=TIMEOUT)
    result = _wait(
        f"timeout_{soft_fail}", task_id, deferrable=True, timeout=TIMEOUT, soft_fail=soft_fail, retries=2
    )
    assert result.tasks == {"wait": expected}
    assert result.tries["wait"] == 1  # a sensor timeout is not retried
    if expected == "failed":
        assert_failed_with(result, "wait", HubSpotExportTimeoutError, rf"{task_id}.*timeout of {TIMEOUT} s")
    # The check before deferring, then exactly one poll of the trigger's: the deadline ended the wait.
    assert _agents(sandbox, task_id) == ["requests", "aiohttp"]


@pytest.mark.parametrize("soft_fail,expected", [(False, "failed"), (True, "skipped")])
def test_poke_timeout(sandbox, start, soft_fail, expected):
    task_id = start(pending_seconds=3600)
    result = _wait(
        f"poke_timeout_{soft_fail}", task_id, mode="poke", deferrable=False, timeout=1, soft_fail=soft_fail
    )
    assert result.tasks == {"wait": expected}
    if expected == "failed":
        assert_failed_with(result, "wait", AirflowSensorTimeout, r"(?i)timed out|timeout")


@pytest.mark.parametrize("mode", MODES)
def test_rides_out_a_429_storm(sandbox, start, mode):
    task_id = start(pending_polls=1, processing_polls=0)
    # More 429s than one call's retry budget (4 attempts): the next poll carries on.
    sandbox.inject("status", status=429, retry_after=0.05, path="/status", after=1, times=6)
    result = _wait(f"storm_{mode}", task_id, **MODES[mode])
    assert result.tasks == {"wait": "success"}
    assert sandbox.faults[-1].times == 0


def test_complete_with_errors_fails_unless_accepted(sandbox, start):
    errors = [{"message": "3 rows could not be exported"}]
    task_id = start(pending_polls=0, processing_polls=0, errors=errors)
    result = _wait("with_errors", task_id, mode="poke", deferrable=False)
    assert_failed_with(result, "wait", HubSpotExportError, r"3 rows could not be exported.*accept_errors")
    result = _wait("with_errors_ok", task_id, mode="poke", deferrable=False, accept_errors=True)
    assert result.tasks == {"wait": "success"} and result.xcom["wait"]["num_errors"] == 1


def test_unknown_status_fails_clearly(sandbox, start):
    task_id = start(pending_polls=3)
    sandbox.inject("unknown_status", path="/status", times=5)
    result = _wait("unknown", task_id, mode="poke", deferrable=False)
    assert_failed_with(result, "wait", HubSpotExportError, r"unknown status 'EXPLODED'")
    assert len(sandbox.api_requests("/status")) == 1


@pytest.mark.parametrize("bad", ["../1", "", "abc"])
def test_bad_task_id_fails_before_any_request(sandbox, start, bad):
    result = _wait("bad_id", bad, soft_fail=True, deferrable=True)
    assert_failed_with(result, "wait", HubSpotExportRequestError, r"export_task_id")
    assert sandbox.requests == []


def test_templated_task_id_from_xcom(sandbox, start):
    task_id = start(pending_polls=0, processing_polls=0)
    source = """
    import pendulum
    from airflow.sdk import DAG, task
    from airflow_provider_hubexport.sensors.export import HubSpotExportSensor

    with DAG({dag_id}, schedule=None, start_date=pendulum.datetime(2026, 1, 1), catchup=False) as dag:
        @task
        def start_export():
            return {task_id}

        start_export() >> HubSpotExportSensor(
            task_id="wait", export_task_id="{{{{ ti.xcom_pull(task_ids='start_export') }}}}", poke_interval=0
        )
    """
    result = run_dag("templated", source, task_id=task_id)
    assert result.tasks == {"start_export": "success", "wait": "success"}
    assert result.xcom["wait"]["export_task_id"] == task_id


def test_deferrable_defaults_from_config(monkeypatch):
    import subprocess
    import sys

    code = (
        "from airflow_provider_hubexport.sensors.export import HubSpotExportSensor as S;"
        "print(S(task_id='w', export_task_id=1).deferrable)"
    )
    for value in ("True", "False"):
        env = {**__import__("os").environ, "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": value}
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
        )
        assert out.returncode == 0 and out.stdout.strip(), out.stderr[-2000:]  # it ran: it said something
        assert out.stdout.strip().splitlines()[-1] == value, out.stderr[-1000:]


def test_poke_interval_grows_with_elapsed_time_and_respects_timeout():
    from airflow_provider_hubexport.sensors.export import HubSpotExportSensor

    sensor = HubSpotExportSensor(
        task_id="w",
        export_task_id=1,
        poke_interval=30,
        backoff_factor=1.5,
        max_poke_interval=600,
        timeout=7200,
    )
    # By elapsed time, so a rescheduled sensor (a new process each poke) continues the growth.
    waits = [sensor._get_next_poke_interval(None, lambda e=e: e, 1) for e in (0, 31, 76, 5000, 7000, 7300)]
    assert waits == [30, 45, 67.5, 600, 200, 0]
    sensor._state.asked_to_wait = 120  # a 429's Retry-After on the last poll
    assert sensor._get_next_poke_interval(None, lambda: 0, 1) == 120


@pytest.mark.parametrize(
    "kwargs,message",
    [({"backoff_factor": 0.5}, "backoff_factor"), ({"poke_interval": -1}, "poke_interval")],
)
def test_bad_polling_knobs_refused(kwargs, message):
    from airflow_provider_hubexport.compat import AirflowException
    from airflow_provider_hubexport.sensors.export import HubSpotExportSensor

    # Airflow 3.0's own sensor base refuses a negative poke_interval first (AirflowException); both
    # messages name the field.
    with pytest.raises((ValueError, AirflowException), match=message):
        HubSpotExportSensor(task_id="w", export_task_id=1, **kwargs)


@pytest.mark.parametrize(
    "event",
    [
        None,
        {},
        {"status": "weird"},
        {"status": "success"},
        {"status": "success", "export_task_id": "2", "export": {}},
    ],
)
def test_execute_complete_fails_closed_on_unexpected_events(event):
    from airflow_provider_hubexport.sensors.export import HubSpotExportSensor

    sensor = HubSpotExportSensor(task_id="w", export_task_id="1")
    with pytest.raises(HubSpotExportError):
        sensor.execute_complete({}, event)
