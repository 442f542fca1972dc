"""HubSpotExportTrigger.run() in asyncio against the sandbox over real HTTP."""

from __future__ import annotations

import asyncio
import json
import time
import types
from itertools import pairwise

import pytest
from conftest import (
    CONTACTS,
    SECRET_CLIENT_ID,
    SECRET_CLIENT_SECRET,
    SECRET_REFRESH_TOKEN,
    SECRET_TOKEN,
    arrival_gaps,
)

from airflow_provider_hubexport.hooks.hubspot_async import _SharedSession
from airflow_provider_hubexport.triggers.export import HubSpotExportTrigger

# An OAuth connection whose access token HubSpot no longer takes: the first call refreshes it.
STALE_OAUTH = {
    "password": "stale-oauth-token",
    "extra": {
        "client_id": SECRET_CLIENT_ID,
        "client_secret": SECRET_CLIENT_SECRET,
        "refresh_token": SECRET_REFRESH_TOKEN,
    },
}


def _trigger(task_id, **kwargs):
    return HubSpotExportTrigger(export_task_id=task_id, **{"poll_interval": 0.05, **kwargs})


async def _events(trigger):
    return [event.payload async for event in trigger.run()]


HANG_GUARD = 60.0  # seconds: only so that a wait that never ends fails; nothing is timed by it


