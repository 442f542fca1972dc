"""Every waiting knob a user can give is honoured or refused, never ignored (issue 26, points 7,
8 and 11): BaseSensorOperator's ``exponential_backoff`` and ``max_wait``, ``never_fail`` in the
check before deferring, ``timedelta`` durations on the all-in-one operator, and ``default_args``
for the arguments the download and all-in-one operators share."""

from __future__ import annotations

from datetime import timedelta

import pytest
from dagrun import run_dag

from airflow_provider_hubexport.polling import DEFAULT_BACKOFF_FACTOR, DEFAULT_MAX_POLL_INTERVAL


def _sensor(**kwargs):
    from airflow_provider_hubexport.sensors.export import HubSpotExportSensor

    return HubSpotExportSensor(task_id="wait", export_task_id="123", **kwargs)


def test_exponential_backoff_false_is_a_steady_interval():
    assert _sensor(poke_interval=5, exponential_backoff=False).schedule.factor == 1
    assert _sensor(poke_interval=5).schedule.factor == DEFAULT_BACKOFF_FACTOR
    assert _sensor(poke_interval=5, exponential_backoff=True).schedule.factor == DEFAULT_BACKOFF_FACTOR
    with pytest.raises(ValueError, match="exponential_backoff=False.*backoff_factor=2"):
        _sensor(exponential_backoff=False, backoff_factor=2)


def test_max_wait_is_max_poke_interval():
    assert _sensor(poke_interval=5, max_wait=timedelta(seconds=70)).schedule.maximum == 70
    assert _sensor(poke_interval=5, max_poke_interval=timedelta(minutes=2)).schedule.maximum == 120
    assert _sensor(poke_interval=5).schedule.maximum == DEFAULT_MAX_POLL_INTERVAL
    with pytest.raises(ValueError, match="max_wait=.*max_poke_interval=.*give only max_poke_interval"):
        _sensor(max_wait=60, max_poke_interval=90)


def test_the_all_in_one_operator_takes_durations_as_the_sensor_does(tmp_path):
    from airflow_provider_hubexport.operators.export import HubSpotExportOperator

    op = HubSpotExportOperator(
        task_id="export",
        object_type="CONTACT",
        object_properties=["email"],
        destination=str(tmp_path),
        poke_interval=timedelta(seconds=2),
        max_poke_interval=timedelta(seconds=30),
        timeout=timedelta(hours=1),
    )
    assert (op.schedule.initial, op.schedule.maximum, op.timeout) == (2, 30, 3600)


DEFAULTS_DAG = """
import pendulum
from airflow.sdk import DAG
from airflow_provider_hubexport.operators.export import HubSpotExportOperator

defaults = {{"destination": {destination}, "filename": "contacts", "poke_interval": 0.2, "max_poke_interval": 0.5,
            "deferrable": False}}
with DAG({dag_id}, schedule=None, start_date=pendulum.datetime(2026, 1, 1), catchup=False,
         default_args=defaults) as dag:
    HubSpotExportOperator(task_id="export", object_type="CONTACT", object_properties=["email"])
"""


def test_shared_arguments_take_default_args(sandbox, connect, airflow_db, tmp_path):
    connect()
    sandbox.plan_next(pending_polls=1)
    result = run_dag("default_args_shared", DEFAULTS_DAG, destination=str(tmp_path))
    assert result.tasks == {"export": "success"}, result.errors
    (landed,) = result.xcom["export"]
    assert landed["path"] == str(tmp_path / "contacts.csv")


def test_the_download_operator_takes_its_arguments_from_default_args(tmp_path):
    from airflow.sdk import DAG

    from airflow_provider_hubexport.operators.export import HubSpotDownloadExportOperator

    with DAG("download_defaults", schedule=None, default_args={"destination": str(tmp_path), "unzip": True}):
        op = HubSpotDownloadExportOperator(task_id="download", export_task_id="123")
    assert (op.destination, op.unzip, op.overwrite) == (str(tmp_path), True, True)


NEVER_FAIL_DAG = """
import pendulum
from airflow.sdk import DAG
from airflow_provider_hubexport.sensors.export import HubSpotExportSensor

with DAG({dag_id}, schedule=None, start_date=pendulum.datetime(2026, 1, 1), catchup=False) as dag:
    HubSpotExportSensor(task_id="wait", export_task_id="999999", deferrable=True, never_fail=True, poke_interval=1)
"""


def test_never_fail_skips_a_failure_in_the_check_before_deferring(sandbox, connect, airflow_db):
    connect()
    result = run_dag("never_fail_first_check", NEVER_FAIL_DAG)
    # HubSpot does not know export 999999 (404): the check before deferring fails, and never_fail
    # skips it as the poke loop and the resumed wait do.
    assert result.tasks == {"wait": "skipped"}, result.errors
    assert len(sandbox.api_requests("/tasks/999999/status", method="GET")) == 1
