"""The API host: its aiohttp app, the middleware every API request goes through (record, faults,
rate limit, auth) and the CRM Exports API's handlers (start, status, get export, OAuth token).
The properties and schemas APIs' handlers are ``catalog``'s; what an export holds is the CRM's."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from aiohttp import web

from airflow_provider_hubexport.sandbox import catalog, faults
from airflow_provider_hubexport.sandbox.auth import EXPORT_SCOPE, check_bearer, refresh_grant
from airflow_provider_hubexport.sandbox.crm import Crm
from airflow_provider_hubexport.sandbox.faults import Addresses, FaultBook, RateLimiter
from airflow_provider_hubexport.sandbox.files import FileHost
from airflow_provider_hubexport.sandbox.search import QueryError
from airflow_provider_hubexport.sandbox.state import MOVED_PREFIX, Export, ExportBook, ExportLimitReached
from airflow_provider_hubexport.sandbox.wire import Recorder, export_limit_error, hubspot_error, iso

VERSION_PREFIXES = ("/crm/v3/exports/export", "/crm/exports/{version}/export")
OAUTH_PATH = "/oauth/v1/token"
ACCOUNT_DETAILS_PATH = "/account-info/v3/details"
_STATE = {"PENDING": "ENQUEUED", "PROCESSING": "PROCESSING", "COMPLETE": "DONE", "CANCELED": "CANCELED"}


class ApiSettings(Addresses, Protocol):
    """What the API host reads from the sandbox, on each request (a test may change it while it runs)."""

    tokens: dict[str, dict[str, Any]]
    oauth_client: tuple[str, str, str]
    access_token_ttl: int
    rate_limit: tuple[int, float] | None
    rate_limit_retry_after: bool
    portal_id: int | None


def build_api_app(
    settings: ApiSettings,
    book: ExportBook,
    file_host: FileHost,
    crm: Crm,
    *,
    recorder: Recorder,
    fault_book: FaultBook,
    rate: RateLimiter,
) -> web.Application:
    """The API host's app over ``book``'s exports of ``crm``'s records; a completed export's file
    comes from ``file_host``.

    Each request is recorded, may be answered by an injected fault, then (but for OAuth's token
    endpoint) meets the rate limit and the Bearer check (the export scope; for the properties and
    schemas APIs, whose scopes depend on the object type, their handlers check the scopes)."""
    handlers = ApiHandlers(settings, book, file_host, crm)
    catalog_handlers = catalog.CatalogHandlers(settings, crm)

    @web.middleware
    async def api_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        await recorder.record(request, "api")
        answer = await faults.inject(fault_book, settings, "api", request)
        if answer is not None:
            return answer
        path = request.path.removeprefix(MOVED_PREFIX)
        if path != OAUTH_PATH:
            limited = rate.check(settings.rate_limit, settings.rate_limit_retry_after)
            if limited is not None:
                return limited
            scopes = () if path.startswith(catalog.PREFIXES) else (EXPORT_SCOPE,)
            denied = check_bearer(settings.tokens, request.headers.get("Authorization", ""), scopes)
            if denied is not None:
                return denied
        return await handler(request)

    api = web.Application(middlewares=[api_middleware], client_max_size=8 * 1024 * 1024)
    for moved in ("", MOVED_PREFIX):  # every resource also answers where a redirect fault points
        for prefix in VERSION_PREFIXES:
            api.router.add_post(f"{moved}{prefix}/async", handlers.start)
            api.router.add_get(f"{moved}{prefix}/async/tasks/{{task_id}}/status", handlers.status)
            api.router.add_get(f"{moved}{prefix}/{{export_id}}", handlers.get_export)
        api.router.add_post(f"{moved}{OAUTH_PATH}", handlers.oauth_token)
        api.router.add_get(f"{moved}{ACCOUNT_DETAILS_PATH}", handlers.account_details)
        catalog_handlers.routes(api, moved)
    return api


def invalid_request(body: Any) -> str | None:
    """What HubSpot would say is wrong with a start request's body, or None."""
    if not isinstance(body, dict):
        return "Invalid input JSON: expected an object."
    if body.get("exportType") not in ("VIEW", "LIST"):
        return f"Invalid input JSON: exportType must be VIEW or LIST, got {body.get('exportType')!r}."
    if body.get("format") not in ("CSV", "XLS", "XLSX"):
        return f"Invalid input JSON: format must be CSV, XLS or XLSX, got {body.get('format')!r}."
    if not body.get("objectType"):
        return "Invalid input JSON: objectType is required."
    props = body.get("objectProperties")
    if not isinstance(props, list) or not props:
        return "Invalid input JSON: objectProperties must be a non-empty list."
    if body["exportType"] == "LIST" and not body.get("listId"):
        return "Invalid input JSON: listId is required for LIST exports."
    return None


