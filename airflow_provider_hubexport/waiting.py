"""Check once, then defer or wait: the one routine the sensor and the all-in-one operator share.

Both check the status before deferring (a finished export needs no trigger), both treat a
transient error in that check as "not yet" (the trigger polls again), and both defer to the same
trigger with the same deadlines. Light imports only: DAG files import the sensor and operators.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, NoReturn

from airflow_provider_hubexport.api import ExportStatus
from airflow_provider_hubexport.exceptions import HubSpotExportError, HubSpotExportTimeoutError
from airflow_provider_hubexport.polling import DEFERRAL_TIMEOUT_MARGIN, PollState, finish, timeout_event


def check_once(
    get_status: Callable[[], ExportStatus], state: PollState, *, accept_errors: bool
) -> dict[str, Any] | None:
    """The final status (or the failure it deserves), or None while the export runs or after an
    error the wait tolerates; a permanent error, or one transient error too many, is raised."""
    try:
        status = state.seen(get_status())
    except HubSpotExportError as err:
        state.failed(err)
        return None
    if not status.is_final:
        return None
    return finish(status.to_dict(), accept_errors=accept_errors, log=state.log)


def wait_for_export(
    get_status: Callable[[], ExportStatus],
    state: PollState,
    *,
    timeout: float,
    accept_errors: bool,
    sleep: Callable[[float], Any] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Poll in this process until the export is final: the all-in-one operator's non-deferrable wait."""
    started = clock()
    while True:
        done = check_once(get_status, state, accept_errors=accept_errors)
        if done is not None:
            return done
        elapsed = clock() - started
        if elapsed >= timeout:
            raise HubSpotExportTimeoutError(timeout_event(state.export_task_id, timeout)["message"])
        sleep(state.next_wait(elapsed, timeout - elapsed))


def defer_to_trigger(
    task: Any,
    state: PollState,
    conn_id: str,
    *,
    timeout: float,
    method_name: str = "execute_complete",
) -> NoReturn:
    """Hand the wait to the triggerer; the scheduler's own deadline leaves the trigger time to
    report its timeout first."""
    from airflow_provider_hubexport.triggers.export import HubSpotExportTrigger

    task.defer(
        trigger=HubSpotExportTrigger.starting_now(
            state.export_task_id,
            conn_id,
            state.schedule,
            timeout=timeout,
            max_transient_errors=state.max_transient_errors,
            last_status=state.last_status,
        ),
        method_name=method_name,
        timeout=timedelta(seconds=timeout + DEFERRAL_TIMEOUT_MARGIN),
    )
    raise AssertionError("defer() returned")  # pragma: no cover - defer always raises
