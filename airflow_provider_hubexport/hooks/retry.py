"""When to try a HubSpot call again and how long to wait: one policy for both transports.

The sync hook hands these to ``tenacity.Retrying`` and the async hook to
``tenacity.AsyncRetrying``; only the transport differs. Downloads (a fresh signed URL, then the
fetch) spend the same budget: ``retry_max_attempts`` attempts within ``retry_max_seconds``.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import tenacity

from airflow_provider_hubexport.api import ApiRequest
from airflow_provider_hubexport.exceptions import HubSpotExportError


def replaying(first: BaseException, attempt: Callable[..., Any]) -> Callable[..., Any]:
    """``attempt``, whose first call raises ``first``: the failure of the attempt a hook made before
    building any retry machinery, handed to tenacity as attempt 1 so the policy (waits, warnings,
    the budget and the closing note) sees every attempt."""
    pending = [first]

    def call(*args: Any, **kwargs: Any) -> Any:
        if pending:
            raise pending.pop()
        return attempt(*args, **kwargs)

    return call


def areplaying(first: BaseException, attempt: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """:func:`replaying` for a coroutine function (the async hook)."""
    pending = [first]

    async def call(*args: Any, **kwargs: Any) -> Any:
        if pending:
            raise pending.pop()
        return await attempt(*args, **kwargs)

    return call


def http_hook_budget(retry_limit: Any = None, retry_delay: Any = None) -> dict[str, Any]:
    """``HttpAsyncHook``'s ``retry_limit`` (attempts in all) and ``retry_delay`` (seconds between
    attempts) as :class:`RetryPolicy` fields, checked when the hook is made: they take effect
    (the attempts, and the first backoff, which doubles as the connection's does) rather than being
    accepted and ignored. None: the connection's."""
    budget: dict[str, Any] = {}
    if retry_limit is not None:
        if isinstance(retry_limit, bool) or not isinstance(retry_limit, int) or retry_limit < 1:
            raise ValueError(
                f"retry_limit must be a whole number of attempts, at least 1 (1 means no retry); got "
                f"{retry_limit!r}. Give one such as 3, or leave it out for the connection's "
                "retry_max_attempts."
            )
        budget["max_attempts"] = retry_limit
    if retry_delay is not None:
        if isinstance(retry_delay, bool) or not isinstance(retry_delay, (int, float)) or not retry_delay >= 0:
            raise ValueError(
                f"retry_delay must be a number of seconds, 0 or more; got {retry_delay!r}. Give one such "
                "as 1.0, or leave it out for the connection's retry_backoff_seconds."
            )
        budget["backoff_initial"] = float(retry_delay)
    return budget


def _with_note(exc: HubSpotExportError, note: str) -> HubSpotExportError:
    final = copy.copy(exc)
    final.hubspot_message = exc.hubspot_message + note
    final.args = (final._render(final.hubspot_message),)
    return final


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds on retries of one API call.

    429s wait as HubSpot asks (``Retry-After`` or its rate-limit window); 5xx and network errors
    back off exponentially with jitter. Both bounds hold: ``max_attempts`` calls at most, and no
    sleep that would end past ``max_seconds`` after the first attempt. A call that is not
    idempotent (starting an export) is resent only when HubSpot surely did not act on it (429, 503,
    a connection that never opened).
    """

    max_attempts: int = 6
    max_seconds: float = 300.0
    backoff_initial: float = 1.0
    backoff_max: float = 30.0
    download_backoff_initial: float = 0.5

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(
                f"retry max_attempts must be at least 1 (1 means no retry), got {self.max_attempts}."
            )
        if self.max_seconds < 0:
            raise ValueError(
                f"retry max_seconds must not be negative (0 means no retry), got {self.max_seconds}."
            )

    def _wait(self, state: tenacity.RetryCallState) -> float:
        return self._wait_with(
            state,
            tenacity.wait_exponential_jitter(
                initial=self.backoff_initial, max=self.backoff_max, jitter=self.backoff_initial
            ),
        )

    def _download_wait(self, state: tenacity.RetryCallState) -> float:
        # A fresh signed URL is one status call away: the first retries come quicker than an API call's.
        backoff = tenacity.wait_exponential(multiplier=self.download_backoff_initial, max=self.backoff_max)
        return self._wait_with(state, backoff)

    def _wait_with(self, state: tenacity.RetryCallState, backoff: Any) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, HubSpotExportError) and exc.retry_after is not None:
            return min(exc.retry_after, self.max_seconds)
        return backoff(state)

    def worth_another_try(self, err: BaseException, request: ApiRequest) -> bool:
        """Whether a failed attempt of ``request`` is sent again (within the budget)."""
        if not isinstance(err, HubSpotExportError) or not err.retryable:
            return False
        return self._resendable(err, request)

    @classmethod
    def may_resend(cls, err: BaseException, request: ApiRequest) -> bool:
        """Whether any retry may send ``request`` again after it failed with ``err``: False for a
        call that is not idempotent (a start, a POST) once HubSpot may have acted on it, unless the
        request allows an uncertain resend. The hook's own retries obey it through
        :meth:`worth_another_try`; a caller's retry around the hook (``run_with_advanced_retry``)
        must obey it too, or it would start the second export the hook refused to start."""
        return not isinstance(err, HubSpotExportError) or cls._resendable(err, request)

    def caller_retry(self, retry_args: dict[Any, Any], request: ApiRequest) -> tenacity.Retrying:
        """A caller's ``tenacity.Retrying(**retry_args)`` around one call of ``request``, which
        retries what the caller's ``retry`` says except what :meth:`may_resend` forbids."""
        caller = tenacity.Retrying(**retry_args)
        wanted = caller.retry

        def retry(state: tenacity.RetryCallState) -> bool:
            outcome = state.outcome
            if outcome is not None and outcome.failed and not self.may_resend(outcome.exception(), request):
                return False  # re-raised as it is: the "Not resent" error says why
            return bool(wanted(state))

        return caller.copy(retry=retry)

    def tenacity_kwargs(
        self, log: logging.Logger | Any, request: ApiRequest, *, started: float | None = None
    ) -> dict[str, Any]:
        """Arguments for ``tenacity.Retrying`` / ``AsyncRetrying`` around one API call.

        The last error is re-raised with a sentence on what was spent, so a rate-limit storm ends
        in a clear message, not a ``RetryError``. Pass what escapes through :meth:`final_error`.
        The hooks make a call's first attempt on its own and build these only after it failed
        (a poll that succeeds builds no retry machinery): they replay that failure as attempt 1
        (:func:`replaying`), and ``started`` (``time.monotonic()`` before it) keeps its time in
        the budget.
        """
        kwargs = self._kwargs(
            log,
            request.describe,
            lambda err: self.worth_another_try(err, request),
            self._wait,
            "attempt",
            warn=self._uncertain_warning(request),
        )
        if started is not None:

            def count_from_the_first_attempt(state: tenacity.RetryCallState) -> None:
                if state.attempt_number == 1:
                    state.start_time = started

            kwargs["before"] = count_from_the_first_attempt
        return kwargs

    @staticmethod
    def _resendable(err: HubSpotExportError, request: ApiRequest) -> bool:
        if request.idempotent or not err.maybe_processed:
            return True
        return request.resend_uncertain and not err.answered

    @staticmethod
    def _uncertain_warning(request: ApiRequest) -> Any:
        """A resend that may duplicate what HubSpot already did is said out loud, with its cost."""

        def warn(log: Any, exc: BaseException | None) -> None:
            if not request.idempotent and isinstance(exc, HubSpotExportError) and exc.maybe_processed:
                log.warning(
                    "HubSpot may have acted on the %s request already (%s): sending it again, which may "
                    "start a second export (each counts against the 30 a day; look for two exports of "
                    "this name in HubSpot's export history). Set resend_uncertain_start=False on the "
                    "connection or the operator to fail instead.",
                    request.describe,
                    f"HTTP {exc.status_code}" if exc.status_code else exc.hubspot_message,
                )

        return warn

    def download_kwargs(self, log: logging.Logger | Any, what: str) -> dict[str, Any]:
        """The same budget for a download's attempts (each a fresh signed URL and a fetch)."""

        def worth_another_try(err: BaseException) -> bool:
            return isinstance(err, HubSpotExportError) and err.retryable

        return self._kwargs(log, what, worth_another_try, self._download_wait, "download attempt")

    def _kwargs(
        self, log: Any, what: str, worth: Any, wait: Any, noun: str, *, warn: Any = None
    ) -> dict[str, Any]:
        def before_sleep(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            if warn is not None:
                warn(log, exc)
            log.warning(
                "HubSpot %s: %s %d failed (%s); retrying in %.1f s",
                what,
                noun,
                state.attempt_number,
                exc,
                state.upcoming_sleep,
            )

        def give_up(state: tenacity.RetryCallState) -> Any:
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, HubSpotExportError):
                elapsed = state.seconds_since_start or 0.0
                raise _with_note(
                    exc,
                    f" Gave up after {state.attempt_number} {noun}(s) in {elapsed:.1f} s (retry budget: "
                    f"{self.max_attempts} attempts, {self.max_seconds:g} s; raise the connection extras "
                    "retry_max_attempts / retry_max_seconds to wait longer).",
                )
            if exc is not None:
                raise exc
            return state.outcome.result() if state.outcome else None

        return {
            "retry": tenacity.retry_if_exception(worth),
            "stop": tenacity.stop_after_attempt(self.max_attempts)
            | tenacity.stop_before_delay(self.max_seconds),
            "wait": wait,
            "before_sleep": before_sleep,
            "retry_error_callback": give_up,
        }

    def final_error(self, exc: HubSpotExportError, request: ApiRequest) -> HubSpotExportError:
        """The error a call raises once retrying is over: a non-idempotent call that failed after
        HubSpot may have acted on it, and was not resent for that reason, says so."""
        if exc.retryable and not self._resendable(exc, request):
            return self.not_resent(exc, request.describe)
        return exc

    @staticmethod
    def not_resent(exc: HubSpotExportError, what: str) -> HubSpotExportError:
        """The error for a non-idempotent call that failed after HubSpot may have acted on it."""
        return _with_note(
            exc,
            f" Not resent: HubSpot may have acted on the {what} request already. If this was a start, "
            "check HubSpot for a new export before starting another (the daily limit is 30).",
        )
