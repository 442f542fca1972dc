"""How a wait for an export proceeds and ends, shared by the sensor (poke and reschedule modes),
the trigger (deferrable mode) and the all-in-one operator. No I/O, no heavy imports: DAG files
import the sensor, and the sensor imports this.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from airflow_provider_hubexport.api import ExportStatus
from airflow_provider_hubexport.exceptions import (
    HubSpotExportCanceledError,
    HubSpotExportError,
    HubSpotExportTimeoutError,
)

DEFAULT_POLL_INTERVAL = 30.0
DEFAULT_BACKOFF_FACTOR = 1.5
DEFAULT_MAX_POLL_INTERVAL = 600.0
DEFAULT_TIMEOUT = 24 * 3600.0
DEFAULT_MAX_TRANSIENT_ERRORS = 5
# Time the scheduler's own deferral timeout leaves the trigger to send its timeout event first.
DEFERRAL_TIMEOUT_MARGIN = 300.0

EVENT_STATUSES = ("success", "canceled", "error", "timeout")


@dataclass(frozen=True)
class PollSchedule:
    """Intervals that start at ``initial`` and grow by ``factor`` up to ``maximum``.

    The n-th wait depends only on the time elapsed since the wait began, so a rescheduled sensor
    or a restarted trigger picks up the growth where it was without storing anything.
    """

    initial: float = DEFAULT_POLL_INTERVAL
    factor: float = DEFAULT_BACKOFF_FACTOR
    maximum: float = DEFAULT_MAX_POLL_INTERVAL

    def __post_init__(self) -> None:
        if self.initial < 0:
            raise ValueError(
                f"poke_interval must not be negative, got {self.initial}: give seconds, 0 or more."
            )
        if self.factor < 1:
            raise ValueError(
                f"backoff_factor must be at least 1, got {self.factor}: 1 polls at a steady interval, 2 doubles it."
            )
        if self.maximum < self.initial:
            raise ValueError(
                f"max_poke_interval ({self.maximum}) must be at least poke_interval ({self.initial}): raise "
                "max_poke_interval or lower poke_interval."
            )

    def interval(self, n: int) -> float:
        """The n-th wait (0-based)."""
        if self.initial <= 0:
            return 0.0
        if self.factor == 1:
            return self.initial
        if n * math.log(self.factor) > math.log(self.maximum / self.initial):
            return self.maximum
        return min(self.initial * self.factor**n, self.maximum)

    def next_interval(self, elapsed: float) -> float:
        """The wait to use after a poll made ``elapsed`` seconds into the wait."""
        if self.initial <= 0:
            return 0.0
        if self.factor == 1:  # a steady interval: no need to count the steps taken so far
            return self.initial
        total, n = 0.0, 0
        while True:
            step = self.interval(n)
            if total + step > elapsed:
                return step
            if step >= self.maximum:
                return self.maximum  # every later step is the maximum too
            total += step
            n += 1


def seconds(value: float | timedelta, field: str) -> float:
    """A duration given as seconds or a ``timedelta`` (Airflow accepts both for its sensors)."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise ValueError(f"{field} must be seconds (a number) or a timedelta, got {value!r}.")


