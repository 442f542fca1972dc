"""One behaviour on both transports: the same auth scenarios through HubSpotHook (requests) and
HubSpotAsyncHook (aiohttp) against the sandbox, run() to any endpoint, the download's retry budget
from the connection, and test_connection leaving the hook as it was."""

from __future__ import annotations

import asyncio
import threading

import pytest
from conftest import (
    CONTACTS,
    SECRET_CLIENT_ID,
    SECRET_CLIENT_SECRET,
    SECRET_REFRESH_TOKEN,
    SECRET_TOKEN,
    arrival_gaps,
)

from airflow_provider_hubexport.exceptions import HubSpotExportError, HubSpotExportRequestError
from airflow_provider_hubexport.hooks.hubspot import HubSpotHook
from airflow_provider_hubexport.hooks.hubspot_async import HubSpotAsyncHook

OAUTH = {
    "client_id": SECRET_CLIENT_ID,
    "client_secret": SECRET_CLIENT_SECRET,
    "refresh_token": SECRET_REFRESH_TOKEN,
}
START = "/crm/v3/exports/export/async"
TOKEN = "/oauth/v1/token"


def _status_path(task_id):
    return f"{START}/tasks/{task_id}/status"


def run_sync(endpoint, **kwargs):
    return HubSpotHook().run(endpoint, **kwargs).json()


def run_async(endpoint, **kwargs):
    async def go():
        async with HubSpotAsyncHook() as hook:
            response = await hook.run(endpoint, **kwargs)
            return await response.json()

    return asyncio.run(go())


TRANSPORTS = {"sync": run_sync, "async": run_async}


def _started(sandbox, connect):
    connect()
    sandbox.plan_next(pending_polls=0, processing_polls=0)
    task_id = HubSpotHook().start_export(CONTACTS)
    sandbox.requests.clear()
    return task_id


# -- the auth scenarios, one table, both transports ----------------------------------------------
# (name, connection password, extras, fault on the path, expected request paths, expected error)
SCENARIOS = [
    ("401 then refresh then resend", "stale", OAUTH, None, ["status", TOKEN, "status"], None),
    ("no token yet: refresh first", None, OAUTH, None, [TOKEN, "status"], None),
    ("refresh refused", None, {**OAUTH, "client_secret": "wrong"}, None, [TOKEN], (400, "OAuth token refresh")),
    ("second 401 after refresh is final", "stale", OAUTH, {"status": 401, "times": 5},
     ["status", TOKEN, "status"], (401, "INVALID_AUTHENTICATION")),
    ("401 without OAuth is final", "wrong", {}, None, ["status"], (401, "INVALID_AUTHENTICATION")),
]  # fmt: skip


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_auth_scenarios_same_on_both_transports(sandbox, connect, transport, scenario):
    _, password, extra, fault, paths, error = scenario
    task_id = _started(sandbox, connect)
    connect(password=password, extra=extra)
    if fault:
        sandbox.inject("status", path="/status", **fault)
    call = lambda: TRANSPORTS[transport](_status_path(task_id))  # noqa: E731
    if error is None:
        assert call()["status"] == "COMPLETE"
    else:
        with pytest.raises(HubSpotExportError) as err:
            call()
        assert err.value.status_code == error[0] and error[1] in str(err.value)
        for secret in (SECRET_TOKEN, SECRET_CLIENT_SECRET, SECRET_REFRESH_TOKEN, "stale"):
            assert secret not in str(err.value) and secret not in repr(err.value)
    seen = [TOKEN if r.path == TOKEN else r.path.rsplit("/", 1)[-1] for r in sandbox.requests]
    assert seen == paths


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("fault", [{"kind": "status", "status": 500}, {"kind": "reset"}])
def test_post_failing_after_send_is_not_resent_on_both(sandbox, connect, transport, fault):
    connect()
    sandbox.inject(path="/async", **fault)
    with pytest.raises(HubSpotExportError, match="Not resent: HubSpot may have acted"):
        TRANSPORTS[transport](START, method="POST", json=CONTACTS)
    assert len(sandbox.api_requests("/async", method="POST")) == 1


def test_sync_refresh_is_single_flight_across_threads(sandbox, connect):
    """Threads that all see the stale token refused share one refresh (the async side: test_trigger)."""
    task_id = _started(sandbox, connect)
    connect(password="stale", extra=OAUTH)
    barrier, errors = threading.Barrier(8), []

    def poll():
        hook = HubSpotHook()
        hook.settings  # noqa: B018 (read the connection before the race)
        barrier.wait()
        try:
            hook.get_export_status(task_id)
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=poll) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(sandbox.api_requests(TOKEN)) == 1


