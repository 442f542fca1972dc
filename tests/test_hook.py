"""The hook against the sandbox over real HTTP: auth, both API versions, retries, errors, secrets."""

from __future__ import annotations

import logging
import threading
import time

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


def test_hook_identity():
    assert HubSpotHook.conn_type == "hubspot"
    assert HubSpotHook.conn_name_attr == "hubspot_conn_id"
    assert HubSpotHook.default_conn_name == "hubspot_default"
    assert HubSpotHook.hook_name == "HubSpot"
    from airflow.providers.http.hooks.http import HttpHook

    assert issubclass(HubSpotHook, HttpHook)


@pytest.mark.parametrize(
    "api_version,prefix", [("v3", "/crm/v3/exports/export"), ("2026-03", "/crm/exports/2026-03/export")]
)
def test_start_and_status_on_both_api_versions(sandbox, connect, api_version, prefix):
    connect(extra={"api_version": api_version})
    hook = HubSpotHook()
    sandbox.plan_next(pending_polls=1, processing_polls=1)
    task_id = hook.start_export(CONTACTS)
    seen = [hook.get_export_status(task_id).status for _ in range(3)]
    assert seen == ["PENDING", "PROCESSING", "COMPLETE"]
    final = hook.get_export_status(int(task_id))
    assert final.result_url and final.result_url.startswith(sandbox.files_url)
    assert final.completed_at is not None and final.requested_at <= final.completed_at
    assert hook.get_export(task_id)["exportState"] == "DONE"
    paths = {r.path for r in sandbox.api_requests()}
    assert f"{prefix}/async" in paths
    assert f"{prefix}/async/tasks/{task_id}/status" in paths
    assert f"{prefix}/{task_id}" in paths
    start = sandbox.api_requests("/async", method="POST")[0]
    assert start.headers["Authorization"] == f"Bearer {SECRET_TOKEN}"


def test_status_hides_signed_url_from_repr_and_dict(sandbox, hook):
    sandbox.plan_next(pending_polls=0, processing_polls=0)
    status = hook.get_export_status(hook.start_export(CONTACTS))
    assert status.status == "COMPLETE" and status.result_url
    assert status.result_url not in repr(status)
    assert status.result_url not in str(status.to_dict())
    assert "Signature" not in str(status.to_dict())


def test_oauth_refresh_after_expired_token_then_cached(sandbox, connect):
    connect(
        password="expired-oauth-access-token",
        extra={
            "client_id": SECRET_CLIENT_ID,
            "client_secret": SECRET_CLIENT_SECRET,
            "refresh_token": SECRET_REFRESH_TOKEN,
        },
    )
    hook = HubSpotHook()
    task_id = hook.start_export(CONTACTS)
    # 401 with the stale token, one refresh, then the start again.
    assert [r.path for r in sandbox.requests] == [
        "/crm/v3/exports/export/async",
        "/oauth/v1/token",
        "/crm/v3/exports/export/async",
    ]
    hook.get_export_status(task_id)
    HubSpotHook().get_export_status(task_id)  # a new hook in the same process reuses the token
    assert len(sandbox.api_requests("/oauth/v1/token")) == 1
    refresh = sandbox.api_requests("/oauth/v1/token")[0]
    assert b"grant_type=refresh_token" in refresh.body
    assert "Authorization" not in refresh.headers
    fresh_token = sandbox.api_requests("/status")[-1].headers["Authorization"]
    assert fresh_token.startswith("Bearer sandbox-oauth-")
    # When the cached token expires, the next call refreshes once more and succeeds.
    sandbox.expire_access_tokens()
    assert HubSpotHook().get_export_status(task_id).export_task_id == task_id
    assert len(sandbox.api_requests("/oauth/v1/token")) == 2


def test_oauth_without_access_token_refreshes_first(sandbox, connect):
    connect(
        password=None,
        extra={
            "client_id": SECRET_CLIENT_ID,
            "client_secret": SECRET_CLIENT_SECRET,
            "refresh_token": SECRET_REFRESH_TOKEN,
        },
    )
    HubSpotHook().start_export(CONTACTS)
    assert [r.path for r in sandbox.requests] == ["/oauth/v1/token", "/crm/v3/exports/export/async"]


