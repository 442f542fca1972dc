"""Waits for a HubSpot export on the triggerer, so a deferrable sensor holds no worker slot."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_hubexport.polling import (
    DEFAULT_BACKOFF_FACTOR,
    DEFAULT_MAX_POLL_INTERVAL,
    DEFAULT_MAX_TRANSIENT_ERRORS,
    DEFAULT_POLL_INTERVAL,
    PollSchedule,
    PollState,
    error_event,
    status_event,
    timeout_event,
)


class HubSpotExportTrigger(BaseTrigger):
    """Polls an export's status until it is COMPLETE or CANCELED, then fires one event.

    Its whole state is its kwargs (ids, knobs, an absolute deadline and the time the wait began)
    plus what HubSpot says, so a restarted or different triggerer resumes the wait with the same
    interval growth. It never starts an export, holds no locks and takes no secrets: it reads the
    connection by id on the triggerer.

    :param export_task_id: the task id HubSpot returned when the export started.
    :param hubspot_conn_id: the ``hubspot`` connection.
    :param poll_interval: the first wait between polls, in seconds.
    :param backoff_factor: each wait is this much longer than the one before ...
    :param max_poll_interval: ... up to this many seconds.
    :param deadline: a Unix time after which a timeout event is sent (None: wait for ever).
    :param timeout: the sensor's timeout in seconds, for the timeout message.
    :param started_at: the Unix time the wait began (default: now).
    :param max_transient_errors: transient poll failures (after the hook's own retries) tolerated
        in a row before the wait fails with the last one.
    :param last_status: the status the task saw before deferring (the task logged it): the trigger
        logs only a change from it, one line per change for thousands of waits.
    """

    def __init__(
        self,
        export_task_id: str,
        hubspot_conn_id: str = "hubspot_default",
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        backoff_factor: float = DEFAULT_BACKOFF_FACTOR,
        max_poll_interval: float = DEFAULT_MAX_POLL_INTERVAL,
        deadline: float | None = None,
        timeout: float | None = None,
        started_at: float | None = None,
        max_transient_errors: int = DEFAULT_MAX_TRANSIENT_ERRORS,
        last_status: str | None = None,
    ) -> None:
        super().__init__()
        self.export_task_id = str(export_task_id)
        self.hubspot_conn_id = hubspot_conn_id
        self.poll_interval = float(poll_interval)
        self.backoff_factor = float(backoff_factor)
        self.max_poll_interval = float(max(max_poll_interval, poll_interval))
        self.deadline = deadline
        self.timeout = timeout
        self.started_at = time.time() if started_at is None else started_at
        self.max_transient_errors = max_transient_errors
        self.last_status = last_status
        self.schedule = PollSchedule(self.poll_interval, self.backoff_factor, self.max_poll_interval)

    @classmethod
    def starting_now(
        cls,
        export_task_id: str,
        hubspot_conn_id: str,
        schedule: PollSchedule,
        *,
        timeout: float,
        max_transient_errors: int,
        last_status: str | None = None,
    ) -> HubSpotExportTrigger:
        """A wait that begins now and gives up ``timeout`` seconds from now (sensor and operator)."""
        now = time.time()
        return cls(
            export_task_id=export_task_id,
            hubspot_conn_id=hubspot_conn_id,
            poll_interval=schedule.initial,
            backoff_factor=schedule.factor,
            max_poll_interval=schedule.maximum,
            deadline=now + timeout,
            timeout=timeout,
            started_at=now,
            max_transient_errors=max_transient_errors,
            last_status=last_status,
        )

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "export_task_id": self.export_task_id,
                "hubspot_conn_id": self.hubspot_conn_id,
                "poll_interval": self.poll_interval,
                "backoff_factor": self.backoff_factor,
                "max_poll_interval": self.max_poll_interval,
                "deadline": self.deadline,
                "timeout": self.timeout,
                "started_at": self.started_at,
                "max_transient_errors": self.max_transient_errors,
                "last_status": self.last_status,
            },
        )

    def _until_deadline(self) -> float:
        return float("inf") if self.deadline is None else self.deadline - time.time()

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow_provider_hubexport.exceptions import HubSpotExportError
        from airflow_provider_hubexport.hooks.hubspot_async import HubSpotAsyncHook

        export_task_id = self.export_task_id
        state = PollState(
            export_task_id, self.schedule, max_transient_errors=self.max_transient_errors, log=self.log
        )
        state.last_status = self.last_status
        try:
            async with HubSpotAsyncHook(self.hubspot_conn_id, log=self.log) as hook:
                poll = hook.status_poller()
                first = True
                while True:
                    remaining = self._until_deadline()
                    if remaining > 0:
                        elapsed = time.time() - self.started_at
                        if first:  # the task checked at started_at: poll one interval after that,
                            # however long the triggerer took to pick the wait up and read the
                            # connection (a thousand waits arriving together would poll together)
                            wait = min(max(0.0, self.schedule.interval(0) - elapsed), remaining)
                        else:
                            wait = state.next_wait(elapsed, remaining)
                        await asyncio.sleep(wait)
                    first = False
                    if self._until_deadline() <= 0:
                        yield TriggerEvent(timeout_event(export_task_id, self.timeout or 0))
                        return
                    try:
                        status = state.seen(await poll(export_task_id, True))
                    except HubSpotExportError as err:
                        state.failed(err)  # re-raises when it is not worth another poll
                        continue
                    if status.is_final:
                        yield TriggerEvent(status_event(status))
                        return
        except HubSpotExportError as err:  # permanent, too many in a row, or an unreadable connection
            yield TriggerEvent(error_event(export_task_id, err))