async def _until(condition, what: str, run: asyncio.Future) -> None:
    """Waits until ``condition()`` holds (what the sandbox has seen): fails the test, naming
    ``what``, if the wait ``run`` ended first or the hang guard is reached."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + HANG_GUARD
    while not condition():
        if run.done():
            pytest.fail(f"{what}: never seen; the wait ended first with {run.result()!r}")
        if loop.time() > give_up:
            pytest.fail(f"{what}: not seen in {HANG_GUARD:.0f} s")
        await asyncio.sleep(0.01)


async def test_success_event_without_signed_url(sandbox, start):
    task_id = start(pending_polls=1, processing_polls=1)
    (event,) = await _events(_trigger(task_id))
    assert event["status"] == "success" and event["export_task_id"] == task_id
    assert event["export"]["status"] == "COMPLETE" and event["export"]["export_task_id"] == task_id
    assert "Signature" not in json.dumps(event) and sandbox.files_url not in json.dumps(event)
    assert len(sandbox.api_requests("/status")) == 3


async def test_canceled_event_lists_errors(sandbox, start):
    task_id = start(
        pending_polls=0, processing_polls=0, cancel=True, errors=[{"message": "Export too large"}]
    )
    (event,) = await _events(_trigger(task_id))
    assert event["status"] == "canceled" and "Export too large" in event["export"]["errors"][0]


async def test_permanent_error_event(sandbox, start):
    (event,) = await _events(_trigger("424242"))
    assert event["status"] == "error" and event["status_code"] == 404
    assert "424242" in event["message"] and not event["retryable"]
    assert len(sandbox.api_requests("/status")) == 1


async def test_transient_errors_recovered(sandbox, start):
    task_id = start(pending_polls=0, processing_polls=0)
    # Five 503s: the first poll spends its 4 attempts, the second poll gets one more, then succeeds.
    sandbox.inject("status", status=503, path="/status", times=5, retry_after=0.01)
    (event,) = await _events(_trigger(task_id))
    assert event["status"] == "success"
    assert len(sandbox.api_requests("/status")) == 6


async def test_transient_errors_bounded(sandbox, start):
    task_id = start()
    sandbox.inject("status", status=502, path="/status", times=100, retry_after=0.01)
    (event,) = await _events(_trigger(task_id, max_transient_errors=1))
    assert (
        event["status"] == "error" and event["retryable"] and "Gave up after 4 attempt(s)" in event["message"]
    )
    assert len(sandbox.api_requests("/status")) == 8  # two polls of four attempts


class _TriggerClock:
    """The trigger module's clock, still but for the sleeps the trigger asks for: each moves it on
    by what was asked (and yields to the loop once). The deadline falls where the test puts it,
    whatever reading the connection or a poll costs on a loaded machine."""

    def __init__(self, monkeypatch) -> None:
        import airflow_provider_hubexport.triggers.export as module

        self.now = 1_000_000.0
        self.asked: list[float] = []
        real_sleep = asyncio.sleep

        async def sleep(seconds: float) -> None:
            self.asked.append(seconds)
            self.now += seconds
            await real_sleep(0)

        monkeypatch.setattr(module, "time", types.SimpleNamespace(time=lambda: self.now))
        monkeypatch.setattr(module, "asyncio", types.SimpleNamespace(sleep=sleep))


@pytest.mark.parametrize(
    "poll_interval,sleeps,polls",
    [(30, [0.7], 0), (0.5, [0.5, 0.2], 1)],
    ids=["deadline-before-the-first-poll", "deadline-between-polls"],
)
async def test_timeout_event(sandbox, start, monkeypatch, poll_interval, sleeps, polls):
    task_id = start(pending_seconds=3600)
    clock = _TriggerClock(monkeypatch)
    trigger = _trigger(task_id, poll_interval=poll_interval, deadline=clock.now + 0.7, timeout=0.7)
    (event,) = await _events(trigger)
    assert event["status"] == "timeout" and "0.7" in event["message"]
    # It slept to the deadline and stopped there: not an interval past it, and no poll after it.
    assert clock.asked == pytest.approx(sleeps, abs=1e-6)
    assert len(sandbox.api_requests("/status")) == polls


async def test_serialize_round_trip(sandbox, start):
    original = _trigger(start(pending_polls=1, processing_polls=0), deadline=time.time() + 60, timeout=60)
    classpath, kwargs = original.serialize()
    module, _, name = classpath.rpartition(".")
    cls = getattr(__import__(module, fromlist=[name]), name)
    rebuilt = cls(**json.loads(json.dumps(kwargs)))  # kwargs survive the metadata database
    assert rebuilt.serialize() == (classpath, kwargs)
    for secret in (SECRET_TOKEN, sandbox.files_url):
        assert secret not in json.dumps(kwargs)
    # The rebuilt trigger behaves the same, and running a wait twice is harmless.
    assert [e["status"] for e in await _events(rebuilt)] == ["success"]
    assert [e["status"] for e in await _events(original)] == ["success"]
    assert len(sandbox.api_requests("/async", method="POST")) == 1  # it never starts an export


async def test_session_closed_when_cancelled_mid_wait(sandbox, start):
    task_id = start(pending_seconds=3600)
    run = asyncio.ensure_future(_events(_trigger(task_id, poll_interval=0.05)))
    await _until(lambda: sandbox.api_requests("/status"), "the trigger's first poll", run)
    loop = asyncio.get_running_loop()
    session = _SharedSession._by_loop[loop].session
    assert not session.closed
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert session.closed and loop not in _SharedSession._by_loop


async def test_connection_reused_across_polls(sandbox, start):
    task_id = start(pending_polls=3, processing_polls=2)
    (event,) = await _events(_trigger(task_id))
    assert event["status"] == "success"
    peers = {r.peer for r in sandbox.api_requests("/status")}
    assert all(peer.startswith("127.0.0.1:") for peer in peers)
    assert len(sandbox.api_requests("/status")) == 6 and len(peers) == 1


async def test_triggers_on_one_loop_share_a_session(sandbox, start, monkeypatch):
    ids = [start(pending_polls=2, processing_polls=1) for _ in range(20)]
    handed_out = []  # the session each wait got, as it got it (no sampling to miss one)
    acquire = _SharedSession.acquire

    def recording_acquire():
        handed_out.append(acquire())
        return handed_out[-1]

    monkeypatch.setattr(_SharedSession, "acquire", recording_acquire)
    events = await asyncio.gather(*(_events(_trigger(t)) for t in ids))
    assert all(e[0]["status"] == "success" for e in events)
    assert len(handed_out) == 20 and len({id(s) for s in handed_out}) == 1
    assert handed_out[0].closed and not _SharedSession._by_loop  # closed by the last one out


async def test_concurrent_oauth_refresh_happens_once(sandbox, connect):
    from airflow_provider_hubexport.hooks.hubspot import HubSpotHook

    connect()
    ids = []
    for _ in range(10):
        sandbox.plan_next(pending_polls=0, processing_polls=0)
        ids.append(HubSpotHook().start_export(CONTACTS))
    connect(**STALE_OAUTH)
    events = await asyncio.gather(*(_events(_trigger(t)) for t in ids))
    assert all(e[0]["status"] == "success" for e in events)
    assert len(sandbox.api_requests("/oauth/v1/token")) == 1


async def test_retry_after_respected_between_polls(sandbox, start):
    task_id = start(pending_polls=0, processing_polls=0)
    sandbox.inject("status", status=429, retry_after=0.3, path="/status", times=4)
    (event,) = await _events(_trigger(task_id, poll_interval=0.01))
    assert event["status"] == "success"
    calls = sandbox.api_requests("/status")
    assert (
        len(calls) == 5 and min(arrival_gaps(calls)) >= 0.3
    )  # each 429's Retry-After, not the 0.01 s interval


async def test_two_hour_export_costs_tens_of_calls(sandbox, start, monkeypatch, capsys):
    """Simulated time: the trigger's clock and sleeps, and the sandbox's clock, are one fake clock."""
    import airflow_provider_hubexport.triggers.export as module

    clock = {"now": time.time()}
    polls: list[float] = []
    real_sleep = asyncio.sleep

    async def fake_sleep(seconds):
        clock["now"] += seconds
        polls.append(clock["now"] - begin)  # each sleep is followed by one status call
        await real_sleep(0)

    monkeypatch.setattr(module, "time", types.SimpleNamespace(time=lambda: clock["now"]))
    monkeypatch.setattr(module, "asyncio", types.SimpleNamespace(sleep=fake_sleep))
    sandbox.clock = lambda: clock["now"]
    task_id = start(pending_seconds=600, processing_seconds=6600)  # done 2 h after it started
    begin = clock["now"]
    (event,) = await _events(_trigger(task_id, poll_interval=30, started_at=begin, deadline=begin + 86400))
    assert event["status"] == "success"
    intervals = [b - a for a, b in pairwise([0.0, *polls])]
    with capsys.disabled():
        print(f"\n2 h export: {len(polls)} status calls; intervals (s): {[round(i) for i in intervals]}")
    assert 10 <= len(polls) <= 30
    assert intervals[0] == 30 and all(b >= a for a, b in pairwise(intervals))
    assert max(intervals) == 600
    assert polls[-1] - 7200 <= intervals[-1]  # found no later than one interval after it finished


async def test_restart_from_serialized_form_resumes_the_wait(sandbox, start):
    """A triggerer dies mid-wait; another rebuilds the trigger from what was stored and finishes."""
    task_id = start(pending_polls=1, processing_polls=0)  # PENDING to its first poll, then COMPLETE
    # A first wait of 0.05 s, the next 50 s: the first trigger is surely sleeping after one poll.
    first = _trigger(task_id, backoff_factor=1000, max_poll_interval=3600, deadline=time.time() + 3600)
    stored = json.loads(json.dumps(first.serialize()))  # what the metadata database holds
    run = asyncio.ensure_future(_events(first))
    await _until(lambda: sandbox.api_requests("/status"), "the first trigger's poll", run)
    run.cancel()  # the event loop goes away mid-wait
    with pytest.raises(asyncio.CancelledError):
        await run
    assert len(sandbox.api_requests("/status")) == 1  # the first trigger polled, once
    classpath, kwargs = stored
    module, _, name = classpath.rpartition(".")
    revived = getattr(__import__(module, fromlist=[name]), name)(**kwargs)
    assert revived.started_at == first.started_at and revived.deadline == first.deadline
    (event,) = await _events(revived)
    assert event["status"] == "success" and event["export"]["export_task_id"] == task_id
    # The revived wait made the one poll that was left (COMPLETE), and only that one.
    assert len(sandbox.api_requests("/status")) == 2
    assert len(sandbox.api_requests("/async", method="POST")) == 1


def _auth_of_status_polls(sandbox, task_id):
    return [r.headers.get("Authorization") for r in sandbox.api_requests(f"/tasks/{task_id}/status")]


async def test_token_rotated_mid_wait_is_picked_up_after_the_ttl(sandbox, start, connect, monkeypatch):
    # One wait, its settings read when it began: the token is rotated while it polls, and once the
    # settings are past their TTL the same wait reads the connection again and sends the new token.
    from airflow_provider_hubexport.hooks import hubspot_async

    task_id = start(pending_polls=0, processing_polls=8)
    run = asyncio.ensure_future(_events(_trigger(task_id)))
    await _until(lambda: len(_auth_of_status_polls(sandbox, task_id)) >= 3, "three polls", run)
    sandbox.add_token("ROTATED-TOKEN-4c1a")
    del sandbox.tokens[sandbox.token]
    connect(password="ROTATED-TOKEN-4c1a")
    monkeypatch.setattr(hubspot_async, "SETTINGS_TTL", 0.0)
    (event,) = await asyncio.wait_for(run, HANG_GUARD)
    assert event["status"] == "success"
    sent = _auth_of_status_polls(sandbox, task_id)
    assert sent[0] == f"Bearer {SECRET_TOKEN}" and sent[-1] == "Bearer ROTATED-TOKEN-4c1a"


async def test_oauth_401_mid_wait_refreshes_once_and_resends(sandbox, start, connect):
    task_id = start(pending_polls=0, processing_polls=8)
    connect(**STALE_OAUTH)
    run = asyncio.ensure_future(_events(_trigger(task_id)))
    await _until(lambda: len(_auth_of_status_polls(sandbox, task_id)) >= 3, "three polls", run)
    assert len(sandbox.api_requests("/oauth/v1/token")) == 1  # the first poll refreshed the stale token
    sandbox.inject("status", status=401, path=f"/tasks/{task_id}/status", times=1)
    (event,) = await asyncio.wait_for(run, HANG_GUARD)
    assert event["status"] == "success"
    assert len(sandbox.api_requests("/oauth/v1/token")) == 2  # refreshed after the 401, then resent
    sent = _auth_of_status_polls(sandbox, task_id)
    tokens = [t for i, t in enumerate(sent) if i == 0 or t != sent[i - 1]]  # each token, as first sent
    assert (
        len(tokens) == 3 and tokens[0] == "Bearer stale-oauth-token"
    )  # stale, refreshed, refreshed after the 401


async def test_an_overridden_get_export_status_is_what_the_wait_calls(sandbox, start, monkeypatch):
    # The trigger's polls take a shorter path than get_export_status, but only while it is the
    # hook's own: a subclass's override or a test's double is called as it is.
    from airflow_provider_hubexport.api import ExportStatus
    from airflow_provider_hubexport.hooks.hubspot_async import HubSpotAsyncHook

    task_id = start(pending_polls=0, processing_polls=50)
    calls = []

    async def double(self, export_task_id, *, for_wait=False):
        calls.append((export_task_id, for_wait))
        return ExportStatus(export_task_id=export_task_id, status="COMPLETE")

    monkeypatch.setattr(HubSpotAsyncHook, "get_export_status", double)
    (event,) = await asyncio.wait_for(_events(_trigger(task_id)), HANG_GUARD)
    assert event["status"] == "success" and calls == [(task_id, True)]
    assert _auth_of_status_polls(sandbox, task_id) == []  # no request: the double answered
