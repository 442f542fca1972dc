"""HubSpot's exports wire format: requests, statuses, tokens and error bodies. No I/O.

This is the one place that knows HubSpot's JSON shapes and paths. The sync hook (requests) and the
async trigger (aiohttp) both build their requests and read their responses through these functions,
so the two transports cannot drift apart.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

from airflow_provider_hubexport.exceptions import HubSpotExportError, HubSpotExportRequestError

EXPORT_TYPES = ("VIEW", "LIST")
FORMATS = ("CSV", "XLS", "XLSX")
LANGUAGES = ("EN", "DE", "ES", "FR", "JA", "NL", "PT_BR", "IT", "PL", "SV", "FI", "ZH_TW", "DA_DK", "NO")
FILTER_OPERATORS = (
    "EQ",
    "NEQ",
    "LT",
    "LTE",
    "GT",
    "GTE",
    "BETWEEN",
    "IN",
    "NOT_IN",
    "HAS_PROPERTY",
    "NOT_HAS_PROPERTY",
    "CONTAINS_TOKEN",
    "NOT_CONTAINS_TOKEN",
)
# HubSpot's CRM search limits, which the export's publicCrmSearchRequest shares.
MAX_FILTER_GROUPS = 5
MAX_FILTERS_PER_GROUP = 6
MAX_FILTERS_TOTAL = 18

STATUSES = ("PENDING", "PROCESSING", "COMPLETE", "CANCELED")
FINAL_STATUSES = ("COMPLETE", "CANCELED")
API_VERSIONS = ("v3", "2026-03")
DEFAULT_API_VERSION = "v3"
# HubSpot ids are 64-bit; anything longer is not an id but an accident or an attack.
MAX_ID_DIGITS = 19


# ---------------------------------------------------------------------------------------------
# Input checks: run before any request leaves the machine.
# ---------------------------------------------------------------------------------------------
def validate_id(value: Any, field_name: str = "export_task_id") -> str:
    """Return a HubSpot id as a digit string, or refuse it with a message naming the field.

    Ids go into URL paths, so anything but plain digits (``../1``, ``1%2F..``) is refused rather
    than escaped.
    """
    if isinstance(value, bool) or value is None:
        raise HubSpotExportRequestError(
            f"{field_name} must be a positive integer (an int or a string of digits), got {value!r}."
        )
    if isinstance(value, int):
        text = str(value)
    elif isinstance(value, str):
        text = value.strip()
    else:
        raise HubSpotExportRequestError(
            f"{field_name} must be a positive integer (an int or a string of digits), "
            f"got a {type(value).__name__}."
        )
    if not text.isascii() or not text.isdigit() or int(text) <= 0 or len(text) > MAX_ID_DIGITS:
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise HubSpotExportRequestError(
            f"{field_name} must be a positive integer of at most {MAX_ID_DIGITS} digits, got {shown!r}. "
            "Pass the id HubSpot returned when the export started (the start task's XCom value)."
        )
    return str(int(text))


def _choice(request: Mapping[str, Any], key: str, allowed: tuple[str, ...], *, required: bool = True) -> None:
    value = request.get(key)
    if value is None and not required:
        return
    if value not in allowed:
        raise HubSpotExportRequestError(
            f"Export request field {key!r} must be one of {', '.join(allowed)}; got {value!r}."
        )


def _validate_filters(filters: Any, where: str) -> int:
    if not isinstance(filters, list):
        raise HubSpotExportRequestError(f"{where} must be a list of filters, got {type(filters).__name__}.")
    for i, flt in enumerate(filters):
        if not isinstance(flt, Mapping):
            raise HubSpotExportRequestError(f"{where}[{i}] must be an object with propertyName and operator.")
        if not isinstance(flt.get("propertyName"), str) or not flt.get("propertyName"):
            raise HubSpotExportRequestError(f"{where}[{i}].propertyName must be a non-empty string.")
        if flt.get("operator") not in FILTER_OPERATORS:
            raise HubSpotExportRequestError(
                f"{where}[{i}].operator must be one of {', '.join(FILTER_OPERATORS)}; "
                f"got {flt.get('operator')!r}."
            )
    return len(filters)


def _validate_search(search: Any) -> None:
    where = "publicCrmSearchRequest"
    if not isinstance(search, Mapping):
        raise HubSpotExportRequestError(f"{where} must be an object, got {type(search).__name__}.")
    total = 0
    if "filters" in search:
        total += _validate_filters(search["filters"], f"{where}.filters")
    if "filterGroups" in search:
        groups = search["filterGroups"]
        if not isinstance(groups, list):
            raise HubSpotExportRequestError(f"{where}.filterGroups must be a list.")
        if len(groups) > MAX_FILTER_GROUPS:
            raise HubSpotExportRequestError(
                f"{where}.filterGroups has {len(groups)} groups; HubSpot allows at most {MAX_FILTER_GROUPS}."
            )
        for i, group in enumerate(groups):
            if not isinstance(group, Mapping):
                raise HubSpotExportRequestError(f"{where}.filterGroups[{i}] must be an object with filters.")
            n = _validate_filters(group.get("filters", []), f"{where}.filterGroups[{i}].filters")
            if n > MAX_FILTERS_PER_GROUP:
                raise HubSpotExportRequestError(
                    f"{where}.filterGroups[{i}] has {n} filters; HubSpot allows at most "
                    f"{MAX_FILTERS_PER_GROUP} per group."
                )
            total += n
    if total > MAX_FILTERS_TOTAL:
        raise HubSpotExportRequestError(
            f"{where} has {total} filters in all; HubSpot allows at most {MAX_FILTERS_TOTAL}."
        )


def validate_export_request(request: Any) -> dict[str, Any]:
    """Check an export request in HubSpot's camelCase shape and return a copy to send.

    Only the fields HubSpot documents are checked; unknown keys pass through untouched, since
    HubSpot adds fields over time and a provider should not stand in the way of them.
    """
    if not isinstance(request, Mapping):
        raise HubSpotExportRequestError(
            f"The export request must be a dict in HubSpot's camelCase shape, got {type(request).__name__}."
        )
    _choice(request, "exportType", EXPORT_TYPES)
    _choice(request, "format", FORMATS)
    _choice(request, "language", LANGUAGES, required=False)
    object_type = request.get("objectType")
    if not isinstance(object_type, str) or not object_type.strip():
        raise HubSpotExportRequestError(
            "Export request field 'objectType' is required: a CRM object such as CONTACT, COMPANY, "
            f"DEAL or a custom object's id like 2-1234567; got {object_type!r}."
        )
    props = request.get("objectProperties")
    if not isinstance(props, list) or not props or not all(isinstance(p, str) and p.strip() for p in props):
        raise HubSpotExportRequestError(
            "Export request field 'objectProperties' must be a non-empty list of property names "
            f"(strings), for example ['email', 'firstname']; got {props!r}."
        )
    if request.get("exportType") == "LIST":
        list_id = request.get("listId")
        if list_id is None or list_id == "":
            raise HubSpotExportRequestError(
                "Export request field 'listId' is required when exportType is LIST: the id of the list to export."
            )
        validate_id(list_id, "listId")
    if "exportName" in request and not isinstance(request["exportName"], str):
        raise HubSpotExportRequestError("Export request field 'exportName' must be a string.")
    if "publicCrmSearchRequest" in request:
        _validate_search(request["publicCrmSearchRequest"])
    return json.loads(json.dumps(dict(request)))


# ---------------------------------------------------------------------------------------------
# Requests: what to send, independent of the transport that sends it.
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ApiRequest:
    """One HTTP call to the API host, described as data so either transport can send it."""

    method: str
    path: str
    json: Any = None
    form: Mapping[str, str] | None = field(default=None, repr=False)  # the OAuth refresh's secrets
    authenticated: bool = True
    describe: str = ""
    # Safe to send twice? Starting an export is not: a resend after HubSpot may have accepted it
    # would start a second export and spend the daily quota.
    idempotent: bool = True


def _export_base(api_version: str) -> str:
    if api_version == "v3":
        return "/crm/v3/exports/export"
    if api_version in API_VERSIONS:
        return f"/crm/exports/{api_version}/export"
    raise HubSpotExportRequestError(
        f"Connection extra 'api_version' must be one of {', '.join(API_VERSIONS)}; got {api_version!r}."
    )


def start_export_request(api_version: str, export_request: Any) -> ApiRequest:
    body = validate_export_request(export_request)
    return ApiRequest(
        "POST", f"{_export_base(api_version)}/async", json=body, describe="start export", idempotent=False
    )


def status_request(api_version: str, task_id: Any) -> ApiRequest:
    tid = validate_id(task_id, "export_task_id")
    return ApiRequest(
        "GET",
        f"{_export_base(api_version)}/async/tasks/{tid}/status",
        describe=f"status of export task {tid}",
    )


def get_export_request(api_version: str, export_id: Any) -> ApiRequest:
    eid = validate_id(export_id, "export_id")
    return ApiRequest("GET", f"{_export_base(api_version)}/{eid}", describe=f"export {eid}")


TOKEN_PATH = "/oauth/v1/token"


def token_refresh_request(client_id: str, client_secret: str, refresh_token: str) -> ApiRequest:
    return ApiRequest(
        "POST",
        TOKEN_PATH,
        form={
            "grant_type": "refresh_token",
            "client_id": client_id,
            "client_secret": client_secret,
            "refresh_token": refresh_token,
        },
        authenticated=False,
        describe="OAuth token refresh",
    )


# ---------------------------------------------------------------------------------------------
# Responses
# ---------------------------------------------------------------------------------------------
def _parse_time(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        from datetime import timezone

        try:
            return datetime.fromtimestamp(value / 1000, tz=timezone.utc)
        except (ValueError, OverflowError, OSError):  # out of datetime's range: not a real time
            return None
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


def _error_text(err: Any) -> str:
    if isinstance(err, Mapping):
        msg = str(err.get("message") or err.get("subCategory") or err.get("code") or "error")
        ctx = err.get("context")
        if isinstance(ctx, Mapping) and ctx:
            msg += " " + json.dumps(ctx, sort_keys=True, default=str)
        return msg
    return str(err)


@dataclass(frozen=True)
class ExportStatus:
    """An export task's status as HubSpot reported it.

    ``result_url`` is a short-lived signed credential: it is left out of ``repr`` and ``to_dict``,
    so a status can be logged, put in XCom or sent in a trigger event without leaking it.
    """

    task_id: str
    status: str
    result_url: str | None = field(default=None, repr=False)
    errors: list[str] = field(default_factory=list)
    num_errors: int = 0
    requested_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able view for XCom and trigger events; never holds the signed URL."""

        def iso(d: datetime | None) -> str | None:
            return d.isoformat() if d else None

        return {
            "export_id": self.task_id,
            "task_id": self.task_id,
            "status": self.status,
            "num_errors": self.num_errors,
            "errors": list(self.errors),
            "requested_at": iso(self.requested_at),
            "started_at": iso(self.started_at),
            "completed_at": iso(self.completed_at),
        }


