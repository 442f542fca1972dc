"""Every difference between the Airflow 3 releases the provider supports, in one place.

The provider declares ``apache-airflow>=3.0`` and is tested on 3.0, 3.1, 3.2 and 3.3. It imports
Airflow's public names from here rather than from ``airflow.providers.common.compat.sdk``: the
common-compat release that has that module needs Python 3.11 and is newer than Airflow 3.0-3.3.

What differs, per version (all below are handled here):

- ``airflow.sdk.exceptions`` holds the task exceptions from 3.2; before, ``airflow.exceptions``.
- ``airflow.sdk.conf`` from 3.2; before, ``airflow.configuration.conf``.
- ``airflow.sdk.BaseHook`` from 3.1; on 3.0, ``airflow.hooks.base.BaseHook``.
- ``airflow.sdk.ResumableJobMixin`` (and the ``task_state_store`` it keeps the job id in) from
  3.3. Below it, :class:`ResumableJobMixin` here submits a new job on every try.
- ``BaseHook.aget_connection`` from 3.1: :func:`aget_connection`.
- 3.0's ``dag.test()`` returns a sensor's first reschedule date as a string:
  :func:`read_reschedule_dates` parses it.

Masking secrets, and the one patch of an Airflow internal (3.0's ``dag.test()`` comms), live in
``secret_masking.py``: they change what Airflow does, not which name to import.

This module imports nothing heavy: operator and sensor modules, which DAG files import on every
parse, import it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, BaseSensorOperator, PokeReturnValue
from airflow.sdk.bases.operator import BaseOperatorMeta

try:  # Airflow >= 3.2
    from airflow.sdk.exceptions import (
        AirflowException,
        AirflowFailException,
        AirflowRescheduleException,
        AirflowSensorTimeout,
        AirflowSkipException,
        TaskDeferralError,
        TaskDeferralTimeout,
    )
except ImportError:  # Airflow 3.0, 3.1
    from airflow.exceptions import (  # type: ignore[no-redef]
        AirflowException,
        AirflowFailException,
        AirflowRescheduleException,
        AirflowSensorTimeout,
        AirflowSkipException,
        TaskDeferralError,
        TaskDeferralTimeout,
    )

try:  # Airflow >= 3.2
    from airflow.sdk import conf
except ImportError:  # Airflow 3.0, 3.1
    from airflow.configuration import conf  # type: ignore[no-redef]

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = [
    "AIRFLOW_V_3_1_PLUS",
    "AIRFLOW_V_3_3_PLUS",
    "AirflowException",
    "AirflowFailException",
    "AirflowRescheduleException",
    "AirflowSensorTimeout",
    "AirflowSkipException",
    "BaseOperator",
    "BaseOperatorMeta",
    "BaseSensorOperator",
    "HAS_RESUMABLE_JOBS",
    "PokeReturnValue",
    "ResumableJobMixin",
    "TaskDeferralError",
    "TaskDeferralTimeout",
    "aget_connection",
    "base_hook_class",
    "conf",
    "read_reschedule_dates",
    "schedule_fields",
]


def _version() -> tuple[int, int]:
    from airflow import __version__

    major, minor = (__version__.split(".") + ["0"])[:2]
    return int(major), int("".join(c for c in minor if c.isdigit()) or 0)


AIRFLOW_VERSION = _version()
AIRFLOW_V_3_1_PLUS = AIRFLOW_VERSION >= (3, 1)
AIRFLOW_V_3_3_PLUS = AIRFLOW_VERSION >= (3, 3)

try:  # Airflow >= 3.3
    from airflow.sdk import ResumableJobMixin

    HAS_RESUMABLE_JOBS = True
except ImportError:  # Airflow < 3.3: no task_state_store, so a retry cannot find the job it started
    HAS_RESUMABLE_JOBS = False

    class ResumableJobMixin:  # type: ignore[no-redef]
        """Stand-in for ``airflow.sdk.ResumableJobMixin`` below Airflow 3.3 (as common-compat's).

        There is no ``task_state_store`` to remember the job in, so every try submits a new job.
        """

        external_id_key: str = "remote_job_id"
        durable = False

        def execute_resumable(self, context: Context) -> Any:
            external_id = self.submit_job(context)  # type: ignore[attr-defined]
            self.poll_until_complete(external_id, context)  # type: ignore[attr-defined]
            return self.get_job_result(external_id, context)  # type: ignore[attr-defined]


def read_reschedule_dates(context: Any) -> None:
    """Airflow 3.0's in-process task supervisor (``dag.test()``) hands a sensor's first reschedule
    date back as a string, and the base sensor subtracts it from a datetime: every reschedule-mode
    sensor fails on its second try. Parse it, for this task instance only; 3.1 and later are fine."""
    if AIRFLOW_V_3_1_PLUS:
        return
    ti = context["ti"]
    original = ti.get_first_reschedule_date

    def parsed(ctx: Any) -> Any:
        value = original(ctx)
        if isinstance(value, str):
            from airflow.utils import timezone

            return timezone.parse(value)
        return value

    object.__setattr__(ti, "get_first_reschedule_date", parsed)


def base_hook_class() -> type:
    """``BaseHook``: ``airflow.sdk`` from 3.1, ``airflow.hooks.base`` on 3.0."""
    try:
        from airflow.sdk import BaseHook
    except ImportError:  # Airflow 3.0
        from airflow.hooks.base import BaseHook  # type: ignore[no-redef]
    return BaseHook


async def aget_connection(conn_id: str) -> Any:
    """``BaseHook.aget_connection`` (3.1+); on 3.0 the sync lookup, in a worker thread as 3.0's own
    async hooks do. Call ``secret_masking.guard_dag_test_comms()`` first (the async hook does)."""
    hook = base_hook_class()
    if hasattr(hook, "aget_connection"):
        return await hook.aget_connection(conn_id)
    import asyncio

    return await asyncio.to_thread(hook.get_connection, conn_id)


def schedule_fields(timetable: Any) -> dict[str, Any] | None:
    """A trigger timetable's schedule as ``{"expression", "timezone", "delta"}`` (raw, for
    ``window.Schedule.from_fields``); None for any other timetable (only trigger timetables have
    point intervals).

    From 3.2 the task sees the Task SDK's timetable definitions, with public ``expression``,
    ``timezone`` and ``delta`` attributes; on 3.0 and 3.1 the scheduler's classes, whose public face
    for these is ``serialize()``.
    """
    if type(timetable).__name__ not in ("CronTriggerTimetable", "DeltaTriggerTimetable"):
        return None
    if hasattr(timetable, "expression") or hasattr(timetable, "delta"):  # Airflow >= 3.2
        return {
            "expression": getattr(timetable, "expression", None),
            "timezone": getattr(timetable, "timezone", "UTC"),
            "delta": getattr(timetable, "delta", None),
        }
    fields = timetable.serialize()
    return {k: fields.get(k) for k in ("expression", "timezone", "delta")}
