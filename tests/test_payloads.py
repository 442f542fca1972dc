"""One name for HubSpot's export task id in what the provider writes (XCom values, trigger events,
``ExportStatus.to_dict()``): ``export_task_id``, never ``task_id`` (Airflow's own) nor ``export_id``
(the id of GET /crm/v3/exports/export/{exportId}). And what 0.1.0 wrote stays readable."""

from __future__ import annotations

import logging
from datetime import datetime, timezone

import pytest

from airflow_provider_hubexport.api import ExportStatus
from airflow_provider_hubexport.exceptions import HubSpotExportCanceledError, HubSpotExportError
from airflow_provider_hubexport.polling import (
    PollSchedule,
    PollState,
    complete_from_event,
    error_event,
    export_task_id_of,
    finish,
    status_event,
    timeout_event,
)
from airflow_provider_hubexport.waiting import check_once

LOG = logging.getLogger(__name__)
OLD_KEYS = {"task_id", "export_id"}
WHEN = datetime(2026, 11, 28, 10, 0, tzinfo=timezone.utc)


def _keys(payload):
    """Every key at any depth of a JSON-like payload."""
    if isinstance(payload, dict):
        return set(payload) | {k for v in payload.values() for k in _keys(v)}
    if isinstance(payload, (list, tuple)):
        return {k for v in payload for k in _keys(v)}
    return set()


def _status(status="COMPLETE", **kwargs):
    url = "https://files.example.com/x.csv?Signature=1" if status == "COMPLETE" else None
    return ExportStatus("42", status, result_url=url, requested_at=WHEN, completed_at=WHEN, **kwargs)


# 0.1.0's shapes, as stored in XCom and the trigger table by runs made with it.
OLD_EXPORT = {
    "export_id": "42",
    "task_id": "42",
    "status": "COMPLETE",
    "num_errors": 0,
    "errors": [],
    "requested_at": WHEN.isoformat(),
    "started_at": None,
    "completed_at": WHEN.isoformat(),
}
OLD_SUCCESS_EVENT = {"status": "success", "export_task_id": "42", "export": OLD_EXPORT}


# ---------------------------------------------------------------------------------------------
# (a) What this release writes carries the id as export_task_id only.
# ---------------------------------------------------------------------------------------------
def test_status_dict_names_the_id_export_task_id():
    assert _status().export_task_id == "42"
    written = _status().to_dict()
    assert written["export_task_id"] == "42" and not OLD_KEYS & set(written)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(lambda: status_event(_status()), id="success-event"),
        pytest.param(
            lambda: status_event(_status("CANCELED", errors=["too many rows"])), id="canceled-event"
        ),
        pytest.param(
            lambda: error_event("42", HubSpotExportError("denied", status_code=403)), id="error-event"
        ),
        pytest.param(lambda: timeout_event("42", 60), id="timeout-event"),
        pytest.param(lambda: finish(_status().to_dict(), accept_errors=False, log=LOG), id="sensor-xcom"),
        pytest.param(
            lambda: check_once(
                _status, PollState("42", PollSchedule(), max_transient_errors=1, log=LOG), accept_errors=False
            ),
            id="check-once-xcom",
        ),
        pytest.param(
            lambda: complete_from_event(OLD_SUCCESS_EVENT, "42", accept_errors=False, log=LOG),
            id="xcom-after-a-0.1.0-event",
        ),
    ],
)
def test_no_payload_names_the_id_task_id_or_export_id(payload):
    written = payload()
    assert not OLD_KEYS & _keys(written), written
    assert "export_task_id" in written


async def test_trigger_event_from_the_sandbox_has_no_old_key(sandbox, connect):
    from conftest import CONTACTS

    from airflow_provider_hubexport.hooks.hubspot import HubSpotHook
    from airflow_provider_hubexport.triggers.export import HubSpotExportTrigger

    connect()
    sandbox.plan_next(pending_polls=1)
    export_task_id = HubSpotHook().start_export(CONTACTS)
    trigger = HubSpotExportTrigger(export_task_id=export_task_id, poll_interval=0.05)
    (event,) = [e.payload async for e in trigger.run()]
    assert event["export_task_id"] == event["export"]["export_task_id"] == export_task_id
    assert not OLD_KEYS & _keys(event), event


def test_asset_event_extra_names_the_id_hubspot_export_task_id():
    from types import SimpleNamespace

    from airflow_provider_hubexport.operators.export import record_outlet_events

    outlet = "file:///data/hubspot"
    events = {outlet: SimpleNamespace(extra={})}
    record_outlet_events({"outlet_events": events}, [outlet], "42", [{"path": "/data/hubspot/x.csv"}])
    assert events[outlet].extra == {"hubspot_export_task_id": "42", "files": ["/data/hubspot/x.csv"]}


# ---------------------------------------------------------------------------------------------
# (b) What 0.1.0 wrote is still read (until 0.3).
# ---------------------------------------------------------------------------------------------
def test_id_read_from_either_shape():
    assert export_task_id_of({"export_task_id": "7"}) == "7"
    assert export_task_id_of(OLD_EXPORT) == "42"


def test_sensor_resumes_from_a_0_1_0_event():
    from airflow_provider_hubexport.sensors.export import HubSpotExportSensor

    sensor = HubSpotExportSensor(task_id="wait", export_task_id="42")
    xcom = sensor.execute_complete({}, OLD_SUCCESS_EVENT)
    assert xcom["export_task_id"] == "42" and xcom["status"] == "COMPLETE"
    assert not OLD_KEYS & set(xcom)  # passed on in this release's shape


def test_0_1_0_canceled_event_names_the_export():
    old = {"status": "canceled", "export_task_id": "42", "export": {**OLD_EXPORT, "status": "CANCELED"}}
    with pytest.raises(HubSpotExportCanceledError, match="HubSpot canceled export 42"):
        complete_from_event(old, "42", accept_errors=False, log=LOG)


def test_0_1_0_event_for_another_export_is_refused():
    with pytest.raises(HubSpotExportError, match="not '43'"):
        complete_from_event(OLD_SUCCESS_EVENT, "43", accept_errors=False, log=LOG)


def test_all_in_one_operator_resumes_from_a_0_1_0_event():
    from airflow_provider_hubexport.operators.export import HubSpotExportOperator

    downloads = []

    class Hook:
        def download_export(self, export_task_id, destination, **kwargs):
            downloads.append((export_task_id, destination))
            return [{"path": f"{destination}/x.csv", "size": 1, "sha256": "0"}]

    op = HubSpotExportOperator(
        task_id="export", object_type="CONTACT", object_properties=["email"], destination="/tmp/out"
    )
    op._hook_instance = Hook()
    assert op.execute_complete({}, OLD_SUCCESS_EVENT) == [
        {"path": "/tmp/out/x.csv", "size": 1, "sha256": "0"}
    ]
    assert downloads == [("42", "/tmp/out")]


@pytest.mark.parametrize(
    "upstream", [{"export_task_id": "42", "status": "COMPLETE"}, OLD_EXPORT], ids=["new", "0.1.0"]
)
def test_download_operator_reads_the_sensors_xcom_value(upstream):
    from airflow_provider_hubexport.operators.export import HubSpotDownloadExportOperator

    downloads = []

    class Hook:
        def download_export(self, export_task_id, destination, **kwargs):
            downloads.append(export_task_id)
            return []

    op = HubSpotDownloadExportOperator(task_id="download", export_task_id=upstream, destination="/tmp/out")
    op._hook_instance = Hook()
    op.execute({})
    assert downloads == ["42"]