def _malformed(what: str, detail: str) -> HubSpotExportError:
    # A 2xx we cannot read is worth another try of an idempotent call (HubSpot's edge occasionally
    # serves an HTML page), but HubSpot did answer: a start may have been accepted.
    return HubSpotExportError(
        f"HubSpot returned a malformed {what} response: {detail}. If it persists, HubSpot may have "
        "changed its API: upgrade airflow-provider-hubexport.",
        retryable=True,
        maybe_processed=True,
    )


def decode_json(body: bytes | str, what: str) -> Any:
    try:
        return json.loads(body)
    except (ValueError, TypeError):
        return _raise(_malformed(what, "the body is not JSON"))


def _raise(exc: Exception) -> Any:
    raise exc


def parse_start_response(payload: Any) -> str:
    if not isinstance(payload, Mapping) or "id" not in payload:
        raise _malformed("start-export", "no 'id' field")
    try:
        return validate_id(payload["id"], "id")
    except HubSpotExportRequestError:
        raise _malformed("start-export", f"'id' is not an id: {str(payload['id'])[:40]!r}")


def parse_status(payload: Any, task_id: str) -> ExportStatus:
    """Read a status body; an unknown status is an error, not a reason to wait for ever."""
    if not isinstance(payload, Mapping) or "status" not in payload:
        raise _malformed("export status", "no 'status' field")
    status = payload["status"]
    if status not in STATUSES:
        raise HubSpotExportError(
            f"HubSpot reported an unknown status {str(status)[:40]!r} for export task {task_id}; "
            f"expected one of {', '.join(STATUSES)}. Upgrade airflow-provider-hubexport if HubSpot "
            "added a new status."
        )
    errors_raw = payload.get("errors") or []
    errors = (
        [_error_text(e) for e in errors_raw] if isinstance(errors_raw, list) else [_error_text(errors_raw)]
    )
    num_errors = payload.get("numErrors")
    if not isinstance(num_errors, int) or isinstance(num_errors, bool):
        num_errors = len(errors)
    result = payload.get("result")
    if status == "COMPLETE" and not isinstance(result, str):
        raise _malformed("export status", "COMPLETE without a 'result' URL")
    return ExportStatus(
        task_id=task_id,
        status=status,
        result_url=result if isinstance(result, str) else None,
        errors=errors,
        num_errors=num_errors,
        requested_at=_parse_time(payload.get("requestedAt")),
        started_at=_parse_time(payload.get("startedAt")),
        completed_at=_parse_time(payload.get("completedAt")),
    )


