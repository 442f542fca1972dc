"""A reschedule-mode wait remembers its run of transient errors between pokes (issue 26, point 1).

Each poke of a reschedule-mode sensor is a new process with a new sensor object in production;
``dag.test()`` keeps one object, so these tests make the sensor read its count from where it is
kept between processes (``task_state_store`` on Airflow 3.3, a Variable before): a sensor that
kept it only on the object would pass here too, were it not that every poke restores it from the
store. The real scheduler proves the same in ``test_e2e_local.py``.
"""

from __future__ import annotations

import pytest
from conftest import CONTACTS
from dagrun import assert_failed_with, run_dag

from airflow_provider_hubexport.exceptions import HubSpotExportError

SENSOR_DAG = """
import pendulum
from airflow.sdk import DAG
from airflow_provider_hubexport.sensors.export import HubSpotExportSensor

with DAG({dag_id}, schedule=None, start_date=pendulum.datetime(2026, 1, 1), catchup=False) as dag:
    HubSpotExportSensor(task_id="wait", export_task_id={export_task_id}, mode="reschedule", deferrable=False,
                        poke_interval=0.2, max_poke_interval=0.2, timeout=120, max_transient_errors=2)
"""
ATTEMPTS = 2  # the connection's retry budget: each poke's status call is sent this many times


@pytest.fixture
def export(sandbox, connect, airflow_db):
    from airflow_provider_hubexport.hooks.hubspot import HubSpotHook

    connect(extra={"retry_max_attempts": ATTEMPTS, "retry_backoff_seconds": 0.01})
    sandbox.plan_next(pending_polls=2)
    return HubSpotHook().start_export(CONTACTS)


def _memory_left(dag_id: str) -> list[str]:
    """Wait memories left in the metadata database (a Variable, or a task_state_store row)."""
    from airflow.models import Variable
    from airflow.utils.session import create_session

    with create_session() as session:
        left = [v.key for v in session.query(Variable) if v.key.startswith(f"hubspot_export_wait:{dag_id}:")]
        try:
            from airflow.models.task_state_store import TaskStateStoreModel
        except ImportError:  # Airflow < 3.3
            return left
        rows = session.query(TaskStateStoreModel).filter(TaskStateStoreModel.dag_id == dag_id).all()
        return left + [f"task_state_store {r.key}" for r in rows]


def test_a_persistent_error_ends_the_wait_after_max_transient_errors_pokes(sandbox, export):
    sandbox.inject(path="/status", kind="status", status=503, times=10**6)
    result = run_dag("reschedule_budget", SENSOR_DAG, export_task_id=export)

    assert_failed_with(result, "wait", HubSpotExportError, "503")
    # Two tolerated pokes, the third gives up: three pokes of ATTEMPTS calls each, not a wait
    # that runs to its 120 s timeout.
    assert len(sandbox.api_requests(f"/tasks/{export}/status", method="GET")) == 3 * ATTEMPTS
    assert result.runs["wait"] == 3
    assert _memory_left("reschedule_budget") == []


def test_errors_between_successes_do_not_add_up(sandbox, export):
    # Pokes 1 and 2 fail, poke 3 sees PENDING, pokes 4 and 5 fail, then PENDING and COMPLETE:
    # four failed pokes, never more than the budget of 2 in a row, so the wait succeeds (the
    # second fault counts the one request of poke 3 only once the first is used up).
    sandbox.inject(path="/status", kind="status", status=503, times=2 * ATTEMPTS)
    sandbox.inject(path="/status", kind="status", status=503, times=2 * ATTEMPTS, after=1)
    result = run_dag("reschedule_streaks", SENSOR_DAG, export_task_id=export)

    assert result.tasks == {"wait": "success"}, result.errors
    assert result.xcom["wait"]["status"] == "COMPLETE"
    assert _memory_left("reschedule_streaks") == []
