"""The start, download and all-in-one operators in real Airflow (``dag.test()``) against the sandbox."""

from __future__ import annotations

import hashlib
import os

import pytest
from dagrun import assert_failed_with, run_dag

from airflow_provider_hubexport.compat import HAS_RESUMABLE_JOBS
from airflow_provider_hubexport.exceptions import HubSpotExportCanceledError, HubSpotExportRequestError
from airflow_provider_hubexport.operators.export import build_export_request

HEADER = """
import pendulum
from airflow.sdk import DAG, Asset, task
from airflow_provider_hubexport.operators.export import (
    HubSpotDownloadExportOperator, HubSpotExportOperator, HubSpotStartExportOperator,
)
from airflow_provider_hubexport.sensors.export import HubSpotExportSensor
"""


@pytest.fixture
def env(sandbox, connect, airflow_db):
    connect()
    return sandbox


def _sha(path):
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


# -- request building -----------------------------------------------------------------------------
def test_keywords_and_request_merge_with_defaults():
    request = build_export_request(
        {"objectType": "DEAL", "someNewField": 1},
        {
            "object_properties": ["dealname"],
            "filters": [{"propertyName": "amount", "operator": "GT", "value": "5"}],
        },
        "dag.task run",
    )
    assert request == {
        "objectType": "DEAL",
        "someNewField": 1,
        "objectProperties": ["dealname"],
        "publicCrmSearchRequest": {"filters": [{"propertyName": "amount", "operator": "GT", "value": "5"}]},
        "exportType": "VIEW",
        "format": "CSV",
        "language": "EN",
        "exportName": "dag.task run",
    }


def test_conflicting_values_refused():
    with pytest.raises(
        HubSpotExportRequestError, match="object_type='DEAL' conflicts with export_request's objectType"
    ):
        build_export_request(
            {"objectType": "CONTACT", "objectProperties": ["x"]}, {"object_type": "DEAL"}, "n"
        )


def test_bad_request_fails_before_any_request(env):
    source = (
        HEADER
        + """
with DAG({dag_id}, schedule=None, start_date=pendulum.datetime(2026, 1, 1)) as dag:
    HubSpotStartExportOperator(task_id="start", object_type="CONTACT", object_properties=[], retries=0)
"""
    )
    result = run_dag("bad_request", source)
    assert_failed_with(result, "start", HubSpotExportRequestError, r"objectProperties.*non-empty list")
    assert env.requests == []


# -- the three operators and the sensor -----------------------------------------------------------
def test_start_wait_download_pipeline(env, tmp_path):
    env.plan_next(pending_polls=1, processing_polls=1, row_count=50)
    source = (
        HEADER
        + """
with DAG({dag_id}, schedule=None, start_date=pendulum.datetime(2026, 1, 1)) as dag:
    start = HubSpotStartExportOperator(
        task_id="start_export",
        export_request={{"objectType": "CONTACT", "objectProperties": ["email", "firstname"]}},
        export_name="contacts {{{{ ds }}}}",
    )
    wait = HubSpotExportSensor(
        task_id="wait", export_task_id="{{{{ ti.xcom_pull(task_ids='start_export') }}}}",
        deferrable=True, poke_interval=0.1,
    )
    download = HubSpotDownloadExportOperator(
        task_id="download", export_task_id="{{{{ ti.xcom_pull(task_ids='start_export') }}}}",
        destination={dest} + "/{{{{ ds }}}}", outlets=[Asset("file://" + {dest})], checksum="sha256",
    )
    start >> wait >> download
"""
    )
    result = run_dag("pipeline", source, dest=str(tmp_path))
    assert result.tasks == {"start_export": "success", "wait": "success", "download": "success"}
    task_id = result.xcom["start_export"]
    assert task_id.isdigit() and result.xcom["wait"]["export_task_id"] == task_id
    (landed,) = result.xcom["download"]
    assert landed["sha256"] == _sha(env.served_file(task_id)) == _sha(landed["path"])
    assert os.path.dirname(landed["path"]).startswith(str(tmp_path) + "/20")  # the run's ds
    body = env.api_requests("/async", method="POST")[0].body
    assert b'"exportName": "contacts 20' in body
    assert _asset_event_extra("file://" + str(tmp_path)) == {
        "hubspot_export_task_id": task_id,
        "files": [landed["path"]],
    }


def _asset_event_extra(uri):
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        event = session.scalars(
            select(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.uri == uri)
        ).all()[-1]
        return {k: v for k, v in event.extra.items() if k in ("hubspot_export_task_id", "files")}