def test_oauth_bad_refresh_token_fails_clearly(sandbox, connect):
    connect(
        password=None,
        extra={
            "client_id": SECRET_CLIENT_ID,
            "client_secret": "wrong",
            "refresh_token": SECRET_REFRESH_TOKEN,
        },
    )
    with pytest.raises(HubSpotExportError) as err:
        HubSpotHook().start_export(CONTACTS)
    assert err.value.status_code == 400
    assert "OAuth token refresh failed" in str(err.value)
    assert "missing or unknown refresh token" in str(err.value)
    assert not sandbox.api_requests("/exports/")


def test_extras_never_sent_as_headers(sandbox, connect):
    connect(
        password="expired",
        extra={
            "client_id": SECRET_CLIENT_ID,
            "client_secret": SECRET_CLIENT_SECRET,
            "refresh_token": SECRET_REFRESH_TOKEN,
            "api_version": "v3",
            "read_timeout": 30,
        },
    )
    hook = HubSpotHook()
    hook.get_export_status(hook.start_export(CONTACTS))
    assert len(sandbox.requests) >= 4
    for request in sandbox.requests:
        header_text = repr(request.headers)
        for secret in (SECRET_CLIENT_SECRET, SECRET_REFRESH_TOKEN):
            assert secret not in header_text
        for name in ("client_secret", "refresh_token", "client_id", "api_version", "read_timeout"):
            assert name not in {k.lower() for k in request.headers}


def test_429_with_retry_after_is_retried_then_succeeds(sandbox, hook):
    sandbox.inject("status", status=429, retry_after=0.2, times=2, path="/async")
    assert hook.start_export(CONTACTS)
    posts = sandbox.api_requests("/async", method="POST")
    assert len(posts) == 3
    assert min(arrival_gaps(posts)) >= 0.2  # waited as HubSpot asked, before each resend


def test_rate_limit_budget_from_hubspot_headers(sandbox, hook, monkeypatch):
    # HubSpot's per-second 429 without Retry-After, for the third status call (whenever it comes,
    # not only if the calls crowd into one second): the hook waits the window HubSpot names in
    # X-HubSpot-RateLimit-Interval-Milliseconds (1000), then resends, once.
    task_id = hook.start_export(CONTACTS)
    limited = sandbox.inject("status", status=429, path="/status", after=2, times=1)
    asked = _record_sleeps(monkeypatch)
    for _ in range(5):
        assert hook.get_export_status(task_id).export_task_id == task_id
    assert limited.times == 0  # the 429 was served
    calls = sandbox.api_requests("/status")
    assert len(calls) == 6 and asked == [1.0]
    assert arrival_gaps(calls)[2] >= 1.0  # the resend came a window after the refused call


def test_run_of_5xx_is_retried(sandbox, hook):
    for code in (500, 502, 503):
        sandbox.inject("status", status=code, times=1, path="/status")
    task_id = hook.start_export(CONTACTS)
    assert hook.get_export_status(task_id).export_task_id == task_id
    assert len(sandbox.api_requests("/status")) == 4


def test_5xx_backoff_follows_the_connection(sandbox, connect, monkeypatch):
    connect(extra={"retry_backoff_seconds": 0.3})
    hook = HubSpotHook()
    task_id = hook.start_export(CONTACTS)
    sandbox.inject("status", status=502, times=2, path="/status")  # no Retry-After: our backoff
    asked = _record_sleeps(monkeypatch)
    assert hook.get_export_status(task_id).export_task_id == task_id
    # The extra's wait, then double, each plus a jitter of up to the extra.
    assert len(asked) == 2 and 0.3 <= asked[0] <= 0.6 and 0.6 <= asked[1] <= 0.9, asked
    first, second = arrival_gaps(sandbox.api_requests("/status"))
    assert first >= asked[0] and second >= asked[1]


