"""``run()`` of both hooks: a call to any HubSpot endpoint (objects, lists, properties...) described
as data, with the same checks on both transports. No I/O.

The token goes with every such call, so the endpoint must be a path on the connection's API host:
absolute URLs, ``//host`` and caller-set ``Authorization`` or ``Host`` headers are refused.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

from airflow_provider_hubexport.api import ApiRequest
from airflow_provider_hubexport.exceptions import HubSpotExportRequestError

METHODS = ("GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE")
# Safe to resend after HubSpot may have acted: what HTTP calls idempotent. POST and PATCH are not.
IDEMPOTENT_METHODS = ("GET", "HEAD", "OPTIONS", "PUT", "DELETE")
_RESERVED_HEADERS = ("authorization", "host", "cookie")
_HOW = "HubSpotHook.run / HubSpotAsyncHook.run"


@dataclass(frozen=True)
class EndpointRequest(ApiRequest):
    """An :class:`ApiRequest` with the caller's own headers."""

    headers: Mapping[str, str] = field(default_factory=dict)


def endpoint_path(endpoint: str | None) -> str:
    """A path on the API host, or a refusal: the token must never leave for another host."""
    text = (endpoint or "").strip()
    if not text:
        raise HubSpotExportRequestError(f"{_HOW} needs an endpoint, for example '/crm/v3/objects/contacts'.")
    parts = urlsplit(text)
    if parts.scheme or parts.netloc or text.startswith("//") or "\\" in text:
        raise HubSpotExportRequestError(
            "The endpoint must be a path on the connection's API host (like '/crm/v3/objects/contacts'), "
            "not a URL: the hook sends the HubSpot token with every call."
        )
    if any(ord(c) < 0x21 or c == "\x7f" for c in text):
        raise HubSpotExportRequestError(
            "The endpoint must not contain spaces or control characters: pass query values as data= "
            "(a dict), which the hook encodes."
        )
    return text if text.startswith("/") else "/" + text


def endpoint_request(
    endpoint: str | None,
    method: str,
    data: Any = None,
    json_body: Any = None,
    headers: Mapping[str, Any] | None = None,
    extra_options: Mapping[str, Any] | None = None,
    request_kwargs: Mapping[str, Any] | None = None,
) -> EndpointRequest:
    """Build what ``run()`` sends. ``data`` is the query for GET/HEAD/DELETE/OPTIONS and the JSON
    body otherwise (HubSpot's APIs take JSON); ``json_body`` is always the body."""
    verb = str(method or "GET").upper()
    if verb not in METHODS:
        raise HubSpotExportRequestError(f"HTTP method must be one of {', '.join(METHODS)}; got {method!r}.")
    if extra_options:
        raise HubSpotExportRequestError(
            f"{_HOW} takes no extra_options ({', '.join(sorted(extra_options))}): drop them; timeouts, "
            "retries, redirects (never followed) and TLS come from the HubSpot connection."
        )
    if request_kwargs:
        raise HubSpotExportRequestError(
            f"{_HOW} does not take {', '.join(sorted(request_kwargs))}: pass the query or body as data= "
            "or json=, and headers as headers=."
        )
    path = endpoint_path(endpoint)
    body = json_body
    if data is not None:
        if verb in ("GET", "HEAD", "DELETE", "OPTIONS"):
            if not isinstance(data, Mapping):
                raise HubSpotExportRequestError(
                    f"data for a {verb} is its query: pass a dict such as {{'limit': 10}}, got "
                    f"{type(data).__name__}."
                )
            path += ("&" if "?" in path else "?") + urlencode(data, doseq=True)
        elif body is not None:
            raise HubSpotExportRequestError("Pass the body as data= or as json=, not both.")
        elif isinstance(data, (str, bytes)):
            try:
                body = json.loads(data)
            except ValueError:
                raise HubSpotExportRequestError(
                    "data given as a string must be JSON (HubSpot's APIs take JSON bodies): pass a dict "
                    "as json= instead."
                ) from None
        else:
            body = data
    own_headers = {str(k): str(v) for k, v in (headers or {}).items()}
    reserved = [k for k in own_headers if k.lower() in _RESERVED_HEADERS]
    if reserved:
        raise HubSpotExportRequestError(
            f"{_HOW} sets {', '.join(reserved)} itself: drop the header; the token comes from the "
            "HubSpot connection."
        )
    return EndpointRequest(
        verb,
        path,
        json=body,
        describe=f"{verb} {urlsplit(path).path}",
        idempotent=verb in IDEMPOTENT_METHODS,
        headers=own_headers,
    )