def poll_schedule(
    poke_interval: float | timedelta,
    backoff_factor: float | None = None,
    max_poke_interval: float | timedelta | None = None,
    *,
    exponential_backoff: bool | None = None,
    max_wait: float | timedelta | None = None,
) -> PollSchedule:
    """The schedule of a wait from the sensor's arguments (and the all-in-one operator's), with
    BaseSensorOperator's ``exponential_backoff`` and ``max_wait`` read in HubSpot's terms rather
    than ignored: False is a steady interval, ``max_wait`` is ``max_poke_interval``."""
    initial = seconds(poke_interval, "poke_interval")
    if exponential_backoff is False and backoff_factor not in (None, 1):
        raise ValueError(
            f"exponential_backoff=False asks for a steady interval but backoff_factor={backoff_factor} "
            "grows it: give one of the two (backoff_factor=1 is a steady interval)."
        )
    factor = 1.0 if exponential_backoff is False else DEFAULT_BACKOFF_FACTOR
    if backoff_factor is not None:
        factor = backoff_factor
    maximum = DEFAULT_MAX_POLL_INTERVAL
    if max_wait is not None and max_poke_interval is not None:
        if seconds(max_wait, "max_wait") != seconds(max_poke_interval, "max_poke_interval"):
            raise ValueError(
                f"max_wait={max_wait!r} and max_poke_interval={max_poke_interval!r} name the same "
                "limit (the longest interval between status checks): give only max_poke_interval."
            )
    for given, field in ((max_wait, "max_wait"), (max_poke_interval, "max_poke_interval")):
        if given is not None:
            maximum = seconds(given, field)
    return PollSchedule(initial, factor, max(maximum, initial))


class PollState:
    """What one wait remembers between polls: transient failures in a row and HubSpot's last
    ``Retry-After``. The sensor, the trigger and the all-in-one operator each keep one."""

    def __init__(
        self, export_task_id: str, schedule: PollSchedule, *, max_transient_errors: int, log: Any
    ) -> None:
        self.export_task_id = export_task_id
        self.schedule = schedule
        self.max_transient_errors = max_transient_errors
        self.log = log
        self.transient_in_a_row = 0
        self.asked_to_wait: float | None = None
        self.last_status: str | None = None

    def remembered(self) -> dict[str, Any]:
        """What must outlive this process when the next poll is another one (a reschedule-mode
        sensor's next poke): the error streak and the status last said in the log. ``asked_to_wait``
        is used by the same process that read it, to choose the reschedule date."""
        return {"transient_in_a_row": self.transient_in_a_row, "last_status": self.last_status}

    def restore(self, remembered: Mapping[str, Any]) -> None:
        self.transient_in_a_row = int(remembered.get("transient_in_a_row") or 0)
        self.last_status = remembered.get("last_status")
        self.asked_to_wait = None

    def seen(self, status: ExportStatus) -> ExportStatus:
        """A poll's answer; said in the log when the status changed (PENDING -> PROCESSING ->
        COMPLETE), not on every poll: a triggerer with thousands of waits would spend its time
        writing "still PROCESSING"."""
        self.transient_in_a_row, self.asked_to_wait = 0, None
        if status.status != self.last_status:
            self.last_status = status.status
            self.log.info("Export %s is %s", status.export_task_id, status.status)
        return status

    def failed(self, err: HubSpotExportError) -> None:
        """Tolerate a transient failure (the next poll may succeed); re-raise anything else."""
        if not err.retryable or self.transient_in_a_row >= self.max_transient_errors:
            raise err
        self.transient_in_a_row += 1
        self.asked_to_wait = err.retry_after
        self.log.warning(
            "Export %s: status check failed (%d in a row, %d tolerated); checking again later: %s",
            self.export_task_id,
            self.transient_in_a_row,
            self.max_transient_errors,
            err,
        )

    def next_wait(self, elapsed: float, remaining: float = math.inf) -> float:
        wait = self.schedule.next_interval(elapsed)
        if self.asked_to_wait:
            wait = max(wait, self.asked_to_wait)
        return max(0.0, min(wait, remaining))


# ---------------------------------------------------------------------------------------------
# Ending a wait
# ---------------------------------------------------------------------------------------------
# 0.1.0's export dicts held HubSpot's export task id as "task_id" and "export_id" (beside Airflow's
# own task_id): written by 0.1.0; drop in 0.3.
OLD_ID_KEYS = ("task_id", "export_id")


def export_task_id_of(export: Mapping[str, Any]) -> Any:
    """HubSpot's export task id in an export dict (``ExportStatus.to_dict()``, the sensor's XCom value)."""
    if "export_task_id" in export:
        return export["export_task_id"]
    return export.get("task_id")  # written by 0.1.0; drop in 0.3


