"""Waits for a HubSpot export to finish, in poke, reschedule or deferrable mode.

DAG files import this module on every parse: it imports no HTTP library and not the hook; those
load when the sensor runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow_provider_hubexport.compat import (
    AirflowRescheduleException,
    AirflowSensorTimeout,
    AirflowSkipException,
    BaseOperator,
    BaseSensorOperator,
    PokeReturnValue,
    TaskDeferralTimeout,
    conf,
    read_reschedule_dates,
)
from airflow_provider_hubexport.exceptions import HubSpotExportCanceledError
from airflow_provider_hubexport.lazy_hook import LazyHubSpotHook
from airflow_provider_hubexport.polling import (
    DEFAULT_MAX_TRANSIENT_ERRORS,
    DEFAULT_POLL_INTERVAL,
    DEFAULT_TIMEOUT,
    PollState,
    complete_from_event,
    poll_schedule,
)
from airflow_provider_hubexport.validation import validate_id
from airflow_provider_hubexport.wait_memory import WaitMemory
from airflow_provider_hubexport.waiting import check_once, defer_to_trigger

if TYPE_CHECKING:
    from airflow.sdk import Context


class HubSpotExportSensor(LazyHubSpotHook, BaseSensorOperator):
    """Waits until a HubSpot export is COMPLETE (success) or CANCELED (failure, or skip with
    ``soft_fail``).

    The XCom value is the final status as a dict (``export_task_id``, ``status``, ``num_errors``,
    ``errors`` and the timestamps), without the signed result URL: it is a short-lived credential,
    and the download step asks HubSpot for a fresh one.

    Polls start ``poke_interval`` apart and grow by ``backoff_factor`` up to ``max_poke_interval``,
    so a two-hour export costs tens of status calls, not hundreds; a 429's ``Retry-After`` is
    respected. Transient errors (429, 5xx, timeouts) are retried by the hook and then by the next
    poll, up to ``max_transient_errors`` polls in a row; permanent ones (401, 403, 404, a bad id)
    fail at once, even with ``soft_fail``, which skips only a canceled export or a timeout
    (``never_fail`` skips on any failure, in every mode). In reschedule mode each poke is a new
    process: the count of errors in a row is kept in the metadata database between pokes
    (``wait_memory``: the task's ``task_state_store`` on Airflow 3.3, a Variable before).

    :param export_task_id: the task id from the start task (templated), e.g.
        ``"{{ ti.xcom_pull(task_ids='start_export') }}"``.
    :param hubspot_conn_id: the ``hubspot`` connection (templated).
    :param deferrable: wait on the triggerer and free the worker slot (default from
        ``[operators] default_deferrable``).
    :param accept_errors: accept a COMPLETE export with ``numErrors > 0`` (with a warning) instead of failing.
    :param backoff_factor: growth of the interval between polls (1: a steady interval).
    :param max_poke_interval: the longest interval between polls, in seconds or a ``timedelta``.
    :param exponential_backoff: BaseSensorOperator's switch, honoured in HubSpot's terms: False
        polls at a steady ``poke_interval`` (``backoff_factor=1``); True or unset grows the
        interval by ``backoff_factor``.
    :param max_wait: BaseSensorOperator's name for ``max_poke_interval``; give one of the two.
    :param max_transient_errors: transient poll failures tolerated in a row.
    :param timeout: give up after this many seconds (default 24 h); honoured in every mode.
    """

    template_fields: Sequence[str] = ("export_task_id", "hubspot_conn_id")
    ui_color = "#ff7a59"

    def __init__(
        self,
        *,
        export_task_id: str | int,
        hubspot_conn_id: str = "hubspot_default",
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poke_interval: float | timedelta = DEFAULT_POLL_INTERVAL,
        backoff_factor: float | None = None,
        max_poke_interval: float | timedelta | None = None,
        timeout: float | timedelta = DEFAULT_TIMEOUT,
        accept_errors: bool = False,
        max_transient_errors: int = DEFAULT_MAX_TRANSIENT_ERRORS,
        exponential_backoff: bool | None = None,
        max_wait: float | timedelta | None = None,
        **kwargs: Any,
    ) -> None:
        # The base's exponential_backoff and max_wait would be ignored by this sensor's own
        # schedule: they are read into it here instead (poll_schedule refuses a contradiction).
        super().__init__(poke_interval=poke_interval, timeout=timeout, **kwargs)
        self.export_task_id = export_task_id
        self.hubspot_conn_id = hubspot_conn_id
        self.deferrable = deferrable
        self.schedule = poll_schedule(
            self.poke_interval,
            backoff_factor,
            max_poke_interval,
            exponential_backoff=exponential_backoff,
            max_wait=max_wait,
        )
        self.backoff_factor = self.schedule.factor
        self.max_poke_interval = self.schedule.maximum
        self.accept_errors = accept_errors
        self.max_transient_errors = max_transient_errors
        self._state = PollState(
            str(export_task_id), self.schedule, max_transient_errors=max_transient_errors, log=self.log
        )
        self._memory: WaitMemory | None = None

    # -- poke and reschedule modes ---------------------------------------------------------------
    def poke(self, context: Context) -> bool | PokeReturnValue:
        memory = self._memory
        if memory is not None:  # reschedule mode: this object may be new, the wait is not
            self._state.restore(memory.load())
        done = check_once(
            lambda: self.hook.get_export_status(self.export_task_id),
            self._state,
            accept_errors=self.accept_errors,
        )
        if memory is not None and done is None:
            memory.save(self._state.remembered())
        return False if done is None else PokeReturnValue(is_done=True, xcom_value=done)

    def _get_next_poke_interval(self, started_at: Any, run_duration: Any, poke_count: int) -> float:
        # The one private override: the base's backoff knows neither Retry-After nor growth by
        # elapsed time; its signature is the same on 3.0 to 3.3, which the version legs prove.
        # Growth by elapsed time, not poke count: correct across reschedules, where
        # run_duration() counts from the first try's start.
        elapsed = run_duration()
        wait = self._state.next_wait(elapsed, self.timeout - elapsed)
        self.log.info("Next status check of export %s in %.0f s", self.export_task_id, wait)
        return wait

    # -- all modes -------------------------------------------------------------------------------
    def execute(self, context: Context) -> Any:
        self.export_task_id = validate_id(self.export_task_id, "export_task_id")
        self._state.export_task_id = self.export_task_id
        if not self.deferrable:
            if not self.reschedule:
                return super().execute(context)
            read_reschedule_dates(context)
            self._memory = WaitMemory(context, self.export_task_id, self.log)
            try:
                result = super().execute(context)
            except AirflowRescheduleException:
                raise  # the wait goes on in a new process: its memory stays
            except BaseException:
                self._memory.forget()
                raise
            self._memory.forget()
            return result
        # Check once before deferring: a finished export needs no trigger (and a trigger that
        # fires within seconds of the deferral is a known race in Airflow 3.3).
        try:
            done = self.poke(context)
        except HubSpotExportCanceledError as err:
            raise self._skip_instead(err)
        except Exception as err:  # as the base sensor's poke loop, and resume_execution below
            if self.never_fail:
                raise AirflowSkipException("Skipping due to never_fail is set to True.") from err
            raise
        if done:
            return done.xcom_value if isinstance(done, PokeReturnValue) else None
        defer_to_trigger(self, self._state, self.hubspot_conn_id, timeout=self.timeout)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """Turn the trigger's event into success, failure or (with soft_fail) skip.

        Everything needed travels in the event itself: ``dag.test()`` resumes with the event alone.
        """
        return complete_from_event(event, self.export_task_id, accept_errors=self.accept_errors, log=self.log)

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context) -> Any:
        # BaseSensorOperator skips on every AirflowException when soft_fail is set; an auth, scope
        # or not-found error must fail even then, as it does in poke mode.
        try:
            return BaseOperator.resume_execution(self, next_method, next_kwargs, context)
        except TaskDeferralTimeout as err:
            raise self._skip_instead(AirflowSensorTimeout(*err.args)) from err
        except (AirflowSensorTimeout, HubSpotExportCanceledError) as err:
            raise self._skip_instead(err) from err
        except Exception as err:
            if self.never_fail:
                raise AirflowSkipException("Skipping due to never_fail is set to True.") from err
            raise

    def _skip_instead(self, err: Exception) -> Exception:
        if self.soft_fail or self.never_fail:
            return AirflowSkipException(f"Skipping due to soft_fail: {err}")
        return err
