"""The API host's credentials: Bearer tokens with scopes and expiry, and OAuth's refresh grant."""

from __future__ import annotations

import time
import uuid
from typing import Any

from aiohttp import web

from airflow_provider_hubexport.sandbox.wire import hubspot_error

EXPORT_SCOPE = "crm.export"
# What the properties and schemas APIs want (``catalog.read_scopes``): the sandbox's default token
# and the access tokens its OAuth grant issues have these besides the export scope.
SCHEMA_SCOPES = (
    "crm.schemas.contacts.read",
    "crm.schemas.companies.read",
    "crm.schemas.deals.read",
    "crm.schemas.custom.read",
)
DEFAULT_SCOPES = (EXPORT_SCOPE, *SCHEMA_SCOPES)


def check_bearer(
    tokens: dict[str, dict[str, Any]], header: str, scopes: tuple[str, ...] = (EXPORT_SCOPE,)
) -> web.Response | None:
    """None if the Authorization header holds a live token with one of ``scopes`` (none given: any
    live token), else HubSpot's error (401, or 403 MISSING_SCOPES naming ``scopes``)."""
    token = header[7:] if header.startswith("Bearer ") else None
    info = tokens.get(token or "")
    if info is None:
        return hubspot_error(
            401,
            "Authentication credentials not found. This API supports OAuth 2.0 authentication and you "
            "can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
            "INVALID_AUTHENTICATION",
        )
    if info["expires"] is not None and info["expires"] <= time.time():
        return hubspot_error(
            401,
            "The OAuth token used to make this call expired 0 second(s) ago.",
            "EXPIRED_AUTHENTICATION",
        )
    if scopes and not set(scopes) & set(info["scopes"]):
        return hubspot_error(
            403,
            "This app hasn't been granted all required scopes to make this call. Read more about "
            "required scopes here: https://developers.hubspot.com/scopes.",
            "MISSING_SCOPES",
            errors=[
                {
                    "message": "One or more of the following scopes are required.",
                    "context": {"requiredGranularScopes": list(scopes)},
                }
            ],
            links={"scopes": "https://developers.hubspot.com/scopes"},
        )
    return None


def refresh_grant(
    form: Any, tokens: dict[str, dict[str, Any]], oauth_client: tuple[str, str, str], ttl: int
) -> web.Response:
    """``POST /oauth/v1/token``: a new access token (added to ``tokens``) for the known client."""
    client_id, client_secret, refresh = oauth_client
    if (
        form.get("grant_type") != "refresh_token"
        or form.get("client_id") != client_id
        or form.get("client_secret") != client_secret
        or form.get("refresh_token") != refresh
    ):
        return web.json_response(
            {
                "status": "BAD_REFRESH_TOKEN",
                "message": "missing or unknown refresh token",
                "correlationId": str(uuid.uuid4()),
            },
            status=400,
        )
    access = f"sandbox-oauth-{uuid.uuid4().hex}"
    tokens[access] = {"scopes": set(DEFAULT_SCOPES), "expires": time.time() + ttl}
    return web.json_response(
        {"token_type": "bearer", "refresh_token": refresh, "access_token": access, "expires_in": ttl}
    )
