"""The API host: its aiohttp app, the middleware every API request goes through (record, faults,
rate limit, auth) and the CRM Exports API's handlers (start, status, get export, OAuth token)."""

from __future__ import annotations

import asyncio
import copy
from typing import TYPE_CHECKING, Any

from aiohttp import web

from airflow_provider_hubexport.sandbox import faults
from airflow_provider_hubexport.sandbox.auth import check_bearer, refresh_grant
from airflow_provider_hubexport.sandbox.files import FileHost
from airflow_provider_hubexport.sandbox.state import MOVED_PREFIX, Export
from airflow_provider_hubexport.sandbox.wire import export_limit_error, hubspot_error, iso

if TYPE_CHECKING:
    from airflow_provider_hubexport.sandbox.server import Sandbox

VERSION_PREFIXES = ("/crm/v3/exports/export", "/crm/exports/{version}/export")
OAUTH_PATH = "/oauth/v1/token"
ACCOUNT_DETAILS_PATH = "/account-info/v3/details"
_STATE = {"PENDING": "ENQUEUED", "PROCESSING": "PROCESSING", "COMPLETE": "DONE", "CANCELED": "CANCELED"}


def build_api_app(sandbox: Sandbox, file_host: FileHost) -> web.Application:
    """The API host's app; a completed export's file comes from ``file_host``."""
    handlers = ApiHandlers(sandbox, file_host)

    @web.middleware
    async def api_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        await sandbox._recorder.record(request, "api")
        answer = await faults.inject(sandbox, "api", request)
        if answer is not None:
            return answer
        if request.path.removeprefix(MOVED_PREFIX) != OAUTH_PATH:
            limited = sandbox._rate.check(sandbox.rate_limit, sandbox.rate_limit_retry_after)
            if limited is not None:
                return limited
            denied = check_bearer(sandbox.tokens, request.headers.get("Authorization", ""))
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
    def __init__(self, sandbox: Sandbox, file_host: FileHost) -> None:
        self.sandbox = sandbox
        self.file_host = file_host

    async def start(self, request: web.Request) -> web.Response:
        sb = self.sandbox
        try:
            body = await request.json()
        except ValueError:
            return hubspot_error(400, "Invalid input JSON: the body is not JSON.", "VALIDATION_ERROR")
        problem = invalid_request(body)
        if problem:
            return hubspot_error(400, problem, "VALIDATION_ERROR")
        now = sb.clock()
        limit = sb.export_limit
        with sb._lock:
            if not sb._starts.admit(now, limit):
                return export_limit_error(limit)
            export_id = str(sb._next_id)
            sb._next_id += 1
            plan = sb._next_plans.popleft() if sb._next_plans else copy.deepcopy(sb.plan)
            version = request.match_info.get("version", "v3")
            export = Export(export_id, body, plan, now, version)
            sb.exports[export_id] = export
            sb._queue.admit(export, sb.one_at_a_time)
        links = {"status": f"{sb.api_url}{_prefix(request)}/async/tasks/{export_id}/status"}
        return web.json_response({"id": export_id, "links": links}, status=202)

    def _find(self, raw: str) -> Export | web.Response:
        if not raw.isdigit():
            return hubspot_error(400, f"Unable to parse id {raw[:40]!r}.", "VALIDATION_ERROR")
        export = self.sandbox.exports.get(raw)
        if export is None:
            return hubspot_error(404, f"Task with id {raw} not found.", "OBJECT_NOT_FOUND")
        return export

    async def status(self, request: web.Request) -> web.Response:
        sb = self.sandbox
        found = self._find(request.match_info["task_id"])
        if isinstance(found, web.Response):
            return found
        export = found
        now = sb.clock()
        with sb._lock:
            status = sb._queue.poll(export, now, sb.one_at_a_time)
            started = export.processing_since(now)
        body: dict[str, Any] = {
            "status": status,
            "requestedAt": iso(export.created),
            "startedAt": iso(export.created if started is None else started),
            "completedAt": iso(export.completed_at or now),
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
        sb = self.sandbox
        now = sb.clock()
        with sb._lock:
            sb._queue.advance(now, sb.one_at_a_time)
            status = export.status(now)
        body = {
            "id": export.id,
            "exportName": export.request.get("exportName", ""),
            "exportType": export.request["exportType"],
            "objectType": export.request["objectType"],
            "objectProperties": export.request["objectProperties"],
            "format": export.request["format"],
            "exportState": _STATE[status],
            "recordCount": export.plan.row_count,
            "createdAt": iso(export.created),
        }
        return web.json_response(body)

    async def account_details(self, request: web.Request) -> web.Response:
        """``GET /account-info/v3/details``: the portal id lineage names the HubSpot side by."""
        sb = self.sandbox
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
        sb = self.sandbox
        form = await request.post()
        return refresh_grant(form, sb.tokens, sb.oauth_client, sb.access_token_ttl)
