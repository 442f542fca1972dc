"""What a wait costs the triggerer, beyond its polls: thousands of waits share one event loop.

Per wait: the connection is read once per event loop and connection id, not once per wait (a read
goes through Airflow's secrets backends), and read again after ``SETTINGS_TTL`` or a 401. Per
poll: a log line only when the status changes, and no retry machinery unless the poll failed.
"""

from __future__ import annotations

import asyncio
import time

import pytest
import tenacity

from airflow_provider_hubexport.hooks import hubspot_async
from airflow_provider_hubexport.triggers.export import HubSpotExportTrigger


@pytest.fixture
def connection_reads(monkeypatch):
    """Counts the connection reads of the async hook (the triggerer's)."""
    reads: list[str] = []
    real = hubspot_async.aget_connection

    async def counted(conn_id):
        reads.append(conn_id)
        return await real(conn_id)

    monkeypatch.setattr(hubspot_async, "aget_connection", counted)
    return reads


class _Log:
    def __init__(self):
        self.lines: list[str] = []

    def info(self, msg, *args):
        self.lines.append(msg % args)

    warning = error = debug = info


def _wait(task_id):
    return HubSpotExportTrigger(export_task_id=task_id, poll_interval=0.05, backoff_factor=1.0)


async def _event(trigger):
    return [event.payload async for event in trigger.run()][0]


async def test_a_hundred_waits_read_the_connection_once(sandbox, start, connection_reads):
    ids = [start(pending_polls=2, processing_polls=2) for _ in range(100)]
    events = await asyncio.gather(*(_event(_wait(i)) for i in ids))
    assert [e["status"] for e in events] == ["success"] * 100
    assert connection_reads == ["hubspot_default"]


async def test_a_rotated_token_is_used_after_the_ttl(sandbox, start, connect, connection_reads, monkeypatch):
    first, second = start(pending_polls=0, processing_polls=0), start(pending_polls=0, processing_polls=0)
    await _event(_wait(first))
    assert connection_reads == ["hubspot_default"]
    # The token is rotated: the old one is revoked and the connection holds the new one. A wait that
    # kept the old token (settings not read again) would get a 401 and end in an error event.
    sandbox.add_token("ROTATED-TOKEN-7f3e")
    del sandbox.tokens[sandbox.token]
    connect(password="ROTATED-TOKEN-7f3e")
    monkeypatch.setattr(hubspot_async, "SETTINGS_TTL", 0.0)  # from now on, every use is past the TTL
    assert (await _event(_wait(second)))["status"] == "success"
    assert len(connection_reads) > 1


async def test_within_the_ttl_a_wait_keeps_the_settings_it_read(sandbox, start, connect, connection_reads):
    first, second = start(pending_polls=0, processing_polls=0), start(pending_polls=0, processing_polls=0)
    await _event(_wait(first))
    sandbox.add_token("ROTATED-TOKEN-7f3e")
    del sandbox.tokens[sandbox.token]
    connect(password="ROTATED-TOKEN-7f3e")
    refused = await _event(_wait(second))  # the loop's settings still hold the revoked token
    assert refused["status"] == "error" and "401" in refused["message"]
    assert connection_reads == ["hubspot_default"]


async def test_a_401_makes_the_next_wait_read_the_connection_again(sandbox, start, connection_reads):
    first, second = start(pending_polls=0, processing_polls=0), start(pending_polls=0, processing_polls=0)
    sandbox.inject("status", status=401, path=f"/tasks/{first}/status", times=1)
    failed = await _event(_wait(first))
    assert failed["status"] == "error" and "401" in failed["message"]
    assert (await _event(_wait(second)))["status"] == "success"
    assert connection_reads == ["hubspot_default", "hubspot_default"]  # the rotated token is picked up


async def test_polls_log_only_status_changes(sandbox, start, monkeypatch):
    task_id = start(pending_polls=5, processing_polls=5)
    log = _Log()
    monkeypatch.setattr(HubSpotExportTrigger, "log", property(lambda self: log))
    assert (await _event(_wait(task_id)))["status"] == "success"
    assert len(sandbox.api_requests(f"/tasks/{task_id}/status")) == 11
    said = [line for line in log.lines if task_id in line]
    assert said == [f"Export {task_id} is {s}" for s in ("PENDING", "PROCESSING", "COMPLETE")]


