"""HubSpot's daily limit (30 exports per rolling 24 hours) does not end a run: the start waits.

A start refused for the limit is tried again every ``quota_retry_interval`` seconds until HubSpot
accepts it or ``quota_wait_timeout`` has passed: deferred on the triggerer (the task leaves its
worker between tries) or asleep in the task (``deferrable=False``). The hook itself fails fast with
its own error type. Intervals are read from the sandbox's record of when each start arrived.
"""

from __future__ import annotations

import re

import pytest
from conftest import CONTACTS, arrival_gaps
from dagrun import assert_failed_with, run_dag

from airflow_provider_hubexport.exceptions import HubSpotExportError, HubSpotExportLimitError
from airflow_provider_hubexport.quota import QuotaWait

REFUSED = "refused the start"
START_DAG = """
import pendulum
from airflow.sdk import DAG
from airflow_provider_hubexport.operators.export import HubSpotStartExportOperator

with DAG({dag_id}, schedule=None, start_date=pendulum.datetime(2026, 1, 1), catchup=False) as dag:
    HubSpotStartExportOperator(task_id="start", export_request={request}, **{kwargs})
"""
ALL_IN_ONE_DAG = """
import pendulum
from airflow.sdk import DAG
from airflow_provider_hubexport.operators.export import HubSpotExportOperator

with DAG({dag_id}, schedule=None, start_date=pendulum.datetime(2026, 1, 1), catchup=False) as dag:
    HubSpotExportOperator(task_id="export", export_request={request}, destination={destination},
                          poke_interval=0.2, **{kwargs})
"""


def _posts(sandbox):
    return sandbox.api_requests("/async", method="POST")


def _refuse(sandbox, times):
    """The next ``times`` starts get HubSpot's daily-limit 429."""
    return sandbox.inject("export_limit", path="/async", method="POST", times=times)


def _refusal_lines(capsys):
    captured = capsys.readouterr()
    return [line for line in (captured.out + captured.err).splitlines() if REFUSED in line]


def test_the_hook_fails_fast_with_its_own_error_type(sandbox, hook):
    _refuse(sandbox, 1)
    with pytest.raises(HubSpotExportLimitError) as err:
        hook.start_export(CONTACTS)
    assert "daily export limit" in str(err.value) and err.value.status_code == 429
    assert len(_posts(sandbox)) == 1  # seconds of backoff cannot help with a 24-hour window


def test_a_burst_429_is_not_the_daily_limit(sandbox, hook):
    sandbox.inject("status", status=429, retry_after=0.05, path="/async", method="POST", times=1)
    hook.start_export(CONTACTS)  # waited out by the hook's own retries
    assert len(_posts(sandbox)) == 2


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferrable", "in-task"])
def test_a_refused_start_waits_for_the_window_and_starts_once(
    sandbox, connect, airflow_db, capsys, deferrable
):
    connect()
    _refuse(sandbox, 2)
    kwargs = {"deferrable": deferrable, "quota_retry_interval": 1.0}
    result = run_dag(f"quota_wait_{deferrable}", START_DAG, request=CONTACTS, kwargs=kwargs)
    assert result.tasks == {"start": "success"}, result.errors
    posts = _posts(sandbox)
    assert len(posts) == 3 and list(sandbox.exports) == [result.xcom["start"]]  # one export
    assert all(gap >= 1.0 for gap in arrival_gaps(posts)), arrival_gaps(posts)
    assert result.tries["start"] == 1  # waiting is not a failed try
    # Deferred: the task left its worker after each refusal and came back for the next try; in
    # the task: one run that slept.
    assert result.runs["start"] == (3 if deferrable else 1)
    # Each refused try logged, once by the operator (Airflow 3.0 prints a record through two
    # handlers), and the
    # wait's deadline carried from try to try, through the deferrals too.
    lines = _refusal_lines(capsys)
    assert sorted({int(n) for line in lines for n in re.findall(r"refused (\d+) time", line)}) == [1, 2], (
        lines
    )
    assert (
        len({until for line in lines for until in re.findall(r"until (\d\S+) \(quota_wait_timeout\)", line)})
        == 1
    )


@pytest.mark.repetition
def test_the_all_in_one_operator_waits_too_with_the_connections_interval(
    sandbox, connect, airflow_db, tmp_path
):
    connect(extra={"quota_retry_interval": 1})
    _refuse(sandbox, 2)
    result = run_dag(
        "quota_wait_all_in_one",
        ALL_IN_ONE_DAG,
        request=CONTACTS,
        destination=str(tmp_path),
        kwargs={"deferrable": True},
    )
    assert result.tasks == {"export": "success"}, result.errors
    posts = _posts(sandbox)
    assert len(posts) == 3 and len(sandbox.exports) == 1
    assert all(gap >= 1.0 for gap in arrival_gaps(posts)), arrival_gaps(posts)
    (landed,) = result.xcom["export"]
    assert (tmp_path / landed["path"].rsplit("/", 1)[-1]).exists()


@pytest.mark.repetition
def test_wait_for_quota_false_fails_at_once(sandbox, connect, airflow_db):
    connect()
    _refuse(sandbox, 1)
    result = run_dag("quota_no_wait", START_DAG, request=CONTACTS, kwargs={"wait_for_quota": False})
    assert_failed_with(result, "start", HubSpotExportLimitError, r"daily export limit")
    assert len(_posts(sandbox)) == 1


@pytest.mark.repetition
@pytest.mark.parametrize("deferrable", [True, False], ids=["deferrable", "in-task"])
def test_the_wait_ends_at_quota_wait_timeout(sandbox, connect, airflow_db, deferrable):
    connect()
    _refuse(sandbox, 10**6)
    kwargs = {"deferrable": deferrable, "quota_retry_interval": 0.5, "quota_wait_timeout": 1.2}
    result = run_dag(f"quota_timeout_{deferrable}", START_DAG, request=CONTACTS, kwargs=kwargs)
    assert_failed_with(
        result, "start", HubSpotExportLimitError, r"daily export limit.*Still refused after waiting 1.2 s"
    )
    # Tries at 0, 0.5 and 1.0 s, and a last one at the deadline; fewer when the machine is slow.
    assert 2 <= len(_posts(sandbox)) <= 4
    assert not sandbox.exports


@pytest.mark.repetition
def test_other_errors_are_not_waited_out(sandbox, connect, airflow_db):
    connect()
    sandbox.inject("status", status=403, path="/async", method="POST", times=1)
    result = run_dag("quota_not_403", START_DAG, request=CONTACTS, kwargs={"quota_retry_interval": 0.5})
    assert_failed_with(result, "start", HubSpotExportError, r"HTTP 403")
    assert not isinstance(result.errors["start"], HubSpotExportLimitError)
    assert len(_posts(sandbox)) == 1


@pytest.mark.no_airflow
def test_quota_wait_schedule():
    wait = QuotaWait.begin(now=1000.0, interval=900, timeout=2000)
    wait, seconds = wait.after_refusal(1000.0)
    assert (wait.refused, seconds) == (1, 900)
    wait, seconds = wait.after_refusal(2500.0)  # 500 s before the deadline: one last try there
    assert (wait.refused, seconds) == (2, 500)
    wait, seconds = wait.after_refusal(3000.0)
    assert (wait.refused, seconds) == (3, None)
    assert QuotaWait.from_kwargs(wait.to_kwargs()) == wait
    assert QuotaWait.from_kwargs(None) is None and QuotaWait.from_kwargs({"interval": "x"}) is None