def signed_url_parts(url: str) -> list[str]:
    """The pieces of a signed URL that are secret on their own, for the secrets masker: loggers
    (urllib3's, for one) print the path and query without the host."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    pieces = [url]
    if parts.query:
        pieces += [f"{parts.path}?{parts.query}", parts.query]
    return pieces


@dataclass(frozen=True)
class AccessToken:
    token: str = field(repr=False)
    expires_at: float  # time.monotonic() seconds

    def fresh(self, margin: float = 60.0) -> bool:
        return time.monotonic() < self.expires_at - margin


def parse_token_response(payload: Any) -> AccessToken:
    if not isinstance(payload, Mapping) or not isinstance(payload.get("access_token"), str):
        raise _malformed("OAuth token", "no 'access_token' field")
    expires_in = payload.get("expires_in", 1800)
    if not isinstance(expires_in, (int, float)) or isinstance(expires_in, bool) or expires_in <= 0:
        expires_in = 300
    return AccessToken(payload["access_token"], time.monotonic() + float(expires_in))


# ---------------------------------------------------------------------------------------------
# Errors: HubSpot's error bodies into one exception type, and whether to try again.
# ---------------------------------------------------------------------------------------------
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


def find_missing_scopes(body: Any) -> list[str]:
    """HubSpot names missing scopes in several places; look in all of them."""
    found: list[str] = []
    if isinstance(body, Mapping):
        _scopes_in(body.get("context"), found)
        _scopes_in(body.get("message"), found)
        for err in body.get("errors") or []:
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
    "HubSpot's daily export limit was reached (30 exports per rolling 24 hours): wait for the window to "
    "pass, and use a pool so DAGs do not start more exports than that."
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
    errors = [_error_text(e) for e in errors_raw] if isinstance(errors_raw, list) else []
    retryable = status_code == 429 or status_code >= 500
    # 429 and 503 mean HubSpot turned the request away; other 5xx may come after it was processed.
    maybe_processed = status_code >= 500 and status_code != 503
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

    return HubSpotExportError(
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