def current_export_dict(export: Mapping[str, Any]) -> dict[str, Any]:
    """An export dict in this release's shape, whichever release wrote it."""
    if "export_task_id" in export:
        return dict(export)
    rest = {k: v for k, v in export.items() if k not in OLD_ID_KEYS}  # written by 0.1.0; drop in 0.3
    return {"export_task_id": export_task_id_of(export), **rest}


def finish(export: Mapping[str, Any], *, accept_errors: bool, log: Any) -> dict[str, Any]:
    """Turn a final status into the sensor's XCom value, or the failure it deserves."""
    export = current_export_dict(export)
    status = export.get("status")
    export_task_id = export["export_task_id"]
    errors = list(export.get("errors") or [])
    listed = ("; HubSpot errors: " + " | ".join(str(e) for e in errors)) if errors else ""
    if status == "CANCELED":
        raise HubSpotExportCanceledError(
            f"HubSpot canceled export {export_task_id}{listed}. Fix the export request (see the errors) "
            "and start a new export; retrying this one cannot help.",
            errors=errors,
        )
    if status != "COMPLETE":
        raise HubSpotExportError(f"Export {export_task_id} is not finished (status {status!r}).")
    num_errors = int(export.get("num_errors") or 0)
    if num_errors > 0:
        if not accept_errors:
            raise HubSpotExportError(
                f"HubSpot completed export {export_task_id} with {num_errors} error(s){listed}. "
                "Pass accept_errors=True to accept a file with errors.",
                errors=errors,
            )
        log.warning("Export %s completed with %d error(s), accepted: %s", export_task_id, num_errors, errors)
    return export


def status_event(status: ExportStatus) -> dict[str, Any]:
    """A trigger event for a final status. Never holds the signed URL: events are stored in the
    metadata database and printed in the triggerer's log."""
    kind = "success" if status.status == "COMPLETE" else "canceled"
    return {"status": kind, "export_task_id": status.export_task_id, "export": status.to_dict()}


def error_event(export_task_id: str, error: HubSpotExportError) -> dict[str, Any]:
    return {
        "status": "error",
        "export_task_id": export_task_id,
        "message": str(error),
        "status_code": error.status_code,
        "category": error.category,
        "retryable": error.retryable,
    }


def timeout_event(export_task_id: str, timeout: float) -> dict[str, Any]:
    return {
        "status": "timeout",
        "export_task_id": export_task_id,
        "message": f"Export {export_task_id} did not finish within the sensor's timeout of {timeout:g} s.",
    }


def complete_from_event(event: Any, export_task_id: str, *, accept_errors: bool, log: Any) -> dict[str, Any]:
    """What a deferred wait resumes with: the final status, or the failure the event reports."""
    event = check_event(event, export_task_id)
    kind = event["status"]
    if kind in ("success", "canceled"):
        return finish(event["export"], accept_errors=accept_errors, log=log)
    if kind == "timeout":
        raise HubSpotExportTimeoutError(event["message"])
    raise HubSpotExportError(
        str(event.get("message")), status_code=event.get("status_code"), category=event.get("category")
    )


def check_event(event: Any, expected_export_task_id: str | None = None) -> dict[str, Any]:
    """Refuse an event that is not one of ours: fail closed rather than succeed on nonsense."""
    if not isinstance(event, Mapping) or event.get("status") not in EVENT_STATUSES:
        raise HubSpotExportError(f"Unexpected trigger event for a HubSpot export: {str(event)[:200]!r}.")
    # "export_task_id" at the top since 0.1.0; a nested export dict of 0.1.0's is read by finish().
    expected = expected_export_task_id
    if expected is not None and str(event.get("export_task_id")) != str(expected):
        raise HubSpotExportError(
            f"Trigger event is for export {event.get('export_task_id')!r}, not {expected!r}."
        )
    if event["status"] in ("success", "canceled") and not isinstance(event.get("export"), Mapping):
        raise HubSpotExportError("Trigger event has no export status.")
    return dict(event)
