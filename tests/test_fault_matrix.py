"""Every step through every fault, with the outcome asserted.

Steps: start (the hook's start), status (the hook's status call), poll (the sensor in poke,
reschedule and deferrable modes, in real Airflow) and download. An outcome is either success with
the exact bytes HubSpot served, or a failure whose message names the cause (a regex below); a
download never leaves a partial file, and nothing waits past its configured bounds.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from typing import Any

import pytest
from conftest import CONTACTS, FAST_RETRY
from dagrun import assert_failed_with, run_dag

from airflow_provider_hubexport.compat import AirflowSensorTimeout
from airflow_provider_hubexport.exceptions import HubSpotExportCanceledError, HubSpotExportError
from airflow_provider_hubexport.sandbox import Packaging

OK = "ok"


@dataclass
class Fault:
    name: str
    inject: dict[str, Any] | None = None  # a sandbox fault on the step's API path
    plan: dict[str, Any] = field(default_factory=dict)  # the export's plan
    start: str | None = None  # OK, a regex the failure must match, or None: not applicable
    status: str | None = None
    poll: str | None = None  # OK, or a regex the failed task's exception must match
    poll_error: type[BaseException] = HubSpotExportError  # the type of that exception
    download: str | None = None
    download_kwargs: dict[str, Any] = field(default_factory=dict)


NOT_RESENT = r"Not resent: HubSpot may have acted"
# Bounds every call of the matrix, the good ones too: far above a loopback answer on a loaded
# machine. The read-timeout fault answers one request after twice this, so that request times out
# however late the client gets to look (the sandbox's delay is a floor, load only lengthens it).
READ_TIMEOUT = 2.0
FAULTS = [
    Fault("429 with Retry-After", {"kind": "status", "status": 429, "retry_after": 0.05, "times": 2},
          start=OK, status=OK, poll=OK, download=OK),
    Fault("429 without Retry-After", {"kind": "status", "status": 429, "times": 2},
          start=OK, status=OK, poll=OK, download=OK),
    Fault("429 storm past the retry budget", {"kind": "status", "status": 429, "retry_after": 0.02, "times": 10**6},
          start=r"rate limit.*Gave up after 4 attempt", status=r"rate limit.*Gave up after 4 attempt",
          poll=r"rate limit.*Gave up after 4 attempt", download=r"rate limit.*Gave up"),
    Fault("500", {"kind": "status", "status": 500, "retry_after": 0.05, "times": 2},
          start=OK, status=OK, poll=OK, download=OK),
    Fault("502", {"kind": "status", "status": 502, "retry_after": 0.05, "times": 2},
          start=OK, status=OK, poll=OK, download=OK),
    Fault("Cloudflare 502 page", {"kind": "gateway_page", "status": 502, "times": 2},
          start=OK, status=OK, poll=OK, download=OK),
    Fault("503", {"kind": "status", "status": 503, "retry_after": 0.05, "times": 2},
          start=OK, status=OK, poll=OK, download=OK),
    Fault("504", {"kind": "status", "status": 504, "retry_after": 0.05, "times": 2},
          start=OK, status=OK, poll=OK, download=OK),
    Fault("connection reset", {"kind": "reset", "times": 1},
          start=OK, status=OK, poll=OK, download=OK),
    Fault("read timeout", {"kind": "delay", "delay": 2 * READ_TIMEOUT, "times": 1},
          start=OK, status=OK, poll=OK, download=OK),
    Fault("non-JSON 200", {"kind": "non_json", "times": 1},
          start=r"malformed.*not JSON.*" + NOT_RESENT, status=OK, poll=OK, download=OK),
    Fault("JSON 200 missing fields", {"kind": "missing_fields", "times": 1},
          start=r"malformed.*no 'id'.*" + NOT_RESENT, status=OK, poll=OK, download=OK),
    Fault("unknown status value", {"kind": "unknown_status", "times": 10**6},
          status=r"unknown status 'EXPLODED'.*Upgrade", poll=r"unknown status 'EXPLODED'", download=r"unknown status"),
    Fault("CANCELED with errors",
          plan={"cancel": True, "errors": [{"message": "Property 'x' does not exist"}]},
          status=OK, poll=r"canceled.*Property 'x' does not exist", poll_error=HubSpotExportCanceledError,
          download=r"canceled.*Property 'x' does not exist"),
    Fault("COMPLETE with numErrors > 0", plan={"errors": [{"message": "12 rows skipped"}]},
          status=OK, poll=r"12 rows skipped.*accept_errors", download=OK),
    Fault("expired signed URL", plan={"expired_urls": 2}, status=OK, poll=OK, download=OK),
    Fault("download cut short", plan={"cut_downloads": 2, "row_count": 5000}, status=OK, poll=OK, download=OK),
    Fault("ZIP with a damaged directory", plan={"corrupt": "directory", "row_count": 3000}, status=OK, poll=OK,
          download=r"corrupt.*Gave up after 4 download attempt"),
    Fault("ZIP with damaged data (CRC)", plan={"corrupt": "data", "row_count": 3000}, status=OK, poll=OK,
          download=r"ZIP is corrupt: member .*CRC", download_kwargs={"unzip": True}),
    Fault("ZIP with unsafe member names", plan={"unsafe_zip": True}, status=OK, poll=OK,
          download=r"Refused to extract.*'\.\./escaped\.csv'", download_kwargs={"unzip": True}),
    Fault("queued behind another export", plan={"pending_seconds": 3600, "pending_polls": None, "processing_polls": None},
          status=OK, poll=r"(?i)timed out|timeout", poll_error=AirflowSensorTimeout, download=r"is PENDING, not COMPLETE.*HubSpotExportSensor"),
]  # fmt: skip
IDS = [f.name for f in FAULTS]


@pytest.fixture
def faulty(sandbox, connect, tmp_path):
    connect(extra={"read_timeout": READ_TIMEOUT})  # and the conftest's fast retry budget
    sandbox.packaging = Packaging(zip_over_bytes=50_000)

    def plan(fault: Fault, *, done_at_once: bool = False) -> dict[str, Any]:
        return {"pending_polls": 0 if done_at_once else 1, "processing_polls": 0, **fault.plan}

    return sandbox, plan


def _digest(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def _assert_hit(injected: Any, fault: Fault) -> None:
    """The step met its fault: a row whose fault never fired would pass without testing anything."""
    if injected is not None:
        assert injected.after == 0 and injected.times < fault.inject.get("times", 1), (
            f"the {fault.name!r} fault was never served"
        )


def _check(outcome: str, call):
    if outcome == OK:
        return call()
    with pytest.raises(HubSpotExportError) as err:
        call()
    assert re.search(outcome, str(err.value), re.S), str(err.value)
    return None


# What the other legs (older Airflow, other Pythons) run of the hook's steps (start, a status
# call, the download): a 429, the CDN's page, a 5xx, a timeout, a malformed 200, an expired URL, a
# cut-short file and a damaged ZIP.
LEG_HOOK_FAULTS = {
    "429 with Retry-After",
    "Cloudflare 502 page",
    "500",
    "read timeout",
    "non-JSON 200",
    "expired signed URL",
    "download cut short",
    "ZIP with a damaged directory",
}


def hook_cases(step: str) -> list[Any]:
    return [
        pytest.param(f, id=f.name, marks=() if f.name in LEG_HOOK_FAULTS else pytest.mark.repetition)
        for f in FAULTS
        if getattr(f, step)
    ]


@pytest.mark.parametrize("fault", hook_cases("start"))
def test_start(faulty, fault):
    from airflow_provider_hubexport.hooks.hubspot import HubSpotHook

    sandbox, _ = faulty
    injected = sandbox.inject(path="/async", **fault.inject)
    task_id = _check(fault.start, lambda: HubSpotHook().start_export(CONTACTS))
    _assert_hit(injected, fault)
    posts = len(sandbox.api_requests("/async", method="POST"))
    if fault.start == OK:
        assert task_id in sandbox.exports
        served = fault.inject.get("times", 1) - injected.times
        assert posts == 1 + served  # one resend per faulty answer, no more
    elif fault.start.endswith(NOT_RESENT):  # the patterns end with it
        assert posts == 1  # a start HubSpot may have acted on is never sent twice
    else:  # turned away every time (a 429 storm): resent until the retry budget ran out
        assert posts == FAST_RETRY["retry_max_attempts"]


@pytest.mark.parametrize("fault", hook_cases("status"))
def test_status(faulty, fault):
    from airflow_provider_hubexport.hooks.hubspot import HubSpotHook

    sandbox, plan = faulty
    sandbox.plan_next(**plan(fault, done_at_once=True))
    task_id = HubSpotHook().start_export(CONTACTS)
    injected = sandbox.inject(path="/status", **fault.inject) if fault.inject else None
    _check(fault.status, lambda: HubSpotHook().get_export_status(task_id))
    _assert_hit(injected, fault)


POLL_MODES = {
    "poke": {"mode": "poke", "deferrable": False},
    "reschedule": {"mode": "reschedule", "deferrable": False},
    "deferrable": {"deferrable": True},
}
SENSOR_DAG = """
import pendulum
from airflow.sdk import DAG
from airflow_provider_hubexport.sensors.export import HubSpotExportSensor

