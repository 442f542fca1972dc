"""The HubSpot portal id lineage names HubSpot's datasets by: from the connection, else one cached
account-details call against the sandbox, else None (never an error)."""

from __future__ import annotations

import json

import pytest
from conftest import SECRET_TOKEN

from airflow_provider_hubexport.exceptions import HubSpotExportRequestError
from airflow_provider_hubexport.hooks import hubspot


@pytest.fixture(autouse=True)
def _fresh_cache():
    hubspot._portal_ids.clear()
    yield
    hubspot._portal_ids.clear()


def _hook(monkeypatch, sandbox, **extra):
    monkeypatch.setenv("AIRFLOW_CONN_HUBSPOT_DEFAULT", sandbox.connection_json(**extra))
    return hubspot.HubSpotHook()


def _account_calls(sandbox):
    return sandbox.api_requests("/account-info/v3/details", method="GET")


def test_portal_id_is_read_once_per_connection_and_token(sandbox, monkeypatch):
    sandbox.portal_id = 987654
    assert _hook(monkeypatch, sandbox).get_portal_id() == 987654
    assert _hook(monkeypatch, sandbox).get_portal_id() == 987654
    assert len(_account_calls(sandbox)) == 1
    assert _account_calls(sandbox)[0].headers["Authorization"] == f"Bearer {SECRET_TOKEN}"


def test_portal_id_from_the_connection_asks_hubspot_nothing(sandbox, monkeypatch):
    assert _hook(monkeypatch, sandbox, portal_id="123").get_portal_id() == 123
    assert _account_calls(sandbox) == []


def test_portal_id_refused_by_hubspot_is_none_not_an_error(sandbox, monkeypatch):
    sandbox.portal_id = None  # 403 MISSING_SCOPES for the account details
    assert _hook(monkeypatch, sandbox).get_portal_id() is None
    assert len(_account_calls(sandbox)) == 1


@pytest.mark.parametrize("bad", ["abc", "0", "-5", True])
def test_bad_portal_id_extra_names_the_field_and_the_fix(sandbox, monkeypatch, bad):
    monkeypatch.setenv(
        "AIRFLOW_CONN_HUBSPOT_DEFAULT",
        json.dumps({**json.loads(sandbox.connection_json()), "extra": {"portal_id": bad}}),
    )
    with pytest.raises(HubSpotExportRequestError, match="'portal_id' must be your HubSpot account's portal"):
        hubspot.HubSpotHook().settings  # noqa: B018


def test_each_credential_has_its_own_portal(sandbox, monkeypatch):
    sandbox.add_token("other-portals-token", scopes=("crm.export",))
    assert _hook(monkeypatch, sandbox).get_portal_id() == 4242
    other = json.loads(sandbox.connection_json())
    other["password"] = "other-portals-token"
    monkeypatch.setenv("AIRFLOW_CONN_HUBSPOT_OTHER", json.dumps(other))
    assert hubspot.HubSpotHook("hubspot_other").get_portal_id() == 4242
    assert [c.headers["Authorization"] for c in _account_calls(sandbox)] == [
        f"Bearer {SECRET_TOKEN}",
        "Bearer other-portals-token",
    ]  # not the first credential's answer, which may be another account's


def test_a_transient_failure_is_not_remembered(sandbox, monkeypatch):
    sandbox.inject("status", status=503, path="/account-info/v3/details", times=2)
    hook = _hook(monkeypatch, sandbox, retry_max_attempts=1)
    assert hook.get_portal_id() is None
    assert hook.get_portal_id() is None
    assert hook.get_portal_id() == 4242  # asked again each time until HubSpot answered
    assert len(_account_calls(sandbox)) == 3
