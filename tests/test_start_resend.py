"""Starting an export on a bad day: what is resent, what warns, what fails (issue 13, part 1).

A start that never reached HubSpot's application (Cloudflare's 502 page, a 503, a refused
connection) is resent like any transient error. One that may have reached it (a 500, a 504, a
timeout after sending) is resent too, with a warning that names the possible second export, unless
``resend_uncertain_start`` is False. A 2xx we could not read is never resent: HubSpot surely acted.
"""

from __future__ import annotations

import pytest
import requests
import urllib3
from conftest import CONTACTS
from dagrun import assert_failed_with, run_dag

from airflow_provider_hubexport.exceptions import HubSpotExportError

WARNING = "may start a second export"


def _posts(sandbox):
    return sandbox.api_requests("/async", method="POST")


@pytest.fixture
def caplog(capsys):
    """The hooks' log lines as the task log shows them (Airflow 3's structured logger writes them
    to the output; it does not go through pytest's caplog on every version)."""
    return capsys


def _warnings(capsys):
    captured = capsys.readouterr()
    return [line for line in (captured.out + captured.err).splitlines() if WARNING in line]


@pytest.mark.parametrize(
    "fault",
    [{"kind": "gateway_page", "status": 502}, {"kind": "status", "status": 503}],
    ids=["cloudflare-502-page", "503"],
)
def test_a_start_that_never_reached_hubspot_is_resent_quietly(sandbox, hook, caplog, fault):
    sandbox.inject(path="/async", times=1, **fault)
    task_id = hook.start_export(CONTACTS)
    assert len(_posts(sandbox)) == 2 and list(sandbox.exports) == [task_id]
    assert _warnings(caplog) == []


def test_a_refused_connection_is_resent(sandbox, hook, monkeypatch, caplog):
    # A refused connection cannot be staged by a live server: the first send fails as requests
    # reports a connection that never opened, the second goes through.
    real_send, calls = requests.Session.send, []

    def send(session, request, **kwargs):
        calls.append(request.url)
        if len(calls) == 1:
            reason = urllib3.exceptions.NewConnectionError(None, "Connection refused")
            raise requests.ConnectionError(urllib3.exceptions.MaxRetryError(None, request.url, reason))
        return real_send(session, request, **kwargs)

    monkeypatch.setattr(requests.Session, "send", send)
    task_id = hook.start_export(CONTACTS)
    assert len(calls) == 2 and len(_posts(sandbox)) == 1 and list(sandbox.exports) == [task_id]
    assert _warnings(caplog) == []


@pytest.mark.parametrize("status", [500, 504])
def test_an_uncertain_start_is_resent_with_a_warning(sandbox, hook, caplog, status):
    sandbox.inject("status", status=status, path="/async", times=1)
    task_id = hook.start_export(CONTACTS)
    assert len(_posts(sandbox)) == 2 and task_id in sandbox.exports
    (warning,) = _warnings(caplog)
    assert f"HTTP {status}" in warning and "30 a day" in warning and "resend_uncertain_start=False" in warning


def test_a_timeout_after_sending_is_resent_and_may_start_two(sandbox, connect, caplog):
    from airflow_provider_hubexport.hooks.hubspot import HubSpotHook

    connect(extra={"read_timeout": 0.5})
    sandbox.inject("delay", delay=1.5, path="/async", times=1)  # HubSpot acts, the answer comes late
    task_id = HubSpotHook().start_export(CONTACTS)
    assert len(_posts(sandbox)) == 2 and task_id in sandbox.exports
    assert len(_warnings(caplog)) == 1  # the second export is the one the warning told of


@pytest.mark.parametrize("fault", [{"kind": "status", "status": 500}, {"kind": "delay", "delay": 1.5}])
@pytest.mark.parametrize("where", ["connection", "call"])
def test_resend_uncertain_start_false_fails_instead(sandbox, connect, fault, where):
    from airflow_provider_hubexport.hooks.hubspot import HubSpotHook

    extra = {"read_timeout": 0.5, **({"resend_uncertain_start": "false"} if where == "connection" else {})}
    connect(extra=extra)
    sandbox.inject(path="/async", times=1, **fault)
    kwargs = {"resend_uncertain_start": False} if where == "call" else {}
    with pytest.raises(HubSpotExportError, match="Not resent: HubSpot may have acted"):
        HubSpotHook().start_export(CONTACTS, **kwargs)
    assert len(_posts(sandbox)) == 1


def test_a_gateway_error_is_resent_even_when_uncertain_starts_are_not(sandbox, connect):
    from airflow_provider_hubexport.hooks.hubspot import HubSpotHook

    connect(extra={"resend_uncertain_start": False})
    sandbox.inject("gateway_page", status=502, path="/async", times=1)
    assert HubSpotHook().start_export(CONTACTS) in sandbox.exports


def test_a_bad_flag_names_the_extra(sandbox, connect):
    from airflow_provider_hubexport.exceptions import HubSpotExportRequestError
    from airflow_provider_hubexport.hooks.hubspot import HubSpotHook

    connect(extra={"resend_uncertain_start": "sometimes"})
    with pytest.raises(HubSpotExportRequestError, match="resend_uncertain_start.*true or false"):
        HubSpotHook().start_export(CONTACTS)
    assert sandbox.requests == []


START_DAG = """
import pendulum
from airflow.sdk import DAG
from airflow_provider_hubexport.operators.export import HubSpotStartExportOperator

with DAG({dag_id}, schedule=None, start_date=pendulum.datetime(2026, 1, 1)) as dag:
    HubSpotStartExportOperator(task_id="start", object_type="CONTACT", object_properties=["email"],
                               retries=0, **{kwargs})
"""


@pytest.fixture
def dag_env(sandbox, connect, airflow_db):
    connect()
    return sandbox


def test_a_cloudflare_502_on_the_start_does_not_fail_the_run(dag_env):
    dag_env.inject("gateway_page", status=502, path="/async", times=1)
    result = run_dag("start_through_502", START_DAG, kwargs={})
    assert result.tasks == {"start": "success"}
    (export_id,) = dag_env.exports
    assert result.xcom["start"] == export_id
    # The export's name says which Airflow attempt started it, for HubSpot's export history.
    name = dag_env.exports[export_id].request["exportName"]
    assert name.startswith("start_through_502.start manual__") and name.endswith(" try 1")


def test_the_operator_can_refuse_uncertain_resends(dag_env):
    dag_env.inject("status", status=504, path="/async", times=1)
    result = run_dag("start_no_resend", START_DAG, kwargs={"resend_uncertain_start": False})
    assert_failed_with(result, "start", HubSpotExportError, r"Not resent: HubSpot may have acted.*HTTP 504")
    assert len(_posts(dag_env)) == 1
