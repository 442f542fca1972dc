"""Reads a ``hubspot`` Airflow connection into settings both transports use. No I/O.

It is the single place that decides which host the token may be sent to: https always, plain http
only to a loopback address (the sandbox).
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_hubexport import __version__
from airflow_provider_hubexport.exceptions import HubSpotExportRequestError
from airflow_provider_hubexport.hooks.retry import RetryPolicy
from airflow_provider_hubexport.quota import DEFAULT_QUOTA_RETRY_INTERVAL, DEFAULT_QUOTA_WAIT_TIMEOUT
from airflow_provider_hubexport.validation import API_VERSIONS, DEFAULT_API_VERSION

DEFAULT_HOST = "https://api.hubapi.com"
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 60.0
SECRET_EXTRAS = ("client_secret", "refresh_token")
USER_AGENT = f"airflow-provider-hubexport/{__version__}"


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url_scheme(url: str, what: str, fix: str = "") -> None:
    """Refuse a URL the provider must not talk to: not http(s), or plain http off loopback."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HubSpotExportRequestError(f"{what} must be an http(s) URL with a host. {fix}".rstrip())
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise HubSpotExportRequestError(
            f"{what} uses plain http to {parts.hostname}, which would expose credentials on the network. "
            "Use https; plain http is allowed only for loopback hosts (127.0.0.1, ::1, localhost)."
        )


def _number(extras: dict[str, Any], key: str, default: float, *, integer: bool = False) -> Any:
    value = extras.get(key)
    if value in (None, ""):
        return default
    try:
        number = int(value) if integer else float(value)
    except (TypeError, ValueError):
        raise HubSpotExportRequestError(
            f"Connection extra {key!r} must be {'a whole number' if integer else 'a number'}, got {value!r}. "
            f"Give one such as {default:g}, or leave it empty for that default."
        )
    if number < 0:
        raise HubSpotExportRequestError(
            f"Connection extra {key!r} must not be negative, got {value!r}. Give 0 or more, or leave it "
            f"empty for the default {default:g}."
        )
    return number


def _portal_id(extras: dict[str, Any]) -> int | None:
    value = extras.get("portal_id")
    if value in (None, ""):
        return None
    try:
        portal = int(value)
    except (TypeError, ValueError):
        portal = 0
    if portal <= 0 or isinstance(value, bool):
        raise HubSpotExportRequestError(
            f"Connection extra 'portal_id' must be your HubSpot account's portal (hub) id, a positive "
            f"integer (HubSpot shows it in the account menu); got {value!r}. Leave it empty to have it "
            "read from HubSpot."
        )
    return portal


_TRUE_WORDS = ("true", "1", "yes", "on")
_FALSE_WORDS = ("false", "0", "no", "off")


