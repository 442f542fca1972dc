"""A HubSpot-compatible CRM Exports API on loopback, for DAG development, the demo and the tests.

Two listeners, as in HubSpot's world: the API host, which wants a Bearer token, and a file host
that serves results under signed, expiring URLs and never needs (or should see) the token. It
imports nothing of the provider's client side, so it stays an independent check of it.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import hashlib
import hmac
import json
import os
import shutil
import tempfile
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

from aiohttp import web

from airflow_provider_hubexport.sandbox.content import Packaging, corrupt_file, write_export, write_unsafe_zip
from airflow_provider_hubexport.sandbox.peers import ClientProcesses
from airflow_provider_hubexport.sandbox.state import Export, ExportPlan, Fault, RecordedRequest

DEFAULT_TOKEN = "sandbox-token"
DEFAULT_OAUTH_CLIENT = ("sandbox-client-id", "sandbox-client-secret", "sandbox-refresh-token")
EXPORT_SCOPE = "crm.export"
_VERSION_PREFIXES = ("/crm/v3/exports/export", "/crm/exports/{version}/export")
_CHUNK = 256 * 1024
_MIME = {
    ".csv": "text/csv; charset=utf-8",
    ".zip": "application/zip",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".xls": "application/vnd.ms-excel",
}


def _iso(ts: float) -> str:
    return (
        datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def hubspot_error(status: int, message: str, category: str, **extra: Any) -> web.Response:
    """An error in HubSpot's body shape."""
    body = {"status": "error", "message": message, "correlationId": str(uuid.uuid4()), "category": category}
    body.update(extra)
    return web.json_response(body, status=status)


