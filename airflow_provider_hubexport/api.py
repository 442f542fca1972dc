"""HubSpot's exports wire format: the requests to send and the responses (statuses, tokens) to read.
No I/O.

The sync hook (requests) and the async hook (aiohttp) both build their requests and read their
responses through these functions, so the two transports cannot drift apart.

Import direction: validation <- api <- errors; this module imports validation, never errors.

Ids. HubSpot's documentation names two: starting an export (``POST .../export/async``) answers
with an ``id`` it calls the export's *task* id, which the status call takes
(``GET .../export/async/tasks/{taskId}/status``); describing an export (``GET .../export/{exportId}``)
takes an *export* id. The provider calls the first ``export_task_id`` everywhere (XCom, events,
the hooks' parameters) and the second ``export_id``. Whether HubSpot gives an export the same
number for both is not verified against HubSpot: the sandbox serves both under one id, so the
tests cannot tell. The provider asks for an export's description under its task id only for
lineage (its record count, and what a download-only task exported), and does without it when
HubSpot answers 404.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from airflow_provider_hubexport.exceptions import HubSpotExportError, HubSpotExportRequestError
from airflow_provider_hubexport.validation import API_VERSIONS, validate_export_request, validate_id

STATUSES = ("PENDING", "PROCESSING", "COMPLETE", "CANCELED")
FINAL_STATUSES = ("COMPLETE", "CANCELED")


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
    # For a call that is not idempotent: resend it also when HubSpot may (not surely) have acted
    # (a 500/504, a timeout after sending), with a warning; a 2xx we could not read is never resent.
    resend_uncertain: bool = False


def _export_base(api_version: str) -> str:
    if api_version == "v3":
        return "/crm/v3/exports/export"
    if api_version in API_VERSIONS:
        return f"/crm/exports/{api_version}/export"
    raise HubSpotExportRequestError(
        f"Connection extra 'api_version' must be one of {', '.join(API_VERSIONS)}; got {api_version!r}. "
        "Leave it empty for v3."
    )


def start_export_request(
    api_version: str, export_request: Any, *, resend_uncertain: bool = True
) -> ApiRequest:
    body = validate_export_request(export_request)
    return ApiRequest(
        "POST",
        f"{_export_base(api_version)}/async",
        json=body,
        describe="start export",
        idempotent=False,
        resend_uncertain=resend_uncertain,
    )


def status_request(api_version: str, export_task_id: Any) -> ApiRequest:
    tid = validate_id(export_task_id, "export_task_id")
    return ApiRequest(
        "GET",
        f"{_export_base(api_version)}/async/tasks/{tid}/status",
        describe=f"status of export task {tid}",
    )


def get_export_request(api_version: str, export_id: Any) -> ApiRequest:
    """``GET .../export/{exportId}``, HubSpot's description of an export (see "Ids" above)."""
    eid = validate_id(export_id, "export_id")
    return ApiRequest("GET", f"{_export_base(api_version)}/{eid}", describe=f"export {eid}")


ACCOUNT_DETAILS_PATH = "/account-info/v3/details"


def account_details_request() -> ApiRequest:
    """The account's details; lineage names the HubSpot side by its ``portalId``."""
    return ApiRequest("GET", ACCOUNT_DETAILS_PATH, describe="account details")


def parse_portal_id(payload: Any) -> int:
    portal = payload.get("portalId") if isinstance(payload, Mapping) else None
    if isinstance(portal, bool) or not isinstance(portal, int) or portal <= 0:
        raise _malformed("account details", "no positive integer 'portalId'")
    return portal


# ---------------------------------------------------------------------------------------------
# What an export names: its object type (a custom object by name) and its properties ("ALL").
# ---------------------------------------------------------------------------------------------
# HubSpot's standard objects, by the names an export's objectType takes, and their objectTypeIds.
STANDARD_OBJECT_TYPES = {
    "CONTACT": "0-1",
    "COMPANY": "0-2",
    "DEAL": "0-3",
    "TICKET": "0-5",
    "PRODUCT": "0-7",
    "LINE_ITEM": "0-8",
    "QUOTE": "0-14",
    "TASK": "0-27",
    "NOTE": "0-46",
    "MEETING": "0-47",
    "CALL": "0-48",
    "EMAIL": "0-49",
    "LEAD": "0-136",
}
ALL_PROPERTIES = "ALL"
_TYPE_ID = re.compile(r"[0-9]+-[0-9]+")


def needs_schema_lookup(object_type: str) -> bool:
    """True for a name that is neither a standard object nor an objectTypeId (``2-1234567``): a
    custom object's name, which HubSpot's exports do not take."""
    text = object_type.strip()
    return text.upper() not in STANDARD_OBJECT_TYPES and not _TYPE_ID.fullmatch(text)


def normalize_object_type(object_type: str) -> str:
    """A standard object's name in capitals (``contact`` -> ``CONTACT``); an id as given."""
    text = object_type.strip()
    return text.upper() if text.upper() in STANDARD_OBJECT_TYPES else text


def properties_request(object_type: str) -> ApiRequest:
    """``GET /crm/v3/properties/{objectType}``: the object's properties, custom ones included, not
    archived ones."""
    text = object_type.strip()
    path_type = STANDARD_OBJECT_TYPES.get(text.upper(), text)
    if not _TYPE_ID.fullmatch(path_type):
        raise HubSpotExportRequestError(
            f"object_type {object_type!r} is neither a standard object (CONTACT, COMPANY, DEAL, ...) nor an "
            "objectTypeId such as 2-1234567: resolve a custom object's name first."
        )
    return ApiRequest(
        "GET", f"/crm/v3/properties/{path_type}?archived=false", describe=f"properties of {text}"
    )