with DAG({dag_id}, schedule=None, start_date=pendulum.datetime(2026, 1, 1), catchup=False) as dag:
    HubSpotExportSensor(task_id="wait", export_task_id={task_id}, poke_interval=0.2, max_poke_interval=0.5,
                        timeout={timeout}, max_transient_errors=2, **{kwargs})
"""


# What the other legs (older Airflow, other Pythons) run of the poll step: a tolerated transient
# error, a budget that runs out, a status HubSpot never documented, CANCELED, COMPLETE with errors
# and a timeout, each in one mode, so that every mode meets a transient and a final outcome
# (test_sensor.py runs every mode through the basics on every leg). The other faults differ only
# below the sensor (the hook), which those cases already cross.
LEG_POLL_CASES = {
    ("503", "poke"),
    ("429 storm past the retry budget", "reschedule"),
    ("unknown status value", "deferrable"),
    ("CANCELED with errors", "poke"),
    ("COMPLETE with numErrors > 0", "reschedule"),
    ("queued behind another export", "deferrable"),
}
POLL_CASES = [
    pytest.param(
        f,
        mode,
        id=f"{f.name}-{mode}",
        marks=() if (f.name, mode) in LEG_POLL_CASES else pytest.mark.repetition,
    )
    for f in FAULTS
    if f.poll
    for mode in POLL_MODES
]


@pytest.mark.parametrize("fault,mode", POLL_CASES)
def test_poll(faulty, airflow_db, fault, mode):
    from airflow_provider_hubexport.hooks.hubspot import HubSpotHook

    sandbox, plan = faulty
    sandbox.plan_next(**plan(fault))
    task_id = HubSpotHook().start_export(CONTACTS)
    injected = (
        sandbox.inject(path="/status", after=1, **fault.inject) if fault.inject else None
    )  # after the first check
    name = re.sub(r"\W+", "_", f"fault_{fault.name}_{mode}").lower()
    # A short timeout where the timeout is the outcome; elsewhere one that a loaded machine's slow
    # reschedules never reach (those cases end long before it).
    timeout = 4 if fault.poll_error is AirflowSensorTimeout else 120
    result = run_dag(name, SENSOR_DAG, task_id=task_id, kwargs=POLL_MODES[mode], timeout=timeout)
    if fault.poll != OK:
        assert_failed_with(result, "wait", fault.poll_error, fault.poll)
    assert result.tasks == {"wait": "success" if fault.poll == OK else "failed"}
    _assert_hit(injected, fault)
    if fault.poll == OK:
        assert result.xcom["wait"]["status"] == "COMPLETE"


@pytest.mark.parametrize("fault", hook_cases("download"))
def test_download(faulty, fault, tmp_path):
    from airflow_provider_hubexport.hooks.hubspot import HubSpotHook

    sandbox, plan = faulty
    sandbox.plan_next(**plan(fault, done_at_once=True))
    hook = HubSpotHook()
    task_id = hook.start_export(CONTACTS)
    injected = sandbox.inject(path="/status", **fault.inject) if fault.inject else None
    destination = tmp_path / "out"
    landed = _check(
        fault.download, lambda: hook.download_export(task_id, destination, **fault.download_kwargs)
    )
    _assert_hit(injected, fault)
    if landed:
        (item,) = landed
        served = sandbox.served_file(task_id)
        assert _digest(item["path"]) == _digest(served)
        assert os.listdir(destination) == [os.path.basename(item["path"])]
    else:
        assert not destination.exists() or os.listdir(destination) == []  # nothing partial, nothing left
    assert not (tmp_path / "escaped.csv").exists()
    assert all("Authorization" not in r.headers for r in sandbox.file_requests)


def test_daily_export_quota(faulty):
    from airflow_provider_hubexport.hooks.hubspot import HubSpotHook

    sandbox, _ = faulty
    sandbox.daily_export_limit = 1
    HubSpotHook().start_export(CONTACTS)
    with pytest.raises(HubSpotExportError) as err:
        HubSpotHook().start_export(CONTACTS)
    assert "daily export limit" in str(err.value) and "30 exports per rolling 24 hours" in str(err.value)
    assert len(sandbox.api_requests("/async", method="POST")) == 2  # not retried: seconds cannot help