def _prefix(request: web.Request) -> str:
    version = request.match_info.get("version")
    return f"/crm/exports/{version}/export" if version else "/crm/v3/exports/export"


class ApiHandlers:
    def __init__(self, settings: ApiSettings, book: ExportBook, file_host: FileHost, crm: Crm) -> None:
        self.settings = settings
        self.book = book
        self.file_host = file_host
        self.crm = crm

    async def start(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return hubspot_error(400, "Invalid input JSON: the body is not JSON.", "VALIDATION_ERROR")
        problem = invalid_request(body)
        if problem:
            return hubspot_error(400, problem, "VALIDATION_ERROR")
        try:
            query = self.crm.read_query(body)
        except QueryError as err:
            detail = {
                "message": str(err),
                "code": err.code,
                **({"context": err.context} if err.context else {}),
            }
            return hubspot_error(400, str(err), "VALIDATION_ERROR", errors=[detail])
        try:
            export = self.book.start(body, request.match_info.get("version", "v3"))
        except ExportLimitReached as refused:
            return export_limit_error(refused.limit)
        # What the export holds is fixed now, at its start (its as-of time), whenever it is written.
        self.crm.start_export(export.id, query, export.plan.row_count)
        links = {"status": f"{self.settings.api_url}{_prefix(request)}/async/tasks/{export.id}/status"}
        return web.json_response({"id": export.id, "links": links}, status=202)

    def _find(self, raw: str) -> Export | web.Response:
        if not raw.isdigit():
            return hubspot_error(400, f"Unable to parse id {raw[:40]!r}.", "VALIDATION_ERROR")
        export = self.book.get(raw)
        if export is None:
            return hubspot_error(404, f"Task with id {raw} not found.", "OBJECT_NOT_FOUND")
        return export

    async def status(self, request: web.Request) -> web.Response:
        found = self._find(request.match_info["task_id"])
        if isinstance(found, web.Response):
            return found
        export = found
        seen = self.book.poll(export)
        status, started = seen.status, seen.processing_since
        body: dict[str, Any] = {
            "status": status,
            "requestedAt": iso(export.created),
            "startedAt": iso(export.created if started is None else started),
            "completedAt": iso(seen.completed_at or seen.at),
            "numErrors": 0,
            "errors": [],
            "links": {},
        }
        if status == "CANCELED":
            errors = export.plan.errors or [
                {
                    "message": "The export was canceled.",
                    "category": "EXPORT_CANCELED",
                    "subCategory": "CANCELED",
                }
            ]
            body["errors"] = errors
            body["numErrors"] = len(errors)
        elif status == "COMPLETE":
            if export.plan.errors:
                body["errors"] = export.plan.errors
                body["numErrors"] = len(export.plan.errors)
            await asyncio.get_running_loop().run_in_executor(None, self.file_host.materialize, export)
            body["result"] = self.file_host.signed_url(export)
        return web.json_response(body)

    async def get_export(self, request: web.Request) -> web.Response:
        found = self._find(request.match_info["export_id"])
        if isinstance(found, web.Response):
            return found
        export = found
        status = self.book.peek(export).status
        loop = asyncio.get_running_loop()  # a filtered count over millions of records takes a while
        count = await loop.run_in_executor(
            None, self.crm.record_count, export.id, export.request, export.plan.row_count
        )
        body = {
            "id": export.id,
            "exportName": export.request.get("exportName", ""),
            "exportType": export.request["exportType"],
            "objectType": export.request["objectType"],
            "objectProperties": export.request["objectProperties"],
            "format": export.request["format"],
            "exportState": _STATE[status],
            "recordCount": count,
            "createdAt": iso(export.created),
        }
        return web.json_response(body)

    async def account_details(self, request: web.Request) -> web.Response:
        """``GET /account-info/v3/details``: the portal id lineage names the HubSpot side by."""
        sb = self.settings
        if sb.portal_id is None:  # a token HubSpot does not let read the account's details
            return hubspot_error(403, "This app hasn't been granted all required scopes.", "MISSING_SCOPES")
        return web.json_response(
            {
                "portalId": sb.portal_id,
                "accountType": "STANDARD",
                "timeZone": "UTC",
                "companyCurrency": "USD",
                "uiDomain": "app.hubspot.com",
                "dataHostingLocation": "na1",
            }
        )

    async def oauth_token(self, request: web.Request) -> web.Response:
        sb = self.settings
        form = await request.post()
        return refresh_grant(form, sb.tokens, sb.oauth_client, sb.access_token_ttl)
