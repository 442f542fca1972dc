"""When to try a HubSpot call again and how long to wait: one policy for both transports.

The sync hook hands these to ``tenacity.Retrying`` and the async trigger to
``tenacity.AsyncRetrying``; only the transport differs.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Any

import tenacity

from airflow_provider_hubexport.exceptions import HubSpotExportError


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds on retries of one API call.

    429s wait as HubSpot asks (``Retry-After`` or its rate-limit window); 5xx and network errors
    back off exponentially with jitter. Both bounds hold: ``max_attempts`` calls at most, and no
    sleep that would end past ``max_seconds`` after the first attempt.
    """

    max_attempts: int = 6
    max_seconds: float = 300.0
    backoff_initial: float = 1.0
    backoff_max: float = 30.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("retry max_attempts must be at least 1")
        if self.max_seconds < 0:
            raise ValueError("retry max_seconds must not be negative")

    def _wait(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, HubSpotExportError) and exc.retry_after is not None:
            return min(exc.retry_after, self.max_seconds)
        return self._backoff(state)

    @property
    def _backoff(self) -> tenacity.wait.wait_base:
        return tenacity.wait_exponential_jitter(initial=self.backoff_initial, max=self.backoff_max, jitter=1)

    def tenacity_kwargs(self, log: logging.Logger | Any, what: str) -> dict[str, Any]:
        """Arguments for ``tenacity.Retrying`` / ``AsyncRetrying``; the last error is re-raised with
        how many attempts were spent, so a rate-limit storm ends in a sentence, not a RetryError."""

        def before_sleep(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.warning(
                "HubSpot %s: attempt %d failed (%s); retrying in %.1f s",
                what,
                state.attempt_number,
                exc,
                state.upcoming_sleep,
            )

        def give_up(state: tenacity.RetryCallState) -> Any:
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, HubSpotExportError) and exc.retryable:
                raise _exhausted(exc, state, self)
            if exc is not None:
                raise exc
            return state.outcome.result() if state.outcome else None

        return {
            "retry": tenacity.retry_if_exception(lambda e: isinstance(e, HubSpotExportError) and e.retryable),
            "stop": tenacity.stop_after_attempt(self.max_attempts)
            | tenacity.stop_before_delay(self.max_seconds),
            "wait": self._wait,
            "before_sleep": before_sleep,
            "retry_error_callback": give_up,
        }


def _exhausted(
    exc: HubSpotExportError, state: tenacity.RetryCallState, policy: RetryPolicy
) -> HubSpotExportError:
    elapsed = state.seconds_since_start or 0.0
    note = (
        f" Gave up after {state.attempt_number} attempt(s) in {elapsed:.1f} s "
        f"(retry budget: {policy.max_attempts} attempts, {policy.max_seconds:g} s; raise the connection "
        "extras retry_max_attempts / retry_max_seconds to wait longer)."
    )
    final = copy.copy(exc)
    final.hubspot_message = exc.hubspot_message + note
    final.args = (final._render(final.hubspot_message),)
    return final
