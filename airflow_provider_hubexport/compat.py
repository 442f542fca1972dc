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
- ``mask_secret`` on 3.0 under ``dag.test()`` sends the secret to an in-process supervisor whose
  comms log the message at DEBUG in clear (Airflow's own masking of a connection password too):
  :func:`quiet_secret_messages` masks such messages in-process without the log line, before any
  connection is read.
- ``amask_secret`` (the triggerer's event-loop-safe variant) from 3.3.
- 3.0's ``dag.test()`` returns a sensor's first reschedule date as a string:
  :func:`read_reschedule_dates` parses it.

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
    "amask_secret",
    "base_hook_class",
    "conf",
    "mask_secret",
    "quiet_secret_messages",
    "read_reschedule_dates",
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
    async hooks do."""
    quiet_secret_messages()
    hook = base_hook_class()
    if hasattr(hook, "aget_connection"):
        return await hook.aget_connection(conn_id)
    import asyncio

    return await asyncio.to_thread(hook.get_connection, conn_id)


def _told_in_clear() -> bool:
    """Airflow 3.0 under ``dag.test()``: the supervisor is this very process, and its in-process
    comms log every message they send at DEBUG, a ``MaskSecret`` with the secret in clear
    included. Telling it is pointless (same masker) and leaks; 3.1 and later, and 3.0's real
    supervisor, omit that message's body."""
    if AIRFLOW_V_3_1_PLUS:
        return False
    from airflow.sdk.execution_time import task_runner

    comms = getattr(task_runner, "SUPERVISOR_COMMS", None)
    return type(comms).__name__ == "InProcessSupervisorComms"


def quiet_secret_messages() -> None:
    """Airflow 3.0's ``dag.test()`` comms log each message they send at DEBUG, a ``MaskSecret``
    with its secret in clear included (Airflow's own masking of a connection's password sends one).
    The in-process supervisor's only answer to that message is to mask the value in this same
    process: do that, without the log line, as 3.0's real supervisor omits the body. Once per
    process, 3.0 only, before any connection is read."""
    global _quieted
    if AIRFLOW_V_3_1_PLUS or _quieted:
        return
    _quieted = True
    try:
        from airflow.sdk.execution_time.comms import MaskSecret
        from airflow.sdk.execution_time.secrets_masker import _secrets_masker
        from airflow.sdk.execution_time.supervisor import InProcessSupervisorComms
    except ImportError:  # pragma: no cover - not the 3.0 layout
        return
    send = InProcessSupervisorComms.send

    def send_quietly(self: Any, msg: Any) -> Any:
        if isinstance(msg, MaskSecret):
            _secrets_masker().add_mask(msg.value, msg.name)
            return None
        return send(self, msg)

    InProcessSupervisorComms.send = send_quietly  # type: ignore[method-assign]


_quieted = False


def mask_secret(secret: str) -> None:
    """Mask ``secret`` in this process and in the supervisor's output, leaking it nowhere first."""
    quiet_secret_messages()
    if not AIRFLOW_V_3_1_PLUS:  # 3.0 tells the supervisor first and masks here after: mask here first
        from airflow.sdk.execution_time.secrets_masker import _secrets_masker

        _secrets_masker().add_mask(secret)
        if _told_in_clear():
            return
    from airflow.sdk.log import mask_secret as _mask_secret

    _mask_secret(secret)


async def amask_secret(secret: str) -> None:
    """``mask_secret`` for code on an event loop (the triggerer)."""
    try:
        from airflow.sdk.log import amask_secret as _amask_secret
    except ImportError:  # Airflow < 3.3
        mask_secret(secret)
        return
    await _amask_secret(secret)
