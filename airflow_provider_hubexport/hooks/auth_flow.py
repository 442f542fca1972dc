"""The auth step of one HubSpot API call, with no I/O: which request to send next and what a
response means. Both transports (``HubSpotHook`` with requests, ``HubSpotAsyncHook`` with aiohttp)
drive it, in the style of h11: the flow says what to do, the transport does it and reports back.

One attempt of a call walks these states::

    start ──(OAuth, no fresh token)──> REFRESHING ──token_refreshed()──> SENT
    start ──(token at hand)──────────────────────────────────────────> SENT
    SENT ──response_received(401), OAuth, first time──> REFRESHING_AFTER_401 ──token_refreshed()──> RESENT
    SENT / RESENT ──response_received(any other, or a second 401)──> DONE

Steps handed to the transport: :class:`SendRequest` (send it, then call ``response_received``),
:class:`RefreshToken` (get a new token, single-flight per connection, then call
``token_refreshed``) and :class:`Finished` (the response just received is the attempt's answer).

The refresh itself is decided here too: :func:`refresh_needed` is asked under the transport's
single-flight lock (a ``threading.Lock`` per token cache key for the sync hook, an ``asyncio.Lock``
per key and event loop for the async one), so of a thousand callers that saw the same token
refused, one refreshes and the rest reuse its result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from airflow_provider_hubexport.api import AccessToken, ApiRequest, token_refresh_request
from airflow_provider_hubexport.hooks import auth as tokens
from airflow_provider_hubexport.hooks.connection import HubSpotConnectionSettings


@dataclass(frozen=True)
class SendRequest:
    """Send ``request`` with these headers (Authorization only when the request is authenticated)."""

    request: ApiRequest
    token: str | None = field(repr=False)

    @property
    def headers(self) -> dict[str, str]:
        headers = {str(k): str(v) for k, v in (getattr(self.request, "headers", None) or {}).items()}
        if self.request.authenticated and self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers


@dataclass(frozen=True)
class RefreshToken:
    """Get a new access token; ``rejected`` is the token HubSpot just refused (None: none yet)."""

    rejected: str | None = field(repr=False)


@dataclass(frozen=True)
class Finished:
    """The last response received is this attempt's answer: map it, or hand it back."""

    status: int


# One Finished per status code, made once: a step is immutable, and a poll's answer is nearly
# always the same status (a triggerer's thousands of waits make one per poll otherwise).
_FINISHED: dict[int, Finished] = {}


def _finished(status: int) -> Finished:
    step = _FINISHED.get(status)
    if step is None:
        step = Finished(status)
        if len(_FINISHED) < 1000:  # HTTP statuses are three digits; anything else is not kept
            _FINISHED[status] = step
    return step


Step = Any  # SendRequest | RefreshToken | Finished


class AuthFlow:
    """The auth state machine of one attempt of one request (see the module's docstring)."""

    __slots__ = ("settings", "request", "state", "_sent_token")

    def __init__(self, settings: HubSpotConnectionSettings, request: ApiRequest) -> None:
        self.settings = settings
        self.request = request
        self.state = "start"
        self._sent_token: str | None = None

    def start(self) -> SendRequest | RefreshToken:
        if self.state != "start":
            raise RuntimeError(f"AuthFlow.start() in state {self.state}")
        if self.request.authenticated and tokens.needs_refresh(self.settings):
            self.state = "refreshing"
            return RefreshToken(rejected=None)
        return self._send("sent")

    def token_refreshed(self) -> SendRequest:
        if self.state == "refreshing":
            return self._send("sent")
        if self.state == "refreshing_after_401":
            return self._send("resent")
        raise RuntimeError(f"AuthFlow.token_refreshed() in state {self.state}")

    def response_received(self, status: int) -> RefreshToken | Finished:
        if self.state not in ("sent", "resent"):
            raise RuntimeError(f"AuthFlow.response_received() in state {self.state}")
        if status == 401 and self.state == "sent" and self.request.authenticated and self.settings.oauth:
            # Refresh once and resend once; a second 401 is final.
            tokens.forget_token(self.settings, self._sent_token)
            self.state = "refreshing_after_401"
            return RefreshToken(rejected=self._sent_token)
        self.state = "done"
        return _finished(status)

    def _send(self, state: str) -> SendRequest:
        self.state = state
        self._sent_token = tokens.cached_token(self.settings) if self.request.authenticated else None
        return SendRequest(self.request, self._sent_token)


def refresh_needed(settings: HubSpotConnectionSettings, rejected: str | None) -> bool:
    """Asked under the single-flight lock: is a refresh still needed, or did another caller do it?

    After a 401 only a cached OAuth token that is fresh and is not the one refused will do: the
    connection's own (stale) access token is never a reason to skip the refresh.
    """
    if rejected is None:
        return tokens.needs_refresh(settings)
    current = tokens.cached_oauth_token(settings)
    return current is None or current == rejected


def refresh_request(settings: HubSpotConnectionSettings) -> ApiRequest:
    return token_refresh_request(
        settings.client_id or "", settings.client_secret or "", settings.refresh_token or ""
    )


def accept_token(settings: HubSpotConnectionSettings, token: AccessToken) -> list[str]:
    """Cache a refreshed token; return what the transport must register with the secrets masker."""
    tokens.store_token(settings, token)
    return tokens.not_yet_masked([token.token])