def _boolean(value: Any) -> bool | None:
    """A flag as JSON, the connection form or an environment variable gives it: a bool, or one of
    the usual words in any case; None for anything else. One reading for every flag extra."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE_WORDS:
        return True
    if text in _FALSE_WORDS:
        return False
    return None


def _flag(extras: dict[str, Any], key: str, default: bool) -> bool:
    value = extras.get(key)
    if value in (None, ""):
        return default
    flag = _boolean(value)
    if flag is not None:
        return flag
    raise HubSpotExportRequestError(
        f"Connection extra {key!r} must be true or false, got {value!r}. Set one of those, or leave it "
        f"empty for the default ({str(default).lower()})."
    )


def _verify(extras: dict[str, Any], who: str) -> bool | str:
    """The ``verify`` extra, read once for both transports: True (check the API host's certificate
    against the system's CAs; the default), False (do not check), or the path of a CA bundle file
    or a CA folder that exists here. Anything else is refused now, before any request: requests
    would take the text ``"false"`` for a CA path, and aiohttp fail on it inside a trigger."""
    value = extras.get("verify")
    if value in (None, ""):
        return True
    flag = _boolean(value)
    if flag is not None:
        return flag
    if isinstance(value, str) and (os.path.isfile(value) or os.path.isdir(value)):
        return value
    raise HubSpotExportRequestError(
        f"{who}: extra 'verify' must be true, false or the path of a CA bundle (a PEM file or a CA "
        f"folder) that exists on this machine; got {value!r}. Leave it empty (or true) to check the "
        "API host's certificate against the system's CAs, give the path of your CA bundle, or set "
        "false to skip the check (only for a host you trust)."
    )


def base_url_of(host: str | None, schema: str | None, port: int | None) -> str:
    host = (host or "").strip() or DEFAULT_HOST
    if "://" not in host:
        scheme = schema if schema in ("http", "https") else "https"
        host = f"{scheme}://{host}"
    parts = urlsplit(host)
    netloc = parts.netloc
    if port and not parts.port:
        netloc = f"{netloc}:{port}"
    url = f"{parts.scheme}://{netloc}{parts.path}".rstrip("/")
    check_url_scheme(
        url,
        "The HubSpot connection's host",
        "Leave the host empty for https://api.hubapi.com, or give a URL like it.",
    )
    return url


@dataclass(frozen=True)
class HubSpotConnectionSettings:
    """What a hook or trigger needs from the connection; secrets are kept out of ``repr``."""

    base_url: str
    access_token: str | None = field(default=None, repr=False)
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    api_version: str = DEFAULT_API_VERSION
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # True, False or a CA bundle path that existed when the connection was read (see ``_verify``).
    verify: bool | str = True
    proxies: dict[str, str] | None = None
    # Resend a start that failed after HubSpot may have acted (500, 504, a timeout after sending)?
    resend_uncertain_start: bool = True
    # How a start refused for HubSpot's 30-a-day limit waits for the window (operators may override).
    quota_retry_interval: float = DEFAULT_QUOTA_RETRY_INTERVAL
    quota_wait_timeout: float = DEFAULT_QUOTA_WAIT_TIMEOUT
    # The account's portal (hub) id, if the connection says it: lineage then asks HubSpot nothing.
    portal_id: int | None = None

    @property
    def oauth(self) -> bool:
        return bool(self.client_id and self.client_secret and self.refresh_token)

    @property
    def secrets(self) -> list[str]:
        return [s for s in (self.access_token, self.client_secret, self.refresh_token) if s]

    @classmethod
    def from_connection(cls, conn: Any, conn_id: str | None = "hubspot_default") -> HubSpotConnectionSettings:
        """``conn_id`` names the connection in error messages; None says "This connection" (the
        API server tests a form under a random id of its own, which would only confuse)."""
        # A saved connection form writes every field it has, empty ones as null or "": absent.
        extras = {k: v for k, v in dict(conn.extra_dejson or {}).items() if v is not None and v != ""}
        who = "This connection" if conn_id is None else f"Connection {conn_id!r}"
        api_version = str(extras.get("api_version") or DEFAULT_API_VERSION)
        if api_version not in API_VERSIONS:
            raise HubSpotExportRequestError(
                f"{who}: extra 'api_version' must be one of {', '.join(API_VERSIONS)}; "
                f"got {api_version!r}. Leave it empty for {DEFAULT_API_VERSION}."
            )
        oauth_parts = {k: extras.get(k) or None for k in ("client_id", "client_secret", "refresh_token")}
        given = [k for k, v in oauth_parts.items() if v]
        if given and len(given) != 3:
            missing = sorted(set(oauth_parts) - set(given))
            raise HubSpotExportRequestError(
                f"{who}: OAuth refresh needs client_id, client_secret and refresh_token "
                f"in the extras; {', '.join(missing)} missing. Remove all three to use a private app token."
            )
        token = conn.password or None
        if not token and not given:
            raise HubSpotExportRequestError(
                f"{who} has no credentials: put a Service Key or a private app access token in the "
                "password field ('Access token'), or client_id, client_secret and refresh_token in the extras."
            )
        backoff = _number(extras, "retry_backoff_seconds", RetryPolicy.backoff_initial)
        retry = RetryPolicy(
            max_attempts=_number(extras, "retry_max_attempts", RetryPolicy.max_attempts, integer=True) or 1,
            max_seconds=_number(extras, "retry_max_seconds", RetryPolicy.max_seconds),
            backoff_initial=backoff,
            download_backoff_initial=backoff / 2,
        )
        verify = _verify(extras, who)
        resend_uncertain_start = _flag(extras, "resend_uncertain_start", True)
        proxies = extras.get("proxies") if isinstance(extras.get("proxies"), dict) else None
        return cls(
            base_url=base_url_of(conn.host, conn.schema, conn.port),
            access_token=token,
            client_id=oauth_parts["client_id"],
            client_secret=oauth_parts["client_secret"],
            refresh_token=oauth_parts["refresh_token"],
            api_version=api_version,
            connect_timeout=_number(extras, "connect_timeout", DEFAULT_CONNECT_TIMEOUT),
            read_timeout=_number(extras, "read_timeout", DEFAULT_READ_TIMEOUT),
            retry=retry,
            verify=verify,
            proxies=proxies,
            resend_uncertain_start=resend_uncertain_start,
            quota_retry_interval=_number(extras, "quota_retry_interval", DEFAULT_QUOTA_RETRY_INTERVAL),
            quota_wait_timeout=_number(extras, "quota_wait_timeout", DEFAULT_QUOTA_WAIT_TIMEOUT),
            portal_id=_portal_id(extras),
        )