def parse_property_names(payload: Any, object_type: str) -> list[str]:
    results = payload.get("results") if isinstance(payload, Mapping) else None
    if not isinstance(results, list):
        raise _malformed("properties", "no 'results' list")
    names = [
        p["name"]
        for p in results
        if isinstance(p, Mapping) and isinstance(p.get("name"), str) and p["name"] and not p.get("archived")
    ]
    if not names:
        raise HubSpotExportError(
            f"HubSpot listed no properties for {object_type}: check object_type, and that the token may "
            "read its properties (scope crm.schemas.<object>.read)."
        )
    return names


SCHEMAS_PATH = "/crm/v3/schemas"


def schemas_request() -> ApiRequest:
    """``GET /crm/v3/schemas``: the account's custom objects, to find one's objectTypeId by name."""
    return ApiRequest("GET", SCHEMAS_PATH, describe="custom object schemas")


def parse_custom_object_type(payload: Any, name: str) -> str:
    """The objectTypeId of the custom object whose ``name``, ``fullyQualifiedName`` or plural label
    is ``name`` (case-insensitive); refused, listing the names that exist, when none is."""
    results = payload.get("results") if isinstance(payload, Mapping) else None
    if not isinstance(results, list):
        raise _malformed("schemas", "no 'results' list")
    wanted = name.strip().casefold()
    known = []
    for schema in results:
        if not isinstance(schema, Mapping) or not isinstance(schema.get("objectTypeId"), str):
            continue
        labels = schema.get("labels") if isinstance(schema.get("labels"), Mapping) else {}
        names = [schema.get("name"), schema.get("fullyQualifiedName"), labels.get("plural")]
        names = [n for n in names if isinstance(n, str) and n]
        if wanted in {n.casefold() for n in names}:
            return schema["objectTypeId"]
        known.append(f"{names[0]} ({schema['objectTypeId']})" if names else schema["objectTypeId"])
    raise HubSpotExportRequestError(
        f"object_type {name!r} is not a standard object and no custom object of this account has that name, "
        f"fully qualified name or plural label. Custom objects: {', '.join(known) or 'none'}; standard "
        f"objects: {', '.join(STANDARD_OBJECT_TYPES)}."
    )


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


def error_text(err: Any) -> str:
    """One entry of HubSpot's ``errors`` list (in a status or an error body) as a line of text."""
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

    ``export_task_id`` is the id HubSpot returned when the export started (see "Ids" above), not
    Airflow's task id; whether it also is the ``exportId`` of ``GET .../export/{exportId}`` is not
    verified.

    ``result_url`` is a short-lived signed credential: it is left out of ``repr`` and ``to_dict``,
    so a status can be logged, put in XCom or sent in a trigger event without leaking it.
    """

    export_task_id: str
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
            "export_task_id": self.export_task_id,
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
        answered=True,
    )


def decode_json(body: bytes | str, what: str) -> Any:
    try:
        return json.loads(_json_text(body))
    except (ValueError, TypeError):
        return _raise(_malformed(what, "the body is not JSON"))


def _json_text(body: bytes | str) -> bytes | str:
    """UTF-8 bytes decoded here: ``json.loads(bytes)`` sniffs the encoding first and takes twice
    as long, on every poll of every wait. A BOM or a UTF-16/32 body (a NUL in the first two
    bytes) is left to that sniffing."""
    if (
        isinstance(body, bytes)
        and body[:1] not in (b"\xef", b"\xfe", b"\xff", b"\x00")
        and body[1:2] != b"\x00"
    ):
        try:
            return body.decode()
        except UnicodeDecodeError:
            pass
    return body


def _raise(exc: Exception) -> Any:
    raise exc


def parse_start_response(payload: Any) -> str:
    if not isinstance(payload, Mapping) or "id" not in payload:
        raise _malformed("start-export", "no 'id' field")
    try:
        return validate_id(payload["id"], "id")
    except HubSpotExportRequestError:
        raise _malformed("start-export", f"'id' is not an id: {str(payload['id'])[:40]!r}")


def parse_status(payload: Any, export_task_id: str, *, for_wait: bool = False) -> ExportStatus:
    """Read a status body; an unknown status is an error, not a reason to wait for ever.

    ``for_wait``: read only what a wait uses. Until the export is final that is the status alone
    (a triggerer polls thousands of exports, each answering PENDING or PROCESSING many times), and
    never the signed URL (a download asks for a fresh one).
    """
    if not (type(payload) is dict or isinstance(payload, Mapping)) or "status" not in payload:
        raise _malformed("export status", "no 'status' field")
    status = payload["status"]
    if status not in STATUSES:
        raise HubSpotExportError(
            f"HubSpot reported an unknown status {str(status)[:40]!r} for export task {export_task_id}; "
            f"expected one of {', '.join(STATUSES)}. Upgrade airflow-provider-hubexport if HubSpot "
            "added a new status."
        )
    if for_wait and status not in FINAL_STATUSES:
        return ExportStatus(export_task_id=export_task_id, status=status)
    errors_raw = payload.get("errors") or []
    errors = [error_text(e) for e in errors_raw] if isinstance(errors_raw, list) else [error_text(errors_raw)]
    num_errors = payload.get("numErrors")
    if not isinstance(num_errors, int) or isinstance(num_errors, bool):
        num_errors = len(errors)
    result = payload.get("result")
    if status == "COMPLETE" and not (isinstance(result, str) and result.startswith(("https://", "http://"))):
        # An empty or relative 'result' would only fail later, at the download, with a vaguer error.
        raise _malformed("export status", "COMPLETE without a 'result' URL")
    return ExportStatus(
        export_task_id=export_task_id,
        status=status,
        result_url=result if isinstance(result, str) and not for_wait else None,
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