async def test_a_poll_that_succeeds_builds_no_retry_machinery(sandbox, start, monkeypatch):
    task_id = start(pending_polls=3, processing_polls=3)
    built: list[object] = []
    real = tenacity.AsyncRetrying

    def counting(*args, **kwargs):
        built.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(hubspot_async.tenacity, "AsyncRetrying", counting)
    assert (await _event(_wait(task_id)))["status"] == "success"
    assert built == []
    # A failed poll engages the policy, which still counts that first attempt: 2 failures, then
    # the third attempt succeeds, all within one poll.
    second = start(pending_polls=0, processing_polls=0)
    sandbox.inject("status", status=503, retry_after=0.05, path=f"/tasks/{second}/status", times=2)
    assert (await _event(_wait(second)))["status"] == "success"
    assert len(built) == 1 and len(sandbox.api_requests(f"/tasks/{second}/status")) == 3


async def test_a_failed_poll_is_logged_once_with_its_cause(sandbox, start, monkeypatch):
    # The poll's call spends its retries (FAST_RETRY: 4 attempts) on 503s: one WARNING that names
    # the cause, and the wait goes on to the next poll, which succeeds.
    task_id = start(pending_polls=0, processing_polls=0)
    sandbox.inject("status", status=503, retry_after=0.05, path=f"/tasks/{task_id}/status", times=4)
    log = _Log()
    monkeypatch.setattr(HubSpotExportTrigger, "log", property(lambda self: log))
    assert (await _event(_wait(task_id)))["status"] == "success"
    failed = [line for line in log.lines if "status check failed" in line]
    assert len(failed) == 1 and "503" in failed[0] and task_id in failed[0], log.lines


async def test_a_wait_does_not_log_again_the_status_the_task_logged(sandbox, start, monkeypatch):
    task_id = start(pending_polls=0, processing_polls=3)
    log = _Log()
    monkeypatch.setattr(HubSpotExportTrigger, "log", property(lambda self: log))
    handed = HubSpotExportTrigger(
        export_task_id=task_id, poll_interval=0.05, backoff_factor=1.0, last_status="PROCESSING"
    )
    classpath, kwargs = handed.serialize()  # as the triggerer gets it
    assert kwargs["last_status"] == "PROCESSING"
    assert (await _event(HubSpotExportTrigger(**kwargs)))["status"] == "success"
    assert [line for line in log.lines if task_id in line] == [f"Export {task_id} is COMPLETE"]


def test_the_sensor_hands_the_status_it_saw_to_the_trigger(sandbox, start):
    try:
        from airflow.sdk.exceptions import TaskDeferred
    except ImportError:  # Airflow 3.0
        from airflow.exceptions import TaskDeferred
    from airflow_provider_hubexport.sensors.export import HubSpotExportSensor

    task_id = start(pending_polls=5)
    sensor = HubSpotExportSensor(task_id="wait", export_task_id=task_id, deferrable=True)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})
    assert deferred.value.trigger.last_status == "PENDING"


async def test_the_first_poll_is_one_interval_after_the_task_checked_not_after_pickup(sandbox, start):
    task_id = start(pending_polls=0, processing_polls=0)
    # Deferred an hour ago with an hour's interval (a triggerer that was down, say): poll at once.
    trigger = HubSpotExportTrigger(export_task_id=task_id, poll_interval=3600, started_at=time.time() - 3600)
    event = await asyncio.wait_for(_event(trigger), timeout=60)
    assert event["status"] == "success" and len(sandbox.api_requests(f"/tasks/{task_id}/status")) == 1


async def test_a_finished_wait_gives_its_session_back_without_scheduling_anything(sandbox, start):
    # A triggerer finishing hundreds of waits in a second should not queue a task for each of them
    # on the loop they share: only the last user of the session awaits its close.
    first, second = start(pending_polls=0, processing_polls=0), start(pending_polls=0, processing_polls=0)
    created: list[object] = []
    loop = asyncio.get_running_loop()
    factory = loop.get_task_factory()

    def counting(loop, coro, **kwargs):
        created.append(coro)
        return factory(loop, coro, **kwargs) if factory else asyncio.Task(coro, loop=loop, **kwargs)

    async with hubspot_async.HubSpotAsyncHook() as keeper:  # another wait still holds the session
        session = keeper.http_session
        loop.set_task_factory(counting)
        try:
            assert (await _event(_wait(first)))["status"] == "success"
        finally:
            loop.set_task_factory(factory)
        assert created == [] and not session.closed
    assert session.closed  # the last user closed it
    assert (await _event(_wait(second)))["status"] == "success"  # and a new wait opens a new one