class Sandbox:
    """Start with ``start()`` (or as a context manager) on ephemeral ports; inspect ``requests``."""

    def __init__(
        self,
        *,
        token: str = DEFAULT_TOKEN,
        host: str = "127.0.0.1",
        port: int = 0,
        files_port: int = 0,
        plan: ExportPlan | None = None,
        packaging: Packaging | None = None,
        oauth_client: tuple[str, str, str] = DEFAULT_OAUTH_CLIENT,
        access_token_ttl: int = 1800,
        rate_limit: tuple[int, float] | None = None,
        rate_limit_retry_after: bool = True,
        daily_export_limit: int | None = None,
        workdir: str | None = None,
        identify_clients: bool = False,
    ) -> None:
        self.host = host
        self.port = port
        self.files_port = files_port
        self.plan = plan or ExportPlan()
        self.packaging = packaging or Packaging()
        self.oauth_client = oauth_client
        self.access_token_ttl = access_token_ttl
        self.rate_limit = rate_limit
        self.rate_limit_retry_after = rate_limit_retry_after
        self.daily_export_limit = daily_export_limit
        self.clock = time.time
        self.tokens: dict[str, dict[str, Any]] = {token: {"scopes": {EXPORT_SCOPE}, "expires": None}}
        self.token = token
        self.requests: list[RecordedRequest] = []
        self.issued_signatures: list[str] = []  # of the signed URLs handed out, for secret scans
        self.exports: dict[str, Export] = {}
        self.faults: list[Fault] = []
        self._next_plans: collections.deque[ExportPlan] = collections.deque()
        self._next_id = 40_000_001
        self._recent: collections.deque[float] = collections.deque()
        self._signing_key = os.urandom(32)
        self._own_workdir = workdir is None
        self.workdir = workdir or tempfile.mkdtemp(prefix="hubspot-sandbox-")
        self._lock = threading.Lock()
        self._clients = ClientProcesses() if identify_clients else None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._files_runner: web.AppRunner | None = None

    # -- configuration used by tests -------------------------------------------------------------
    def plan_next(self, **overrides: Any) -> ExportPlan:
        """The next export started gets this plan (the sandbox's default plan with overrides)."""
        plan = copy.deepcopy(self.plan)
        for key, value in overrides.items():
            if not hasattr(plan, key):
                raise TypeError(f"ExportPlan has no field {key!r}")
            setattr(plan, key, value)
        with self._lock:
            self._next_plans.append(plan)
        return plan

    def inject(self, kind: str = "status", **kwargs: Any) -> Fault:
        fault = Fault(kind=kind, **kwargs)
        with self._lock:
            self.faults.append(fault)
        return fault

    def add_token(
        self, token: str, scopes: tuple[str, ...] = (EXPORT_SCOPE,), expires: float | None = None
    ) -> None:
        self.tokens[token] = {"scopes": set(scopes), "expires": expires}

    def expire_access_tokens(self) -> None:
        """Every OAuth access token issued so far expires now (the static token stays valid)."""
        for info in self.tokens.values():
            if info["expires"] is not None:
                info["expires"] = 0.0

    def api_requests(self, path_contains: str = "", method: str | None = None) -> list[RecordedRequest]:
        return [
            r
            for r in list(self.requests)
            if r.server == "api" and path_contains in r.path and (method is None or r.method == method)
        ]

    @property
    def file_requests(self) -> list[RecordedRequest]:
        return [r for r in list(self.requests) if r.server == "files"]

    def served_file(self, export_id: str | int) -> str:
        """The path of the file the file host serves for an export (after it completed)."""
        path = self.exports[str(export_id)].file_path
        if path is None:
            raise KeyError(f"export {export_id} has no file yet")
        return path

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def files_url(self) -> str:
        return f"http://{self.host}:{self.files_port}"

    def connection(self, **extra: Any) -> dict[str, Any]:
        """The Airflow connection (as AIRFLOW_CONN_* JSON) that points at this sandbox."""
        conn: dict[str, Any] = {"conn_type": "hubspot", "host": self.api_url, "password": self.token}
        if extra:
            conn["extra"] = extra
        return conn

    def connection_json(self, **extra: Any) -> str:
        return json.dumps(self.connection(**extra))

    # -- lifecycle -------------------------------------------------------------------------------
    def build_apps(self) -> tuple[web.Application, web.Application]:
        api = web.Application(middlewares=[self._api_middleware], client_max_size=8 * 1024 * 1024)
        for prefix in _VERSION_PREFIXES:
            api.router.add_post(f"{prefix}/async", self._start)
            api.router.add_get(f"{prefix}/async/tasks/{{task_id}}/status", self._status)
            api.router.add_get(f"{prefix}/{{export_id}}", self._get_export)
        api.router.add_post("/oauth/v1/token", self._oauth_token)
        files = web.Application(middlewares=[self._files_middleware])
        files.router.add_get("/hubspot-exports/{export_id}/{name}", self._download)
        return api, files

    async def start_async(self) -> None:
        api, files = self.build_apps()
        self._runner = web.AppRunner(api, access_log=None, handle_signals=False)
        self._files_runner = web.AppRunner(files, access_log=None, handle_signals=False)
        await self._runner.setup()
        await self._files_runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        files_site = web.TCPSite(self._files_runner, self.host, self.files_port, reuse_address=True)
        await files_site.start()
        self.files_port = files_site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop_async(self) -> None:
        for runner in (self._runner, self._files_runner):
            if runner is not None:
                await runner.cleanup()

    def start(self) -> Sandbox:
        """Serve from a background thread with its own event loop; returns once listening."""
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self.start_async())
            except BaseException as err:  # reported to the caller below
                failure.append(err)
                started.set()
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(self.stop_async())
            loop.close()

        self._thread = threading.Thread(target=run, name="hubspot-sandbox", daemon=True)
        self._thread.start()
        if not started.wait(30):
            raise RuntimeError("the sandbox did not start within 30 s")
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)
            self._thread = None
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- middleware ------------------------------------------------------------------------------
    async def _record(self, request: web.Request, server: str) -> None:
        body = await request.read()
        peername = request.transport.get_extra_info("peername") if request.transport else None
        pid, pgid = await self._clients.identify(request.transport) if self._clients else (None, None)
        self.requests.append(
            RecordedRequest(
                server,
                request.method,
                request.path,
                request.query_string,
                dict(request.headers),
                body,
                peer=f"{peername[0]}:{peername[1]}" if peername else "",
                at=time.monotonic(),
                pid=pid,
                pgid=pgid,
            )
        )

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.matches(method, path):
                    if fault.after > 0:
                        fault.after -= 1
                        return None
                    fault.times -= 1
                    return fault
        return None

    def _rate_limited(self) -> web.Response | None:
        if self.rate_limit is None:
            return None
        limit, window = self.rate_limit
        now = time.monotonic()
        with self._lock:
            while self._recent and self._recent[0] <= now - window:
                self._recent.popleft()
            if len(self._recent) < limit:
                self._recent.append(now)
                return None
            wait = self._recent[0] + window - now
        headers = {
            "X-HubSpot-RateLimit-Interval-Milliseconds": str(int(window * 1000)),
            "X-HubSpot-RateLimit-Max": str(limit),
            "X-HubSpot-RateLimit-Remaining": "0",
        }
        if self.rate_limit_retry_after:
            headers["Retry-After"] = f"{max(wait, 0.01):.2f}"
        return self._rate_limit_response(headers)

    @staticmethod
    def _rate_limit_response(headers: dict[str, str]) -> web.Response:
        body = {
            "status": "error",
            "message": "You have reached your secondly limit.",
            "errorType": "RATE_LIMIT",
            "correlationId": str(uuid.uuid4()),
            "policyName": "SECONDLY",
        }
        return web.json_response(body, status=429, headers=headers)

    @web.middleware
    async def _api_middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        await self._record(request, "api")
        fault = self._take_fault(request.method, request.path)
        if fault is not None:
            if fault.kind == "reset":
                assert request.transport is not None
                request.transport.abort()
                raise asyncio.CancelledError
            if fault.kind == "delay":
                await asyncio.sleep(fault.delay)
            elif fault.kind == "status":
                return self._fault_response(fault)
            elif fault.kind == "non_json":
                return web.Response(text="<html><body>Bad gateway</body></html>", content_type="text/html")
            elif fault.kind == "missing_fields":
                return web.json_response({"links": {}})
            elif fault.kind == "unknown_status":
                return web.json_response({"status": "EXPLODED", "numErrors": 0, "errors": []})
        if request.path != "/oauth/v1/token":
            limited = self._rate_limited()
            if limited is not None:
                return limited
            denied = self._check_auth(request)
            if denied is not None:
                return denied
        return await handler(request)

    def _fault_response(self, fault: Fault) -> web.Response:
        if fault.status == 429:
            headers = {"X-HubSpot-RateLimit-Interval-Milliseconds": "1000", "X-HubSpot-RateLimit-Max": "10"}
            if fault.retry_after is not None:
                headers["Retry-After"] = str(fault.retry_after)
            return self._rate_limit_response(headers)
        categories = {
            400: "VALIDATION_ERROR",
            401: "INVALID_AUTHENTICATION",
            403: "MISSING_SCOPES",
            404: "OBJECT_NOT_FOUND",
        }
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
        body = {
            "status": "error",
            "message": "internal error" if fault.status >= 500 else "injected error",
            "correlationId": str(uuid.uuid4()),
            "category": categories.get(fault.status, "INTERNAL_ERROR"),
        }
        return web.json_response(body, status=fault.status, headers=headers)

    def _check_auth(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else None
        info = self.tokens.get(token or "")
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
        if EXPORT_SCOPE not in info["scopes"]:
            return hubspot_error(
                403,
                "This app hasn't been granted all required scopes to make this call. Read more about "
                "required scopes here: https://developers.hubspot.com/scopes.",
                "MISSING_SCOPES",
                errors=[
                    {
                        "message": "One or more of the following scopes are required.",
                        "context": {"requiredGranularScopes": [EXPORT_SCOPE]},
                    }
                ],
                links={"scopes": "https://developers.hubspot.com/scopes"},
            )
        return None

    @web.middleware
    async def _files_middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        await self._record(request, "files")
        return await handler(request)

    # -- API handlers ----------------------------------------------------------------------------
    @staticmethod
    def _api_version(request: web.Request) -> str:
        return request.match_info.get("version", "v3")

    async def _start(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return hubspot_error(400, "Invalid input JSON: the body is not JSON.", "VALIDATION_ERROR")
        problem = self._invalid_request(body)
        if problem:
            return hubspot_error(400, problem, "VALIDATION_ERROR")
        now = self.clock()
        with self._lock:
            if self.daily_export_limit is not None:
                recent = [e for e in self.exports.values() if e.created > now - 86400]
                if len(recent) >= self.daily_export_limit:
                    return hubspot_error(
                        429,
                        f"You have reached the limit of {self.daily_export_limit} exports in a rolling "
                        "24 hour period.",
                        "RATE_LIMITS",
                        subCategory="ExportLimitError.DAILY_EXPORT_LIMIT",
                    )
            export_id = str(self._next_id)
            self._next_id += 1
            plan = self._next_plans.popleft() if self._next_plans else copy.deepcopy(self.plan)
            self.exports[export_id] = Export(export_id, body, plan, now, self._api_version(request))
        links = {"status": f"{self.api_url}{self._prefix(request)}/async/tasks/{export_id}/status"}
        return web.json_response({"id": export_id, "links": links}, status=202)

    @staticmethod
    def _prefix(request: web.Request) -> str:
        version = request.match_info.get("version")
        return f"/crm/exports/{version}/export" if version else "/crm/v3/exports/export"

    @staticmethod
    def _invalid_request(body: Any) -> str | None:
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

    def _find(self, raw: str) -> Export | web.Response:
        if not raw.isdigit():
            return hubspot_error(400, f"Unable to parse id {raw[:40]!r}.", "VALIDATION_ERROR")
        export = self.exports.get(raw)
        if export is None:
            return hubspot_error(404, f"Task with id {raw} not found.", "OBJECT_NOT_FOUND")
        return export

    async def _status(self, request: web.Request) -> web.Response:
        found = self._find(request.match_info["task_id"])
        if isinstance(found, web.Response):
            return found
        export = found
        now = self.clock()
        with self._lock:
            export.polls += 1
            status = export.status(now)
            if status in ("COMPLETE", "CANCELED") and export.completed_at is None:
                export.completed_at = now
        body: dict[str, Any] = {
            "status": status,
            "requestedAt": _iso(export.created),
            "startedAt": _iso(export.created if status == "PENDING" else min(export.created + 0.5, now)),
            "completedAt": _iso(export.completed_at or now),
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
            await asyncio.get_running_loop().run_in_executor(None, self._materialize, export)
            body["result"] = self._signed_url(export)
        return web.json_response(body)

    async def _get_export(self, request: web.Request) -> web.Response:
        found = self._find(request.match_info["export_id"])
        if isinstance(found, web.Response):
            return found
        export = found
        status = export.status(self.clock())
        state = {
            "PENDING": "ENQUEUED",
            "PROCESSING": "PROCESSING",
            "COMPLETE": "DONE",
            "CANCELED": "CANCELED",
        }
        body = {
            "id": export.id,
            "exportName": export.request.get("exportName", ""),
            "exportType": export.request["exportType"],
            "objectType": export.request["objectType"],
            "objectProperties": export.request["objectProperties"],
            "format": export.request["format"],
            "exportState": state[status],
            "recordCount": export.plan.row_count,
            "createdAt": _iso(export.created),
        }
        return web.json_response(body)

    async def _oauth_token(self, request: web.Request) -> web.Response:
        form = await request.post()
        client_id, client_secret, refresh = self.oauth_client
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
        self.tokens[access] = {"scopes": {EXPORT_SCOPE}, "expires": time.time() + self.access_token_ttl}
        return web.json_response(
            {
                "token_type": "bearer",
                "refresh_token": refresh,
                "access_token": access,
                "expires_in": self.access_token_ttl,
            }
        )

    # -- files -----------------------------------------------------------------------------------
    def _materialize(self, export: Export) -> None:
        with self._lock:
            if export.file_path is not None:
                return
            directory = os.path.join(self.workdir, export.id)
            os.makedirs(directory, exist_ok=True)
            name = str(export.request.get("exportName") or export.request["objectType"]).lower()
            base = "".join(c if c.isalnum() or c in "-_" else "-" for c in name)[:60] + f"-{export.id}"
            if export.plan.unsafe_zip:
                path = write_unsafe_zip(directory, base)
            else:
                path = write_export(
                    directory,
                    base,
                    export.id,
                    str(export.request["objectType"]),
                    [str(p) for p in export.request["objectProperties"]],
                    export.request["format"],
                    export.plan.row_count,
                    self.packaging,
                )
            if export.plan.corrupt:
                corrupt_file(path, "directory" if export.plan.corrupt == "directory" else "data")
            export.file_path = path

    def _signature(self, export_id: str, name: str, expires: int) -> str:
        msg = f"{export_id}/{name}/{expires}".encode()
        return hmac.new(self._signing_key, msg, hashlib.sha256).hexdigest()

    def _signed_url(self, export: Export) -> str:
        assert export.file_path is not None
        name = os.path.basename(export.file_path)
        expires = int(self.clock() + export.plan.url_ttl) if export.plan.url_ttl > 0 else 0
        with self._lock:
            if export.plan.expired_urls > 0:
                export.plan.expired_urls -= 1
                expires = 0
        sig = self._signature(export.id, name, expires)
        self.issued_signatures.append(sig)
        return f"{self.files_url}/hubspot-exports/{export.id}/{quote(name)}?Expires={expires}&Signature={sig}"

    async def _download(self, request: web.Request) -> web.StreamResponse:
        export_id, name = request.match_info["export_id"], request.match_info["name"]
        try:
            expires = int(request.query.get("Expires", ""))
        except ValueError:
            expires = -1
        export = self.exports.get(export_id)
        good = hmac.compare_digest(
            request.query.get("Signature", ""), self._signature(export_id, name, expires)
        )
        if export is None or export.file_path is None or not good:
            return web.Response(
                status=403, text="<Error><Code>AccessDenied</Code></Error>", content_type="application/xml"
            )
        if expires <= self.clock():
            return web.Response(
                status=403,
                text="<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>",
                content_type="application/xml",
            )
        with self._lock:
            export.downloads += 1
            cut = export.downloads <= export.plan.cut_downloads
        path = export.file_path
        size = os.path.getsize(path)
        headers = {
            "Content-Disposition": f'attachment; filename="{os.path.basename(path)}"',
            "Content-Type": _MIME.get(os.path.splitext(path)[1], "application/octet-stream"),
        }
        rate = export.plan.download_rate
        if not cut and not rate:
            return web.FileResponse(path, chunk_size=_CHUNK, headers=headers)
        response = web.StreamResponse(headers=headers)
        response.content_length = size
        await response.prepare(request)
        limit = max(1, size // 2) if cut else size
        chunk = min(_CHUNK, int(rate / 10)) if rate else _CHUNK
        sent = 0
        with open(path, "rb") as fh:
            while sent < limit:
                data = fh.read(min(chunk, limit - sent))
                try:
                    await response.write(data)
                except ConnectionResetError:  # the client went away (or was killed)
                    raise asyncio.CancelledError from None
                sent += len(data)
                if rate:
                    await asyncio.sleep(len(data) / rate)
        if cut:
            assert request.transport is not None
            request.transport.abort()
            raise asyncio.CancelledError
        await response.write_eof()
        return response
