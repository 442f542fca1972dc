"""A HubSpot-compatible CRM Exports API on loopback, for DAG development, the demo and the tests.

Two listeners, as in HubSpot's world: the API host, which wants a Bearer token, and a file host
that serves results under signed, expiring URLs and never needs (or should see) the token. It
imports nothing of the provider's client side, so it stays an independent check of it.

This module holds ``Sandbox``, the object tests configure and inspect. The work is done in rooms:

- ``api``: the API host's app, its middleware and the Exports API's handlers
- ``catalog``: the properties and schemas APIs' handlers
- ``auth``: Bearer tokens, scopes and the OAuth refresh grant
- ``faults``: injected faults and the rate limit
- ``files``: the file host, result files and URL signing
- ``lifecycle``: listeners and the event loop thread
- ``wire``: HubSpot's response shapes and the record of requests
- ``state``: plans, the export book (exports, their queue, the export limit, the clock); no HTTP
- ``rows`` and ``content``: an export's rows (cells as HubSpot writes them, a fast path for runs
  of generated records) and the files they are written into, packaged as HubSpot does
- ``crm``, with ``schema``, ``generated``, ``search`` and ``export_query``: the records (a computed
  population and stored changes), their object types and properties, and what each export holds
  (its request read, its search evaluated as of its start); no HTTP

An export's file holds exactly the records its request matches, as the CRM had them at its start
(``crm``'s docstring: the as-of time, the index lag, the population of generated records).

The rooms know nothing of ``Sandbox``: each gets the export book and its other collaborators
passed in, and reads the settings it needs from the sandbox's public attributes.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
from collections.abc import Callable
from typing import Any

from aiohttp import web

from airflow_provider_hubexport.sandbox.api import build_api_app
from airflow_provider_hubexport.sandbox.auth import DEFAULT_SCOPES, EXPORT_SCOPE
from airflow_provider_hubexport.sandbox.content import Packaging
from airflow_provider_hubexport.sandbox.crm import Crm
from airflow_provider_hubexport.sandbox.faults import FaultBook, RateLimiter
from airflow_provider_hubexport.sandbox.files import FileHost
from airflow_provider_hubexport.sandbox.lifecycle import Listeners, LoopThread
from airflow_provider_hubexport.sandbox.peers import ClientProcesses
from airflow_provider_hubexport.sandbox.state import (
    Export,
    ExportBook,
    ExportPlan,
    ExportRecord,
    Fault,
    RecordedRequest,
    most_at_once,
    most_in_window,
)
from airflow_provider_hubexport.sandbox.wire import Recorder, hubspot_error

__all__ = [
    "DAY",
    "DEFAULT_OAUTH_CLIENT",
    "DEFAULT_TOKEN",
    "EXPORT_SCOPE",
    "HUBSPOT_EXPORT_LIMIT",
    "Sandbox",
    "hubspot_error",
]

DEFAULT_TOKEN = "sandbox-token"
DEFAULT_OAUTH_CLIENT = ("sandbox-client-id", "sandbox-client-secret", "sandbox-refresh-token")
DAY = 86400.0
HUBSPOT_EXPORT_LIMIT = (30, DAY)  # HubSpot's: 30 exports per rolling 24 hours


class Sandbox:
    """Start with ``start()`` (or as a context manager) on ephemeral ports; inspect ``requests``.

    Its settings (``plan``, ``packaging``, ``clock``, ``tokens``, ``rate_limit``,
    ``rate_limit_retry_after``, ``export_limit``, ``one_at_a_time``) may be changed while it runs
    (``one_at_a_time`` best before the first start).

    HubSpot's limits are off by default, so a test may start as many exports as it likes and have
    them run side by side; ``export_limit=HUBSPOT_EXPORT_LIMIT, one_at_a_time=True`` is HubSpot:

    - ``export_limit=(N, W)``: at most N starts accepted in any rolling W seconds of ``clock``; the
      next is refused with HubSpot's daily-limit 429 (no Retry-After, as HubSpot) and not counted.
      ``daily_export_limit = N`` is the older spelling of ``(N, 86400)``.
    - ``one_at_a_time``: an export leaves PENDING only once every export started before it is
      COMPLETE or CANCELED; its ``pending_seconds`` (or ``pending_polls``) count from then.

    The record: ``export_starts()``, ``refused_starts()``, ``export_history()`` and the two
    summaries tests assert on, ``most_starts_in_window(W)`` and ``most_processing_at_once()``.

    The exports themselves are kept by ``book`` (an ``ExportBook``); ``exports``, ``plan``,
    ``clock``, ``export_limit`` and ``one_at_a_time`` are its, read and set through the sandbox.

    The records are ``crm``'s (a ``Crm``): change them, move its clock, add an index lag, ask for
    the ground truth of what changed (``crm.changes``). Its genesis is the sandbox's creation
    time, floored to the hour; its custom object's fully qualified name uses ``portal_id``.

    The default token has the export scope and the schema scopes the properties and schemas APIs
    want (``auth.DEFAULT_SCOPES``); ``add_token`` gives only what it is told.
    """

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
        export_limit: tuple[int, float] | None = None,
        one_at_a_time: bool = False,
        daily_export_limit: int | None = None,
        workdir: str | None = None,
        identify_clients: bool = False,
        portal_id: int | None = 4242,
    ) -> None:
        self.host = host
        # The account's portal (hub) id, as ``GET /account-info/v3/details`` reports it; None: that
        # call is refused (403 MISSING_SCOPES), as for a token HubSpot does not let read it.
        self.portal_id = portal_id
        self.port = port
        self.files_port = files_port
        self.book = ExportBook(plan, export_limit=export_limit, one_at_a_time=one_at_a_time)
        self.packaging = packaging or Packaging()
        self.oauth_client = oauth_client
        self.access_token_ttl = access_token_ttl
        self.rate_limit = rate_limit
        self.rate_limit_retry_after = rate_limit_retry_after
        if daily_export_limit is not None:
            self.daily_export_limit = daily_export_limit
        self.tokens: dict[str, dict[str, Any]] = {token: {"scopes": set(DEFAULT_SCOPES), "expires": None}}
        self.token = token
        self.requests: list[RecordedRequest] = []
        self.issued_signatures: list[str] = []  # of the signed URLs handed out, for secret scans
        self._own_workdir = workdir is None
        self.workdir = workdir or tempfile.mkdtemp(prefix="hubspot-sandbox-")
        self._lock = threading.Lock()
        self._faults = FaultBook(self._lock)
        self._rate = RateLimiter(self._lock)
        self.crm = Crm(portal_id=lambda: self.portal_id)
        self._recorder = Recorder(self.requests, ClientProcesses() if identify_clients else None)
        self._file_host = FileHost(self, self.book, self.crm, self._recorder, self._faults)
        self._listeners = Listeners()
        self._loop_thread = LoopThread("hubspot-sandbox")

    # -- configuration used by tests -------------------------------------------------------------
    def plan_next(self, **overrides: Any) -> ExportPlan:
        """The next export started gets this plan (the sandbox's default plan with overrides)."""
        return self.book.plan_next(**overrides)

    def inject(self, kind: str = "status", **kwargs: Any) -> Fault:
        """The next matching request(s) misbehave: see ``Fault`` for the kinds and options."""
        return self._faults.add(Fault(kind=kind, **kwargs))

    @property
    def faults(self) -> list[Fault]:
        return self._faults.faults

    def add_token(
        self, token: str, scopes: tuple[str, ...] = (EXPORT_SCOPE,), expires: float | None = None
    ) -> None:
        self.tokens[token] = {"scopes": set(scopes), "expires": expires}

    def expire_access_tokens(self) -> None:
        """Every OAuth access token issued so far expires now (the static token stays valid)."""
        for info in self.tokens.values():
            if info["expires"] is not None:
                info["expires"] = 0.0

    # -- the export book's settings and exports, as the sandbox's ---------------------------------
    @property
    def exports(self) -> dict[str, Export]:
        """Every export started, by id, in start order."""
        return self.book.exports

    @property
    def plan(self) -> ExportPlan:
        """What an export gets unless ``plan_next`` said otherwise."""
        return self.book.plan

    @plan.setter
    def plan(self, plan: ExportPlan) -> None:
        self.book.plan = plan

    @property
    def clock(self) -> Callable[[], float]:
        """The time exports live by (``time.time`` unless a test moves it by hand)."""
        return self.book.clock

    @clock.setter
    def clock(self, clock: Callable[[], float]) -> None:
        self.book.clock = clock

    @property
    def one_at_a_time(self) -> bool:
        return self.book.one_at_a_time

    @one_at_a_time.setter
    def one_at_a_time(self, on: bool) -> None:
        self.book.one_at_a_time = on

    @property
    def export_limit(self) -> tuple[int, float] | None:
        """``(N, W)``: N export starts per rolling W seconds (None: no limit)."""
        return self.book.export_limit

    @export_limit.setter
    def export_limit(self, limit: tuple[int, float] | None) -> None:
        self.book.export_limit = limit

    @property
    def daily_export_limit(self) -> int | None:
        """N of an ``export_limit`` of N per 24 hours (None for no limit or another window)."""
        limit = self.book.export_limit
        return limit[0] if limit is not None and limit[1] == DAY else None

    @daily_export_limit.setter
    def daily_export_limit(self, count: int | None) -> None:
        self.export_limit = None if count is None else (count, DAY)

    # -- inspection ------------------------------------------------------------------------------
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
        export = self.book.get(str(export_id))
        if export is None:
            raise KeyError(f"no export {export_id}")
        path = export.file_path
        if path is None:
            raise KeyError(f"export {export_id} has no file yet")
        return path

    def export_starts(self) -> list[float]:
        """When each accepted start request arrived (``clock`` time), in order."""
        return self.book.accepted_starts()

    def refused_starts(self) -> list[float]:
        """When each start refused for the export limit arrived (``clock`` time), in order."""
        return self.book.refused_starts()

    def export_history(self) -> list[ExportRecord]:
        """Each export's start, when it left PENDING and when it finished, as of now, in start order.

        Timed plans give exact times; poll-counted ones the status request that saw the change.
        """
        return self.book.history()

    def most_starts_in_window(self, window: float | None = None) -> int:
        """The most accepted starts in any ``window`` seconds (default: the export limit's window)."""
        if window is None:
            limit = self.book.export_limit
            if limit is None:
                raise ValueError("no export_limit is set: say which window")
            window = limit[1]
        return most_in_window(self.export_starts(), window)

    def most_processing_at_once(self) -> int:
        """The most exports that were PROCESSING at the same time, so far."""
        spans = [(r.processing_at, r.completed_at) for r in self.export_history()]
        return most_at_once([(start, end) for start, end in spans if start is not None])

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
        api = build_api_app(
            self,
            self.book,
            self._file_host,
            self.crm,
            recorder=self._recorder,
            fault_book=self._faults,
            rate=self._rate,
        )
        return api, self._file_host.app()

    async def start_async(self) -> None:
        """Listen on the running loop (``python -m`` uses this); ports 0 become the ones bound."""
        api, files = self.build_apps()
        self.port = await self._listeners.open(api, self.host, self.port)
        self.files_port = await self._listeners.open(files, self.host, self.files_port)

    async def stop_async(self) -> None:
        await self._listeners.close()

    def start(self) -> Sandbox:
        """Serve from a background thread with its own event loop; returns once listening."""
        self._loop_thread.start(self.start_async, self.stop_async)
        return self

    def stop(self) -> None:
        self._loop_thread.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