def test_connection_reset_and_read_timeout_are_retried(sandbox, connect):
    # The read timeout bounds the good calls too: far above a loopback answer on a loaded machine.
    # The one slow answer comes after twice that, so it times out however late the client looks.
    connect(extra={"read_timeout": 2.0})
    hook = HubSpotHook()
    task_id = hook.start_export(CONTACTS)
    sandbox.inject("reset", path="/status")
    sandbox.inject("delay", delay=4.0, path="/status")
    assert hook.get_export_status(task_id).export_task_id == task_id
    assert len(sandbox.api_requests("/status")) == 3


def test_retry_storm_gives_up_with_a_sentence(sandbox, connect, caplog):
    connect(extra={"retry_max_attempts": 3, "retry_max_seconds": 5})
    hook = HubSpotHook()
    sandbox.inject("status", status=429, retry_after=0.1, times=100, path="/async")
    with pytest.raises(HubSpotExportError) as err:
        hook.start_export(CONTACTS)
    message = str(err.value)
    assert "rate limit" in message.lower()
    assert "Gave up after 3 attempt(s)" in message
    assert "retry_max_attempts" in message
    assert err.value.status_code == 429
    assert len(sandbox.api_requests("/async")) == 3


def _record_sleeps(monkeypatch) -> list[float]:
    """The waits asked of ``time.sleep`` (tenacity's sleep) by this thread, still waited for real."""
    real_sleep, me, asked = time.sleep, threading.get_ident(), []

    def sleep(seconds: float) -> None:
        if threading.get_ident() == me:
            asked.append(seconds)
        real_sleep(seconds)

    monkeypatch.setattr(time, "sleep", sleep)
    return asked


def test_retry_budget_in_seconds_is_honoured(sandbox, connect, monkeypatch):
    connect(extra={"retry_max_attempts": 50, "retry_max_seconds": 1})
    sandbox.inject("status", status=503, retry_after=0.4, times=100, path="/async")
    asked = _record_sleeps(monkeypatch)
    with pytest.raises(HubSpotExportError, match="Gave up"):
        HubSpotHook().start_export(CONTACTS)
    # The waits the hook asked for stay within the 1 s budget (not a stopwatch: load only adds to it).
    assert asked and all(w == 0.4 for w in asked) and sum(asked) <= 1
    assert len(sandbox.api_requests("/async")) == len(asked) + 1


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_permanent_errors_are_not_retried(sandbox, hook, status):
    sandbox.inject("status", status=status, times=5, path="/async")
    with pytest.raises(HubSpotExportError) as err:
        hook.start_export(CONTACTS)
    assert err.value.status_code == status
    assert err.value.correlation_id
    assert len(sandbox.api_requests("/async")) == 1


def test_401_names_the_problem(sandbox, connect):
    connect(password="not-the-token")
    with pytest.raises(HubSpotExportError) as err:
        HubSpotHook().start_export(CONTACTS)
    text = str(err.value)
    assert "category=INVALID_AUTHENTICATION" in text and "HTTP 401" in text
    assert "access token" in text and "correlationId=" in text
    assert "not-the-token" not in text
    assert len(sandbox.requests) == 1


def test_403_names_the_missing_scope(sandbox, connect):
    sandbox.add_token("token-without-export-scope", scopes=("crm.objects.contacts.read",))
    connect(password="token-without-export-scope")
    with pytest.raises(HubSpotExportError) as err:
        HubSpotHook().get_export_status(123)
    assert err.value.missing_scopes == ["crm.export"]
    assert "missing scopes=crm.export" in str(err.value)
    assert "category=MISSING_SCOPES" in str(err.value)
    assert len(sandbox.requests) == 1


def test_404_names_the_id(sandbox, hook):
    with pytest.raises(HubSpotExportError) as err:
        hook.get_export_status("123456")
    assert err.value.status_code == 404
    assert "123456" in str(err.value) and "category=OBJECT_NOT_FOUND" in str(err.value)


BAD_IDS = ["../1", "", "abc", None, -3, 0, "1/../../x", "1%2F2", "12 34", 1.5, True, "9" * 40, "١٢"]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_bad_ids_refused_before_any_request(sandbox, hook, bad):
    for call in (hook.get_export_status, hook.get_export):
        with pytest.raises(HubSpotExportRequestError) as err:
            call(bad)
        assert "must be a positive integer" in str(err.value)
    assert sandbox.requests == []


