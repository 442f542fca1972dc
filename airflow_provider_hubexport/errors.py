"""HubSpot's error responses, read and mapped onto the public exception classes of exceptions.py.

Which exception, with which hint, and whether to try again. No I/O.
Import direction: validation <- api <- errors; this module imports api, nothing imports it back.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any

from airflow_provider_hubexport.api import decode_json, error_text
from airflow_provider_hubexport.exceptions import HubSpotExportError, HubSpotExportLimitError

_SCOPES_TEXT = re.compile(r"(?:missingScopes|requiredGranularScopes|requiredScopes)\s*=\s*\[([^\]]*)\]")
_SCOPE_KEYS = ("missingScopes", "requiredGranularScopes", "requiredScopes")


def _scopes_in(value: Any, found: list[str]) -> None:
    if isinstance(value, Mapping):
        for key in _SCOPE_KEYS:
            items = value.get(key)
            if isinstance(items, list):
                found.extend(str(s) for s in items)
            elif isinstance(items, str):
                found.extend(s.strip() for s in items.strip("[]").split(",") if s.strip())
    elif isinstance(value, str):
        for match in _SCOPES_TEXT.finditer(value):
            found.extend(s.strip() for s in match.group(1).split(",") if s.strip())


# Statuses HubSpot's edge answers without the application seeing the request.
NOT_REACHED = frozenset({502, 503, 521, 522, 523, 525, 526})


def find_missing_scopes(body: Any) -> list[str]:
    """HubSpot names missing scopes in several places; look in all of them."""
    found: list[str] = []
    if isinstance(body, Mapping):
        _scopes_in(body.get("context"), found)
        _scopes_in(body.get("message"), found)
        errors = body.get("errors")
        for err in errors if isinstance(errors, list) else []:
            if isinstance(err, Mapping):
                _scopes_in(err.get("context"), found)
                _scopes_in(err.get("message"), found)
    return list(dict.fromkeys(found))


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """How long HubSpot asked us to wait: Retry-After, else its rate-limit window."""
    lowered = {k.lower(): v for k, v in headers.items()}
    value = lowered.get("retry-after")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
            except (TypeError, ValueError):
                pass
    interval = lowered.get("x-hubspot-ratelimit-interval-milliseconds")
    if interval:
        try:
            return max(0.0, float(interval) / 1000.0)
        except ValueError:
            pass
    return None


_HINTS = {
    401: "Check the connection's access token (password field); for OAuth, check client_id, "
    "client_secret and refresh_token in the extras.",
    403: "Grant the app the crm.export scope (HubSpot > Settings > Integrations > Private apps > Scopes) "
    "and use the new token.",
    404: "Check the id: it must be the task id HubSpot returned when this export started, in this portal.",
    429: "HubSpot's rate limit was hit; lower the polling rate or wait for the limit window to pass.",
}


_DAILY_HINT = (
    "HubSpot's daily export limit was reached (30 exports per rolling 24 hours): the start operators "
    "wait for the window to free up (wait_for_quota, quota_retry_interval, quota_wait_timeout); a pool "
    "keeps DAGs from starting more exports than that."
)


def _is_daily_limit(data: Mapping[str, Any]) -> bool:
    marks = " ".join(str(data.get(k) or "") for k in ("subCategory", "policyName", "category", "message"))
    return "DAILY" in marks.upper() or "24 HOUR" in marks.upper()


def error_from_response(
    status_code: int, headers: Mapping[str, str], body: bytes | str, what: str
) -> HubSpotExportError:
    """Turn a non-2xx response into a HubSpotExportError that says what failed and how to fix it."""
    payload: Any = None
    try:
        payload = json.loads(body) if body else None
    except (ValueError, TypeError):
        payload = None
    data = payload if isinstance(payload, Mapping) else {}
    message = data.get("message")
    if not isinstance(message, str) or not message:
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body or "")
        message = " ".join(text.split())[:200] or "no error body"
    errors_raw = data.get("errors")
    errors = [error_text(e) for e in errors_raw] if isinstance(errors_raw, list) else []
    retryable = status_code == 429 or status_code >= 500
    # 429, 503 and the gateway's own errors (Cloudflare's 502 page, 521-523, 525-526: HubSpot's
    # application never saw the request) are safe to resend; other 5xx may come after it acted.
    maybe_processed = status_code >= 500 and status_code not in NOT_REACHED
    daily = status_code == 429 and _is_daily_limit(data)
    if daily:
        retryable = False  # seconds of backoff cannot help with a 24-hour window
    hint = _DAILY_HINT if daily else _HINTS.get(status_code, "")
    text = f"HubSpot {what} failed: {message}"
    if hint:
        text += f" {hint}"

    def opt(key: str) -> str | None:
        value = data.get(key)
        return str(value) if value not in (None, "") else None

    return (HubSpotExportLimitError if daily else HubSpotExportError)(
        text,
        status_code=status_code,
        category=opt("category") or opt("errorType"),
        sub_category=opt("subCategory"),
        correlation_id=opt("correlationId"),
        missing_scopes=find_missing_scopes(data),
        errors=errors,
        retryable=retryable,
        retry_after=retry_after_seconds(headers) if retryable else None,
        maybe_processed=maybe_processed,
    )


def read_response(status_code: int, headers: Mapping[str, str], body: bytes | str, what: str) -> Any:
    """The JSON body of a 2xx response, or the mapped error for anything else."""
    if 200 <= status_code < 300:
        return decode_json(body, what) if body else None
    raise error_from_response(status_code, headers, body, what)


def transient_error(what: str, cause: BaseException, *, sent: bool = True) -> HubSpotExportError:
    """A network failure (reset, timeout) as a retryable error; the cause's class, never its URL.

    ``sent=False`` when the connection never got as far as sending the request.
    """
    return HubSpotExportError(
        f"HubSpot {what} failed: {type(cause).__name__} talking to the API host.",
        retryable=True,
        maybe_processed=sent,
    )