def test_start_retry_reconnects_instead_of_starting_again(env):
    """The first try fails after HubSpot accepted the export; on Airflow 3.3 the retry reuses that
    export. Below 3.3 there is no task_state_store: the retry starts a new one (as the README says)
    and the run still succeeds."""
    env.plan_next(pending_polls=5)
    source = (
        HEADER
        + """
class CrashAfterStart(HubSpotStartExportOperator):
    def get_job_result(self, external_id, context):
        if context["ti"].try_number == 1:
            raise RuntimeError("worker lost after the export was accepted")
        return super().get_job_result(external_id, context)

with DAG({dag_id}, schedule=None, start_date=pendulum.datetime(2026, 1, 1)) as dag:
    CrashAfterStart(task_id="start", object_type="CONTACT", object_properties=["email"], retries=1, retry_delay=0)
"""
    )
    result = run_dag("start_retry", source)
    assert result.tasks == {"start": "success"} and result.tries["start"] == 2
    if HAS_RESUMABLE_JOBS:
        assert len(env.api_requests("/async", method="POST")) == 1
        assert result.xcom["start"] == list(env.exports)[0]
    else:
        assert len(env.api_requests("/async", method="POST")) == 2
        assert result.xcom["start"] == list(env.exports)[1]


@pytest.mark.parametrize("deferrable", [False, True])
def test_all_in_one_operator(env, tmp_path, deferrable):
    env.plan_next(pending_polls=1, processing_polls=1, row_count=40)
    source = (
        HEADER
        + """
with DAG({dag_id}, schedule=None, start_date=pendulum.datetime(2026, 1, 1)) as dag:
    HubSpotExportOperator(
        task_id="export", object_type="COMPANY", object_properties=["name", "domain"], file_format="XLSX",
        destination={dest}, deferrable={deferrable}, poke_interval=0.1,
    )
"""
    )
    result = run_dag(f"one_task_{deferrable}", source, dest=str(tmp_path), deferrable=deferrable)
    assert result.tasks == {"export": "success"}
    (landed,) = result.xcom["export"]
    (task_id,) = env.exports
    assert landed["path"].endswith(".xlsx") and _sha(landed["path"]) == _sha(env.served_file(task_id))
    assert landed["sha256"] is None  # no checksum asked for
    agents = {r.headers["User-Agent"].rsplit(" ", 1)[-1] for r in env.api_requests("/status")}
    assert agents == ({"requests", "aiohttp"} if deferrable else {"requests"})


def test_all_in_one_rides_out_a_transient_error_before_deferring(env, tmp_path):
    # The check before deferring is the sensor's: a status call that fails past the hook's retry
    # budget (4 attempts) is "not yet", and the trigger polls again, instead of failing the task.
    env.plan_next(pending_polls=1, processing_polls=1, row_count=40)
    env.inject("status", status=503, retry_after=0.01, times=4, path="/status")
    source = (
        HEADER
        + """
with DAG({dag_id}, schedule=None, start_date=pendulum.datetime(2026, 1, 1)) as dag:
    HubSpotExportOperator(task_id="export", object_type="CONTACT", object_properties=["email"],
                          destination={dest}, deferrable=True, poke_interval=0.1)
"""
    )
    result = run_dag("one_task_transient", source, dest=str(tmp_path))
    assert result.tasks == {"export": "success"} and result.tries["export"] == 1
    statuses = env.api_requests("/status")
    assert [r.headers["User-Agent"].rsplit(" ", 1)[-1] for r in statuses[:4]] == ["requests"] * 4
    assert "aiohttp" in {r.headers["User-Agent"].rsplit(" ", 1)[-1] for r in statuses[4:]}


def test_all_in_one_retry_after_failed_download_only_downloads_again(env, tmp_path):
    # The first try spends the whole download budget of the connection (4 attempts); the retry lands it.
    env.plan_next(pending_polls=0, processing_polls=1, row_count=5000, cut_downloads=4)
    source = (
        HEADER
        + """
with DAG({dag_id}, schedule=None, start_date=pendulum.datetime(2026, 1, 1)) as dag:
    HubSpotExportOperator(
        task_id="export", object_type="CONTACT", object_properties=["email"], destination={dest},
        poke_interval=0.1, retries=1, retry_delay=0, deferrable=False,
    )
"""
    )
    if not HAS_RESUMABLE_JOBS:  # below 3.3 the retry starts a new export: let that one download
        env.plan_next(pending_polls=0, processing_polls=1, row_count=5000)
    result = run_dag("one_task_retry", source, dest=str(tmp_path))
    assert result.tasks == {"export": "success"} and result.tries["export"] == 2
    # On 3.3 the quota is spent once; below it, once per try.
    assert len(env.api_requests("/async", method="POST")) == (1 if HAS_RESUMABLE_JOBS else 2)
    task_id = list(env.exports)[-1]
    assert _sha(result.xcom["export"][0]["path"]) == _sha(env.served_file(task_id))
    assert os.listdir(tmp_path) == [os.path.basename(result.xcom["export"][0]["path"])]


def test_all_in_one_canceled_fails(env, tmp_path):
    env.plan_next(pending_polls=0, processing_polls=0, cancel=True)
    source = (
        HEADER
        + """
with DAG({dag_id}, schedule=None, start_date=pendulum.datetime(2026, 1, 1)) as dag:
    HubSpotExportOperator(task_id="export", object_type="CONTACT", object_properties=["email"],
                          destination={dest}, deferrable=True, retries=2, retry_delay=0)
"""
    )
    result = run_dag("one_task_canceled", source, dest=str(tmp_path))
    assert result.tries["export"] == 1
    assert_failed_with(result, "export", HubSpotExportCanceledError, r"canceled")
    assert os.listdir(tmp_path) == []