BAD_REQUESTS = [
    ({**CONTACTS, "exportType": "ALL"}, "exportType"),
    ({**CONTACTS, "format": "PDF"}, "format"),
    ({**CONTACTS, "language": "KLINGON"}, "language"),
    ({k: v for k, v in CONTACTS.items() if k != "objectType"}, "objectType"),
    ({**CONTACTS, "objectProperties": []}, "objectProperties"),
    ({**CONTACTS, "objectProperties": ["email", 3]}, "objectProperties"),
    ({**CONTACTS, "objectProperties": "email"}, "objectProperties"),
    ({**CONTACTS, "exportType": "LIST"}, "listId"),
    ({**CONTACTS, "exportType": "LIST", "listId": "../7"}, "listId"),
    ({**CONTACTS, "publicCrmSearchRequest": {"filterGroups": [{"filters": []}] * 6}}, "filterGroups"),
    (
        {**CONTACTS, "publicCrmSearchRequest": {"filters": [{"propertyName": "x", "operator": "LIKE"}]}},
        "operator",
    ),
    ("not a dict", "dict"),
]


@pytest.mark.parametrize("request_body,field", BAD_REQUESTS)
def test_bad_export_requests_refused_before_any_request(sandbox, hook, request_body, field):
    with pytest.raises(HubSpotExportRequestError) as err:
        hook.start_export(request_body)
    assert field in str(err.value)
    assert sandbox.requests == []


def test_unknown_request_keys_pass_through(sandbox, hook):
    hook.start_export({**CONTACTS, "someNewHubSpotField": {"a": 1}, "listId": None})
    body = sandbox.api_requests("/async", method="POST")[0].body
    assert b'"someNewHubSpotField": {"a": 1}' in body


def test_plain_http_refused_off_loopback(sandbox, connect):
    connect(host="http://api.example.com")
    with pytest.raises(HubSpotExportRequestError, match="plain http"):
        HubSpotHook().get_export_status(1)
    connect(host="api.hubapi.com")  # bare host means https
    assert HubSpotHook().settings.base_url == "https://api.hubapi.com"
    connect(host="http://localhost:1")
    assert HubSpotHook().settings.base_url == "http://localhost:1"
    assert sandbox.requests == []


