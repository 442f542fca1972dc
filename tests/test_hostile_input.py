"""Hostile and bad input: each refused before any request leaves the machine, with a message that
names the field and what is allowed."""

from __future__ import annotations

import pytest
from conftest import CONTACTS

from airflow_provider_hubexport.exceptions import HubSpotExportRequestError

FILTER = {"propertyName": "lastmodifieddate", "operator": "GT", "value": "1"}

IDS = ["", "   ", "-3", -3, 0, "abc", "12a", "../1", "1/../../x", "1%2F2", "%31", "1 2", "9" * 20, 10**25,
       None, True, 1.0, [1], {"id": 1}, "١٢٣", "0x10", "+5"]  # fmt: skip
REQUESTS = [
    ({**CONTACTS, "exportType": "EVERYTHING"}, "exportType", "VIEW, LIST"),
    ({**CONTACTS, "format": "PDF"}, "format", "CSV, XLS, XLSX"),
    ({**CONTACTS, "language": "KLINGON"}, "language", "EN, DE"),
    ({k: v for k, v in CONTACTS.items() if k != "objectType"}, "objectType", "CONTACT"),
    ({**CONTACTS, "objectType": "  "}, "objectType", "CONTACT"),
    ({**CONTACTS, "objectProperties": []}, "objectProperties", "non-empty list"),
    ({**CONTACTS, "objectProperties": ["email", None]}, "objectProperties", "non-empty list"),
    ({**CONTACTS, "objectProperties": "email"}, "objectProperties", "non-empty list"),
    ({**CONTACTS, "exportType": "LIST"}, "listId", "required when exportType is LIST"),
    ({**CONTACTS, "exportType": "LIST", "listId": "../9"}, "listId", "positive integer"),
    ({**CONTACTS, "publicCrmSearchRequest": {"filterGroups": [{"filters": [FILTER]}] * 6}}, "filterGroups",
     "at most 5"),
    ({**CONTACTS, "publicCrmSearchRequest": {"filterGroups": [{"filters": [FILTER] * 7}]}}, "filterGroups[0]",
     "at most 6 per group"),
    ({**CONTACTS, "publicCrmSearchRequest": {"filterGroups": [{"filters": [FILTER] * 6}] * 4}},
     "publicCrmSearchRequest", "at most 18"),
    ({**CONTACTS, "publicCrmSearchRequest": {"filters": [{**FILTER, "operator": "LIKE"}]}}, "operator", "EQ, NEQ"),
    ({**CONTACTS, "publicCrmSearchRequest": {"filters": [{"operator": "EQ"}]}}, "propertyName", "non-empty"),
    ({**CONTACTS, "exportName": 42}, "exportName", "string"),
    ("DROP TABLE contacts", "export request", "dict"),
]  # fmt: skip


@pytest.mark.parametrize("bad", IDS, ids=[repr(i)[:20] for i in IDS])
def test_ids(sandbox, hook, bad):
    for call, field in ((hook.get_export_status, "export_task_id"), (hook.get_export, "export_id")):
        with pytest.raises(HubSpotExportRequestError) as err:
            call(bad)
        assert field in str(err.value) and "positive integer" in str(err.value)
    with pytest.raises(HubSpotExportRequestError, match="export_task_id"):
        hook.download_export(bad, "/tmp/never-created-hubspot-dir")
    assert sandbox.requests == []


@pytest.mark.parametrize("request_body,field,allowed", REQUESTS, ids=[r[1] + ":" + r[2] for r in REQUESTS])
def test_export_requests(sandbox, hook, request_body, field, allowed):
    with pytest.raises(HubSpotExportRequestError) as err:
        hook.start_export(request_body)
    assert field in str(err.value) and allowed in str(err.value), str(err.value)
    assert sandbox.requests == []


@pytest.mark.parametrize(
    "host", ["http://api.hubapi.com", "http://10.0.0.5:8080", "http://[2001:db8::1]", "ftp://127.0.0.1"]
)
def test_connection_hosts(sandbox, connect, host):
    from airflow_provider_hubexport.hooks.hubspot import HubSpotHook

    connect(host=host)
    with pytest.raises(HubSpotExportRequestError) as err:
        HubSpotHook().get_export_status(1)
    assert "host" in str(err.value) and ("https" in str(err.value) or "http(s)" in str(err.value))
    assert sandbox.requests == []


@pytest.mark.parametrize(
    "extra,field",
    [({"api_version": "v4"}, "api_version"), ({"read_timeout": "soon"}, "read_timeout"),
     ({"retry_max_attempts": -1}, "retry_max_attempts"), ({"retry_backoff_seconds": -1}, "retry_backoff_seconds")],
)  # fmt: skip
def test_connection_extras(sandbox, connect, extra, field):
    from airflow_provider_hubexport.hooks.hubspot import HubSpotHook

    connect(extra=extra)
    with pytest.raises(HubSpotExportRequestError, match=field):
        HubSpotHook().get_export_status(1)
    assert sandbox.requests == []


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"destination": "/sys/hubspot-x"}, "cannot be created"),
        ({"destination": ""}, "destination is required"),
        ({"destination": "/tmp/x", "filename": "../../etc/passwd"}, "filename must be a plain file name"),
        ({"destination": "/tmp/x", "filename": "a/b"}, "filename must be a plain file name"),
        ({"destination": "/tmp/x", "filename": ".."}, "filename must be a plain file name"),
    ],
)
def test_destinations(sandbox, hook, kwargs, message):
    with pytest.raises(HubSpotExportRequestError, match=message):
        hook.download_export("123", **kwargs)
    assert sandbox.requests == []


@pytest.mark.parametrize("bad", IDS, ids=[repr(i)[:20] for i in IDS])
async def test_ids_on_the_triggerer(sandbox, connect, bad):
    """The deferrable path checks the id too: the trigger's wait ends in one error event, final
    (not retryable), naming the field, and nothing reaches HubSpot."""
    from airflow_provider_hubexport.triggers.export import HubSpotExportTrigger

    connect()
    trigger = HubSpotExportTrigger(export_task_id=bad, poll_interval=0)
    (event,) = [event.payload async for event in trigger.run()]
    assert event["status"] == "error" and not event["retryable"], event
    assert "export_task_id" in event["message"] and "positive integer" in event["message"], event
    assert sandbox.requests == []