# -- run(): any HubSpot endpoint --------------------------------------------------------------------
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_run_sends_the_bearer_token_and_retries_429_as_asked(sandbox, connect, transport):
    task_id = _started(sandbox, connect)
    sandbox.inject("status", status=429, retry_after=0.3, times=2, path="/status")
    assert TRANSPORTS[transport](_status_path(task_id))["status"] == "COMPLETE"
    calls = sandbox.api_requests("/status")
    assert min(arrival_gaps(calls)) >= 0.3  # waited as Retry-After said, before each resend
    assert len(calls) == 3 and all(r.headers["Authorization"] == f"Bearer {SECRET_TOKEN}" for r in calls)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_run_maps_hubspot_errors_on_any_endpoint(sandbox, connect, transport):
    connect()
    sandbox.inject("status", status=404, path="/crm/v3/objects/contacts")
    with pytest.raises(HubSpotExportError) as err:
        TRANSPORTS[transport]("/crm/v3/objects/contacts", data={"limit": 10})
    assert err.value.status_code == 404 and err.value.category == "OBJECT_NOT_FOUND"
    assert err.value.correlation_id and "503:Service Unavailable" not in str(err.value)
    (sent,) = sandbox.api_requests("/crm/v3/objects/contacts")
    assert sent.query == "limit=10" and sent.headers["Authorization"] == f"Bearer {SECRET_TOKEN}"
    # A path the sandbox does not serve (it has no owners API) is a plain 404, still mapped.
    with pytest.raises(HubSpotExportError) as err:
        TRANSPORTS[transport]("/crm/v3/owners")
    assert err.value.status_code == 404 and not err.value.retryable


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    "endpoint,kwargs,match",
    [
        ("https://evil.example/crm", {}, "not a URL"),
        ("//evil.example/crm", {}, "not a URL"),
        ("/crm/v3/objects/contacts", {"headers": {"authorization": "Bearer x"}}, "sets authorization itself"),
        ("/crm/v3/objects/contacts", {"extra_options": {"allow_redirects": True}}, "no extra_options"),
        ("/crm/v3/objects/contacts", {"method": "TRACE"}, "HTTP method"),
    ],
)
def test_run_refuses_what_would_leak_the_token(sandbox, connect, transport, endpoint, kwargs, match):
    connect()
    with pytest.raises(HubSpotExportRequestError, match=match):
        TRANSPORTS[transport](endpoint, **kwargs)
    assert sandbox.requests == []


def test_unsafe_inherited_methods_refuse_clearly(connect):
    connect()
    hook = HubSpotHook()
    with pytest.raises(NotImplementedError, match="use run"):
        hook.run_and_check(None, None, {})
    with pytest.raises(HubSpotExportRequestError, match="auth_type"):
        HubSpotHook(auth_type=object)
    assert hook.url_from_endpoint("crm/v3/objects") == hook.settings.base_url + "/crm/v3/objects"
    async_hook = HubSpotAsyncHook()
    with pytest.raises(NotImplementedError, match="hook.run"):
        async_hook.session()
    with pytest.raises(NotImplementedError, match="extras"):
        asyncio.run(async_hook.config())


def test_run_with_advanced_retry_goes_through_run(sandbox, connect):
    import tenacity

    task_id = _started(sandbox, connect)
    response = HubSpotHook().run_with_advanced_retry(
        {"stop": tenacity.stop_after_attempt(2)}, _status_path(task_id)
    )
    assert response.json()["status"] == "COMPLETE"
    assert sandbox.api_requests("/status")[0].headers["Authorization"] == f"Bearer {SECRET_TOKEN}"


def test_check_response_keeps_hubspot_detail(sandbox, connect):
    import requests

    connect(password="not-the-token")
    hook = HubSpotHook()
    raw = requests.get(
        f"{sandbox.api_url}{_status_path(1)}", headers={"Authorization": "Bearer x"}, timeout=10
    )
    with pytest.raises(HubSpotExportError) as err:
        hook.check_response(raw)
    assert err.value.status_code == 401 and err.value.category == "INVALID_AUTHENTICATION"


# -- downloads spend the connection's retry budget ---------------------------------------------------
@pytest.mark.parametrize("attempts", [2, 4])
def test_download_attempts_follow_the_connection(sandbox, connect, tmp_path, attempts):
    connect(extra={"retry_max_attempts": attempts, "retry_max_seconds": 30})
    hook = HubSpotHook()
    sandbox.plan_next(pending_polls=0, processing_polls=0, row_count=2000, cut_downloads=10)
    task_id = hook.start_export(CONTACTS)
    with pytest.raises(HubSpotExportError, match=f"cut short.*Gave up after {attempts} download attempt"):
        hook.download_export(task_id, tmp_path / "out")
    assert len(sandbox.file_requests) == attempts


# -- test_connection -----------------------------------------------------------------------------------
def test_test_connection_leaves_the_hook_as_it_was(sandbox, connect):
    connect(extra={"retry_max_attempts": 5, "retry_max_seconds": 40})
    hook = HubSpotHook()
    before = hook.settings
    assert hook.test_connection()[0]
    assert hook.settings is before and hook.settings.retry.max_attempts == 5
    # and the short budget applied to the probe only
    sandbox.inject("status", status=503, retry_after=0.01, times=100, path="/status")
    assert not hook.test_connection()[0]
    assert len(sandbox.api_requests("/status")) == 1 + 2
    assert hook.settings.retry.max_attempts == 5