def test_default_host_is_hubspot(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_HUBSPOT_DEFAULT", '{"conn_type": "hubspot", "password": "x"}')
    assert HubSpotHook().settings.base_url == "https://api.hubapi.com"


def test_half_configured_oauth_is_refused(connect):
    connect(extra={"client_id": "a", "refresh_token": "b"})
    with pytest.raises(HubSpotExportRequestError, match="client_secret missing"):
        HubSpotHook().settings  # noqa: B018


def test_no_credentials_is_refused(connect):
    connect(password=None)
    with pytest.raises(HubSpotExportRequestError, match="no credentials"):
        HubSpotHook().settings  # noqa: B018


def test_a_connection_form_saved_unchanged_reads_as_its_defaults(sandbox, connect):
    # What the UI's form writes for a form saved as it was: every field, the empty ones null or
    # "", the numbers with their defaults: null and empty count as absent.
    from airflow_provider_hubexport import get_provider_info

    (conn_type,) = get_provider_info()["connection-types"]
    form = {name: field["schema"].get("default") for name, field in conn_type["conn-fields"].items()}
    assert {"client_id", "client_secret", "refresh_token", "api_version", "portal_id"} <= {
        k for k, v in form.items() if v is None
    }
    connect(extra={**form, "client_secret": "", "verify": None, "proxies": None})
    settings = HubSpotHook().settings
    assert not settings.oauth and settings.secrets == [SECRET_TOKEN] and settings.verify is True
    assert settings.api_version == "v3" and settings.portal_id is None and settings.proxies is None
    # No short string among the form's defaults: Airflow hands a connection's extras to its secrets
    # masker, which warns about any string under 5 characters ("Skipping masking ... too short").
    assert not [v for v in form.values() if isinstance(v, str) and len(v) < 5]
    assert HubSpotHook().test_connection()[0]


def test_test_connection_names_no_connection_id(connect):
    # The API server tests a form under a random connection id of its own: naming it would confuse.
    connect(conn_id="xq3kz9aa", password=None)
    ok, message = HubSpotHook(hubspot_conn_id="xq3kz9aa").test_connection()
    assert not ok and message.startswith("This connection has no credentials") and "xq3kz9aa" not in message
    with pytest.raises(HubSpotExportRequestError, match="Connection 'xq3kz9aa' has no credentials"):
        HubSpotHook(hubspot_conn_id="xq3kz9aa").settings  # noqa: B018 (a task's error names it)


def test_test_connection_success_and_failures(sandbox, connect):
    connect()
    assert HubSpotHook().test_connection() == (
        True,
        "Connection successfully tested: the token is valid and has the crm.export scope.",
    )
    probe = sandbox.requests[-1]
    assert probe.path.endswith("/status") and SECRET_TOKEN not in probe.path + probe.query
    connect(password="wrong-token")
    ok, message = HubSpotHook().test_connection()
    assert not ok and "INVALID_AUTHENTICATION" in message and "wrong-token" not in message
    sandbox.add_token("no-scope", scopes=())
    connect(password="no-scope")
    ok, message = HubSpotHook().test_connection()
    assert not ok and "crm.export" in message


def test_token_never_logged(sandbox, connect, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    connect(
        password="stale",
        extra={
            "client_id": SECRET_CLIENT_ID,
            "client_secret": SECRET_CLIENT_SECRET,
            "refresh_token": SECRET_REFRESH_TOKEN,
        },
    )
    hook = HubSpotHook()
    sandbox.inject("status", status=503, path="/status")
    sandbox.plan_next(pending_polls=0, processing_polls=0)
    task_id = hook.start_export(CONTACTS)
    status = hook.get_export_status(task_id)
    with pytest.raises(HubSpotExportError):
        hook.get_export_status(999)
    captured = capsys.readouterr()
    output = captured.out + captured.err + caplog.text
    assert "Started HubSpot export" in output  # the capture works: the hook did log
    assert "attempt 1 failed" in output
    issued = sandbox.api_requests("/status")[-1].headers["Authorization"].split()[-1]
    for secret in (SECRET_TOKEN, SECRET_CLIENT_SECRET, SECRET_REFRESH_TOKEN, issued, status.result_url):
        assert secret not in output


def test_error_survives_pickling():
    import pickle

    err = HubSpotExportError(
        "boom", status_code=403, category="MISSING_SCOPES", missing_scopes=["crm.export"]
    )
    copy = pickle.loads(pickle.dumps(err))
    assert (
        type(copy) is HubSpotExportError and str(copy) == str(err) and copy.missing_scopes == ["crm.export"]
    )


@pytest.mark.parametrize(
    "fault", [{"kind": "status", "status": 500}, {"kind": "status", "status": 504}, {"kind": "reset"}]
)
def test_start_not_resent_when_hubspot_may_have_acted_and_the_connection_says_so(sandbox, connect, fault):
    # A resend could start a second export and spend the daily quota of 30: teams that would rather
    # fail say so (the default resends with a warning: tests/test_start_resend.py).
    connect(extra={"resend_uncertain_start": False})
    sandbox.inject(path="/async", **fault)
    with pytest.raises(HubSpotExportError) as err:
        HubSpotHook().start_export(CONTACTS)
    assert "Not resent" in str(err.value) and "daily limit" in str(err.value)
    assert len(sandbox.api_requests("/async", method="POST")) == 1


@pytest.mark.parametrize("status", [429, 503])
def test_start_resent_when_hubspot_turned_it_away(sandbox, hook, status):
    sandbox.inject("status", status=status, retry_after=0.05, path="/async", times=2)
    assert hook.start_export(CONTACTS)
    assert len(sandbox.api_requests("/async", method="POST")) == 3


def test_status_calls_are_resent_after_500(sandbox, hook):
    sandbox.inject("status", status=500, retry_after=0.05, path="/status", times=2)
    assert hook.get_export_status(hook.start_export(CONTACTS)).status
    assert len(sandbox.api_requests("/status")) == 3
