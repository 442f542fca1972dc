"""Exceptions raised by the provider.

They subclass Airflow's own exceptions so that Airflow's machinery (``soft_fail``, retries, sensor
timeouts) treats them the way it treats any provider's failures. Every message is built from what
HubSpot said, never from request headers or signed URLs, so it is safe to log.
"""

from __future__ import annotations

from collections.abc import Sequence

from airflow_provider_hubexport.compat import AirflowException, AirflowFailException, AirflowSensorTimeout


class HubSpotExportError(AirflowException):
    """A HubSpot exports API call failed; the message names the cause and, where known, the fix.

    The fields hold what HubSpot's error body said, so callers can branch on them without parsing
    the message.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        category: str | None = None,
        sub_category: str | None = None,
        correlation_id: str | None = None,
        missing_scopes: Sequence[str] = (),
        errors: Sequence[str] = (),
        retryable: bool = False,
        retry_after: float | None = None,
        maybe_processed: bool = False,
        answered: bool = False,
    ) -> None:
        self.status_code = status_code
        self.category = category
        self.sub_category = sub_category
        self.correlation_id = correlation_id
        self.missing_scopes = list(missing_scopes)
        self.errors = list(errors)
        self.retryable = retryable
        self.retry_after = retry_after
        # The request reached HubSpot and may have taken effect (a 500/504, a read timeout, a reset
        # after sending): resending a non-idempotent call, like starting an export, could
        # start a second one.
        self.maybe_processed = maybe_processed
        # HubSpot answered 2xx (a body we could not read): it surely acted, so a resend of a start
        # surely starts a second export, whatever ``resend_uncertain_start`` says.
        self.answered = answered
        self.hubspot_message = message
        super().__init__(self._render(message))

    def _render(self, message: str) -> str:
        parts = [message]
        details = []
        if self.status_code is not None:
            details.append(f"HTTP {self.status_code}")
        if self.category:
            details.append(f"category={self.category}")
        if self.sub_category:
            details.append(f"subCategory={self.sub_category}")
        if self.missing_scopes:
            details.append(f"missing scopes={', '.join(self.missing_scopes)}")
        if self.correlation_id:
            details.append(f"correlationId={self.correlation_id}")
        if details:
            parts.append(f"({'; '.join(details)})")
        if self.errors:
            parts.append("HubSpot errors: " + " | ".join(self.errors))
        return " ".join(parts)

    def __reduce__(self):
        # Keep the structured fields when the exception crosses a process boundary.
        return (_rebuild, (type(self), self.hubspot_message, self.__dict__.copy()))


def _rebuild(cls: type[HubSpotExportError], message: str, state: dict) -> HubSpotExportError:
    exc = cls.__new__(cls)
    Exception.__init__(exc, message)
    exc.__dict__.update(state)
    exc.args = (exc._render(message),)
    return exc


class HubSpotExportLimitError(HubSpotExportError):
    """HubSpot refused to start an export: its limit of 30 exports per rolling 24 hours is reached.

    Its own type so callers can tell it from a burst 429 (which the hook waits out itself): seconds
    of backoff cannot help here, but waiting for the window can, which is what the start operators'
    ``wait_for_quota`` does.
    """


class HubSpotExportCanceledError(HubSpotExportError, AirflowFailException):
    """HubSpot canceled the export; retrying the same export cannot help.

    An ``AirflowFailException``, so the task fails without retries, and a sensor with
    ``soft_fail=True`` is skipped instead (Airflow's sensors skip on this type in every mode).
    """


class HubSpotExportTimeoutError(HubSpotExportError, AirflowSensorTimeout):
    """The export did not finish within the wait's timeout.

    An ``AirflowSensorTimeout``, so Airflow fails the task without retries, and a sensor with
    ``soft_fail=True`` is skipped instead.
    """


class HubSpotExportRequestError(HubSpotExportError, ValueError):
    """The input was refused before any request left the machine: the message names the field."""
