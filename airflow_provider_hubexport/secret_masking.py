"""Masking the connection's secrets on every Airflow minor, and the provider's one patch of an
Airflow internal.

The patch: Airflow 3.0's ``dag.test()`` runs each task with an in-process supervisor whose comms
log every message they send at DEBUG, the ``MaskSecret`` messages included, secret in clear
(Airflow's own masking of a connection's password sends one). A user debugging a DAG with
``dag.test()`` and DEBUG logging on 3.0 would see their token on the console. The only answer that
supervisor gives such a message is to mask the value in this same process, so
:func:`guard_dag_test_comms` makes its ``send`` do just that without the log line, as 3.0's real
supervisor omits the message's body.

It is installed only where it applies: Airflow 3.0, in a process whose task talks to an in-process
supervisor (``dag.test()``), and only before the provider reads a connection or masks a value
(:func:`guard_dag_test_comms` is called there and nowhere else). A worker, a triggerer, or any
process on 3.1 and later is never patched. Light imports only.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_hubexport.compat import AIRFLOW_V_3_1_PLUS

_guarded = False


def _in_process_comms() -> bool:
    """Airflow 3.0 under ``dag.test()``: the task's supervisor is this very process."""
    if AIRFLOW_V_3_1_PLUS:
        return False
    from airflow.sdk.execution_time import task_runner

    comms = getattr(task_runner, "SUPERVISOR_COMMS", None)
    return type(comms).__name__ == "InProcessSupervisorComms"


def guard_dag_test_comms() -> bool:
    """Install the 3.0 ``dag.test()`` patch if this process needs it; True when it is in place."""
    global _guarded
    if _guarded:
        return True
    if not _in_process_comms():
        return False
    try:
        from airflow.sdk.execution_time.comms import MaskSecret
        from airflow.sdk.execution_time.secrets_masker import _secrets_masker
        from airflow.sdk.execution_time.supervisor import InProcessSupervisorComms
    except ImportError:  # pragma: no cover - not the 3.0 layout
        return False
    send = InProcessSupervisorComms.send

    def send_quietly(self: Any, msg: Any) -> Any:
        if isinstance(msg, MaskSecret):
            _secrets_masker().add_mask(msg.value, msg.name)
            return None
        return send(self, msg)

    InProcessSupervisorComms.send = send_quietly  # type: ignore[method-assign]
    _guarded = True
    return True


def mask_secret(secret: str) -> None:
    """Mask ``secret`` in this process and in the supervisor's output, leaking it nowhere first."""
    if not AIRFLOW_V_3_1_PLUS:  # 3.0 tells the supervisor first and masks here after: mask here first
        from airflow.sdk.execution_time.secrets_masker import _secrets_masker

        _secrets_masker().add_mask(secret)
        if _in_process_comms():
            guard_dag_test_comms()
            return  # the in-process supervisor's answer would be this very mask
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
