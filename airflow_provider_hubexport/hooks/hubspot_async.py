"""``HubSpotAsyncHook``: the async pair of ``HubSpotHook`` (as ``HttpAsyncHook`` is of ``HttpHook``),
for triggers. The same wire format, auth flow (``auth_flow``) and retry policy, sent with aiohttp on
the event loop.

A triggerer holds thousands of waits, so they share one ``aiohttp.ClientSession`` per event loop
(one connection pool); Authorization and timeouts are set per request, so sharing is safe across
connections. The session closes when the last client on the loop is done. They also share the
connection's settings: read once per event loop and connection id, not once per wait (a read goes
through Airflow's secrets backends, for most of them on asgiref's single thread).
"""

from __future__ import annotations

import asyncio
import functools
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any

import aiohttp
import tenacity
import yarl
from airflow.providers.http.hooks.http import HttpAsyncHook

from airflow_provider_hubexport.api import (
    ApiRequest,
    ExportStatus,
    parse_status,
    parse_token_response,
    status_request,
)
from airflow_provider_hubexport.compat import aget_connection
from airflow_provider_hubexport.errors import error_from_response, read_response, transient_error
from airflow_provider_hubexport.exceptions import HubSpotExportError, HubSpotExportRequestError
from airflow_provider_hubexport.hooks import auth, auth_flow
from airflow_provider_hubexport.hooks.connection import DEFAULT_HOST, USER_AGENT, HubSpotConnectionSettings
from airflow_provider_hubexport.hooks.endpoint import endpoint_request
from airflow_provider_hubexport.hooks.ids import accepts_old_task_id
from airflow_provider_hubexport.hooks.retry import RetryPolicy, areplaying, http_hook_budget
from airflow_provider_hubexport.secret_masking import amask_secret, guard_dag_test_comms
from airflow_provider_hubexport.validation import validate_id


def _ssl_option(verify: bool | str) -> Any:
    """The connection's ``verify`` (True, False or a CA bundle path, as ``HubSpotConnectionSettings``
    read it) in aiohttp's terms: a CA file or a CA folder becomes an SSL context that trusts it."""
    if isinstance(verify, bool):
        return verify
    import os
    import ssl

    if os.path.isdir(verify):
        return ssl.create_default_context(capath=verify)
    return ssl.create_default_context(cafile=verify)


class _SharedSession:
    """One ClientSession per event loop, counted by its users."""

    _by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _SharedSession] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self) -> None:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=100, ttl_dns_cache=300),
            headers={"Accept": "application/json", "User-Agent": f"{USER_AGENT} aiohttp"},
        )
        self.users = 0

    @classmethod
    def acquire(cls) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        shared = cls._by_loop.get(loop)
        if shared is None or shared.session.closed:
            shared = cls._by_loop[loop] = cls()
        shared.users += 1
        return shared.session

    @classmethod
    def release(cls, session: aiohttp.ClientSession) -> aiohttp.ClientSession | None:
        """Give a session back; the session to close if this was its last user. Synchronous, so a
        cancellation cannot come between the count and the close, and a finished wait schedules
        nothing on a busy loop but the last one's close."""
        loop = asyncio.get_running_loop()
        shared = cls._by_loop.get(loop)
        if shared is None or shared.session is not session:
            return session
        shared.users -= 1
        if shared.users > 0:
            return None
        del cls._by_loop[loop]
        return session


SETTINGS_TTL = 300.0  # seconds: a rotated token or changed extra reaches running waits within this


class _SharedSettings:
    """Each connection's settings, read once per event loop and reused by every wait on it until
    ``SETTINGS_TTL`` has passed or HubSpot answered 401 (the token may have been rotated). One read
    at a time per connection: a thousand waits starting together make one."""

    _by_loop: weakref.WeakKeyDictionary[
        asyncio.AbstractEventLoop, dict[str, tuple[float, HubSpotConnectionSettings]]
    ] = weakref.WeakKeyDictionary()
    _locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = (
        weakref.WeakKeyDictionary()
    )

    @classmethod
    def peek(cls, conn_id: str) -> HubSpotConnectionSettings | None:
        """The settings if they are read and fresh (no await: what nearly every poll needs)."""
        entries = cls._by_loop.get(asyncio.get_running_loop())
        return None if entries is None else cls._fresh(entries, conn_id)

    @classmethod
    async def get(cls, conn_id: str) -> HubSpotConnectionSettings:
        loop = asyncio.get_running_loop()
        entries = cls._by_loop.setdefault(loop, {})
        fresh = cls._fresh(entries, conn_id)
        if fresh is not None:
            return fresh
        async with cls._locks.setdefault(loop, {}).setdefault(conn_id, asyncio.Lock()):
            fresh = cls._fresh(entries, conn_id)  # read by another wait while this one queued
            if fresh is not None:
                return fresh
            guard_dag_test_comms()  # before Airflow masks the password (3.0's dag.test() would log it)
            conn = await aget_connection(conn_id)
            settings = HubSpotConnectionSettings.from_connection(conn, conn_id)
            for secret in auth.not_yet_masked(settings.secrets):
                await amask_secret(secret)
            entries[conn_id] = (time.monotonic(), settings)
            return settings

    @staticmethod
    def _fresh(
        entries: dict[str, tuple[float, HubSpotConnectionSettings]], conn_id: str
    ) -> HubSpotConnectionSettings | None:
        entry = entries.get(conn_id)
        if entry is None or time.monotonic() - entry[0] >= SETTINGS_TTL:
            return None
        return entry[1]

    @classmethod
    def forget(cls, conn_id: str) -> None:
        """Read the connection again on next use (after a 401)."""
        try:
            cls._by_loop.get(asyncio.get_running_loop(), {}).pop(conn_id, None)
        except RuntimeError:  # no running loop: nothing cached for it
            pass


_refresh_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


def _refresh_lock(settings: HubSpotConnectionSettings) -> asyncio.Lock:
    """The async transport's single-flight lock: per token cache key and event loop."""
    locks = _refresh_locks.setdefault(asyncio.get_running_loop(), {})
    return locks.setdefault(auth.cache_key(settings), asyncio.Lock())


@functools.lru_cache(maxsize=16384)
def _url(base_url: str, path: str) -> yarl.URL:
    """Parsed once per URL: a wait polls the same one every time (aiohttp would parse the string
    on every request)."""
    return yarl.URL(base_url + path)


def _request_options(s: HubSpotConnectionSettings) -> dict[str, Any]:
    """What every request on these settings passes to aiohttp, built once per settings read.

    Timeouts cost timers on the event loop, which a triggerer's thousands of polls share: one per
    request here. ``total`` bounds a whole call at 2 x (connect + read) seconds, at least 120 (a
    status answer is a few hundred bytes, so this is the read timeout of the async hook; generous
    because it also counts the wait for one of the pool's 100 connections, which a poll queued
    behind thousands of others has not failed). ``sock_connect`` bounds opening a connection (a
    timer only when one is opened). Not aiohttp's ``sock_read``: it re-arms a timer on every chunk
    received, a tenth of a poll's CPU on a busy triggerer.
    """
    return {
        "timeout": aiohttp.ClientTimeout(
            total=max(120.0, 2 * (s.connect_timeout + s.read_timeout)), sock_connect=s.connect_timeout
        ),
        "allow_redirects": False,
        "ssl": _ssl_option(s.verify),
        "proxy": (s.proxies or {}).get("https") if s.base_url.startswith("https") else None,
    }


# What a call makes of its answer: (the response, its body, already read, the request's
# ``describe``) -> the call's result. The connection is back in the pool before it runs.
Answer = Callable[[aiohttp.ClientResponse, bytes, str], Any]


class HubSpotAsyncHook(HttpAsyncHook):
    """The async HubSpot hook: ``run()`` to any endpoint, and the export status call of triggers.

    Use it as an async context manager, so that a triggerer's thousand waits share one
    ``aiohttp.ClientSession`` per event loop (Authorization and timeouts are set per request)::

        async with HubSpotAsyncHook("hubspot_default") as hook:
            response = await hook.run("/crm/v3/objects/contacts", data={"limit": 10})
            contacts = await response.json()

    Outside ``async with``, each call opens and gives back the session itself. ``run`` also takes
    ``HttpAsyncHook.run``'s call shape, ``run(session, endpoint, data, json, headers,
    extra_options)``, and sends on the caller's session. ``HttpAsyncHook``'s ``session()`` and
    ``config()`` refuse: they would send the connection's extras as headers and no token.

    :param hubspot_conn_id: the ``hubspot`` connection (see ``HubSpotHook``).
    :param method: the default HTTP method of :meth:`run` (default GET).
    :param log: a logger for retry warnings (a trigger passes its own).
    :param retry_limit: ``HttpAsyncHook``'s knob, kept to its meaning: the attempts per call, in
        place of the connection's ``retry_max_attempts``.
    :param retry_delay: ``HttpAsyncHook``'s knob: the wait (s) before the second attempt after a
        5xx or network error, in place of the connection's ``retry_backoff_seconds``; later waits
        double it, and a 429 waits as HubSpot says (``HttpAsyncHook`` waits the same each time and
        does not honour ``Retry-After``).
    """

    conn_name_attr = "hubspot_conn_id"
    default_conn_name = "hubspot_default"
    conn_type = "hubspot"
    hook_name = "HubSpot"
    default_host = DEFAULT_HOST

    def __init__(
        self,
        hubspot_conn_id: str = default_conn_name,
        method: str = "GET",
        log: Any = None,
        *,
        retry_limit: int | None = None,
        retry_delay: float | None = None,
        **kwargs: Any,
    ) -> None:
        if kwargs.pop("auth_type", None) is not None:
            raise HubSpotExportRequestError(
                "HubSpotAsyncHook takes no auth_type: remove it; the hook authenticates with the "
                "connection's access token (or OAuth refresh) as a Bearer header."
            )
        self._budget = http_hook_budget(retry_limit, retry_delay)
        super().__init__(method=method, http_conn_id=hubspot_conn_id, **kwargs)
        # What the caller gave (None: the connection's budget), not HttpAsyncHook's defaults.
        self.retry_limit, self.retry_delay = retry_limit, retry_delay  # type: ignore[assignment]
        self.hubspot_conn_id = hubspot_conn_id
        self.call_log = log if log is not None else self.log
        self.settings: HubSpotConnectionSettings | None = None
        # The shared entry ``settings`` came from (its loop, weakly; the loop's entries; the entry):
        # whether they are still current is a few lookups, not a weak-dictionary lookup per call.
        self._settings_loop: weakref.ref[asyncio.AbstractEventLoop] | None = None
        self._settings_entries: dict[str, tuple[float, HubSpotConnectionSettings]] = {}
        self._settings_entry: tuple[float, HubSpotConnectionSettings] | None = None
        self._policy = RetryPolicy()
        self._options: dict[str, Any] = {}
        # The headers of a request without its own, for the token the auth flow last said to send
        # (read-only: aiohttp copies them into each request): built once per token, not per poll.
        self._auth_headers: tuple[str | None, Mapping[str, str]] | None = None
        # The status call of the export last asked about: (the id as given, the settings its path
        # was built from, for_wait, the request, its reader). A wait polls one export.
        self._status_call: tuple[Any, HubSpotConnectionSettings, bool, ApiRequest, Answer] | None = None
        self.http_session: aiohttp.ClientSession | None = None
        self._users = 0

    async def __aenter__(self) -> HubSpotAsyncHook:
        await self._read_settings()
        if self.http_session is None:
            self.http_session = _SharedSession.acquire()
        self._users += 1
        return self

    async def _read_settings(self) -> None:
        settings = _SharedSettings.peek(self.hubspot_conn_id)  # a dict lookup, most calls
        if settings is None:
            settings = await _SharedSettings.get(self.hubspot_conn_id)
        loop = asyncio.get_running_loop()
        entries = _SharedSettings._by_loop.get(loop)
        entry = None if entries is None else entries.get(self.hubspot_conn_id)
        if entries is None or entry is None or entry[1] is not settings:
            entries, entry = {}, None  # not the shared entry (gone already): read again next call
        self._settings_loop, self._settings_entries, self._settings_entry = weakref.ref(loop), entries, entry
        if settings is not self.settings:
            self.settings, self.base_url = settings, settings.base_url
            self._options = _request_options(settings)
            self._policy = replace(settings.retry, **self._budget) if self._budget else settings.retry

    def _settings_current(self) -> bool:
        """Whether ``settings`` are still the loop's for this connection and fresh (no await:
        what nearly every poll needs); False after the TTL, a 401 (``forget``) or another read."""
        entry = self._settings_entry
        return (
            entry is not None
            and self._settings_loop is not None
            and self._settings_loop() is asyncio.get_running_loop()
            and self._settings_entries.get(self.hubspot_conn_id) is entry
            and time.monotonic() - entry[0] < SETTINGS_TTL
        )

    async def __aexit__(self, *exc: object) -> None:
        self._users -= 1
        if self._users <= 0:
            await self.close()

    async def close(self) -> None:
        self._users = 0
        if self.http_session is not None:
            session, self.http_session = self.http_session, None
            unused = _SharedSession.release(session)
            if unused is not None:  # shielded: a cancelled trigger still closes what nobody uses
                await asyncio.shield(unused.close())

    # -- what HttpAsyncHook offers that cannot be made safe ----------------------------------------
    async def config(self) -> Any:
        raise NotImplementedError(
            "HubSpotAsyncHook.config() would turn the connection's extras (client secret, refresh "
            "token) into HTTP headers: use `async with HubSpotAsyncHook() as hook: await hook.run(...)`."
        )

    def session(self, method: str | None = None) -> Any:
        raise NotImplementedError(
            "HubSpotAsyncHook.session() would send requests without HubSpot's auth, retries and "
            "redirect refusal: use `async with HubSpotAsyncHook() as hook: await hook.run(...)`."
        )

    # -- any endpoint --------------------------------------------------------------------------
    async def run(
        self,
        session: aiohttp.ClientSession | str | None = None,
        endpoint: str | None = None,
        data: dict[str, Any] | str | None = None,
        json: Any = None,
        headers: dict[str, Any] | None = None,
        extra_options: dict[str, Any] | None = None,
        *,
        method: str | None = None,
        **request_kwargs: Any,
    ) -> aiohttp.ClientResponse:
        """``HubSpotHook.run`` on the event loop: returns the 2xx ``aiohttp.ClientResponse``, its
        body already read (``await response.json()`` works); any other status raises
        :class:`HubSpotExportError` with HubSpot's category and message.

        Two call shapes, one behaviour (HubSpot's auth, retries and error reading):
        ``HttpAsyncHook.run``'s, ``run(session, endpoint, data, json, headers, extra_options)``,
        which sends on the caller's ``aiohttp.ClientSession`` (None: the hook's shared one), and
        ``HubSpotHook.run``'s, ``run(endpoint, data=..., json=..., headers=...)``: the endpoint
        first, the rest by keyword. ``extra_options`` are refused, as on ``HubSpotHook``.
        """
        if isinstance(session, str):  # HubSpotHook.run's shape: the endpoint came first
            if endpoint is not None:
                raise HubSpotExportRequestError(
                    "HubSpotAsyncHook.run got the endpoint first and then a "
                    f"{type(endpoint).__name__} where HttpAsyncHook.run takes the endpoint: with the "
                    "endpoint first, pass the rest by keyword, as run(endpoint, data=..., headers=...), "
                    "or give HttpAsyncHook.run's shape, run(session, endpoint, data, ...)."
                )
            session, endpoint = None, session
        elif session is not None and not isinstance(session, aiohttp.ClientSession):
            raise HubSpotExportRequestError(
                "HubSpotAsyncHook.run takes an aiohttp.ClientSession (or None) as its session, as "
                f"HttpAsyncHook.run does, or the endpoint first; got a {type(session).__name__}. Pass "
                "run(session, '/crm/v3/objects/contacts', ...) or run('/crm/v3/objects/contacts', ...)."
            )
        request = endpoint_request(
            endpoint, method or self.method, data, json, headers, extra_options, request_kwargs
        )
        return await self._call(request, _checked, session)

    # -- one call, with auth and retries ---------------------------------------------------------
    def _headers(self, step: auth_flow.SendRequest) -> Mapping[str, str]:
        """The step's headers; for a request without headers of its own (every API call but
        ``run``'s) they depend on the token alone, and are built once per token."""
        if type(step.request) is not ApiRequest:  # the caller's own headers: as the flow builds them
            return step.headers
        cached = self._auth_headers
        if cached is None or cached[0] != step.token:
            cached = self._auth_headers = (step.token, MappingProxyType(step.headers))
        return cached[1]

    async def _attempt(self, request: ApiRequest, answer: Answer, session: aiohttp.ClientSession) -> Any:
        """One attempt, driven by the auth flow: send, refresh on the flow's word, resend."""
        assert self.settings is not None
        flow = auth_flow.AuthFlow(self.settings, request)
        step = flow.start()
        while True:
            if isinstance(step, auth_flow.SendRequest):
                try:
                    # Awaited, not ``async with``: the body is read and the connection given back
                    # here, without the context managers' two coroutines per request.
                    response = await session.request(
                        request.method,
                        _url(self.settings.base_url, request.path),
                        json=request.json,
                        data=dict(request.form) if request.form else None,
                        headers=self._headers(step),
                        **self._options,
                    )
                    try:
                        body = await response.read()
                    finally:
                        response.release()
                except (aiohttp.ClientError, asyncio.TimeoutError) as err:
                    never_connected = isinstance(
                        err, (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)
                    )
                    raise transient_error(request.describe, err, sent=not never_connected) from None
                step = flow.response_received(response.status)
            elif isinstance(step, auth_flow.RefreshToken):
                await self._refresh_token(step.rejected)
                step = flow.token_refreshed()
            else:
                return answer(response, body, request.describe)

    async def _call(
        self, request: ApiRequest, answer: Answer, session: aiohttp.ClientSession | None = None
    ) -> Any:
        """One call with its retries, on ``session`` (a caller's, from ``run``) or the shared one."""
        if session is None:
            if self.http_session is None:  # not inside `async with`: open and give back around this call
                async with self:
                    return await self._call(request, answer)
            session = self.http_session
        if not self._settings_current():
            await self._read_settings()  # expired, or forgotten after a 401: a long wait sees a rotated token
        policy = self._policy
        started = time.monotonic()
        try:
            try:
                return await self._attempt(request, answer, session)  # most polls: no retry machinery
            except HubSpotExportError as first:
                if not policy.worth_another_try(first, request):
                    raise
                kwargs = policy.tenacity_kwargs(self.call_log, request, started=started)
                return await tenacity.AsyncRetrying(**kwargs)(
                    areplaying(first, self._attempt), request, answer, session
                )
        except HubSpotExportError as err:
            if err.status_code == 401:
                _SharedSettings.forget(self.hubspot_conn_id)
            raise policy.final_error(err, request) from None

    async def call(self, request: ApiRequest, parse: Callable[[Any], Any] = lambda body: body) -> Any:
        """Send one API request with the connection's retry policy; return ``parse(JSON body)``."""

        def answer(response: aiohttp.ClientResponse, body: bytes, describe: str) -> Any:
            return parse(read_response(response.status, response.headers, body, describe))

        return await self._call(request, answer)

    async def _refresh_token(self, rejected: str | None) -> None:
        """One refresh per connection at a time: a thousand waits on one loop share its result."""
        assert self.settings is not None
        s = self.settings
        async with _refresh_lock(s):
            if not auth_flow.refresh_needed(s, rejected):
                return  # another wait refreshed while this one queued
            token = await self.call(auth_flow.refresh_request(s), parse_token_response)
            for secret in auth_flow.accept_token(s, token):
                await amask_secret(secret)
        self.call_log.info("Refreshed the HubSpot OAuth access token (valid for a while; cached).")

    # -- the exports API ---------------------------------------------------------------------------
    @accepts_old_task_id
    async def get_export_status(self, export_task_id: str | int, *, for_wait: bool = False) -> ExportStatus:
        """The export's status, never with the signed URL: a wait does not need it (a download asks
        for a fresh one), so it cannot leak from a trigger, and thousands of waits do not grow the
        secrets masker. ``for_wait``: until the export is final, only its status is read (see
        ``parse_status``). ``task_id=`` is the old name of ``export_task_id`` (deprecated)."""
        return await self._export_status(export_task_id, for_wait)

    def status_poller(self) -> Callable[[str, bool], Awaitable[ExportStatus]]:
        """What a wait calls per poll, ``(export_task_id, for_wait)``: ``get_export_status``, by
        the path of one coroutine less when it is this class's own; a subclass's override (or a
        test's double) is called as it is."""
        if type(self).get_export_status is _OWN_GET_EXPORT_STATUS:
            return self._export_status
        return lambda export_task_id, for_wait: self.get_export_status(export_task_id, for_wait=for_wait)

    def _export_status(self, export_task_id: str | int, for_wait: bool = False) -> Awaitable[ExportStatus]:
        """:meth:`get_export_status` as an awaitable of one coroutine less, for the trigger's polls:
        the request and its reader are built once per export (and settings read), not per poll."""
        cached = self._status_call
        settings = self.settings
        if (
            cached is None
            or cached[0] is not export_task_id
            or cached[1] is not settings
            or cached[2] != for_wait
        ):
            tid = validate_id(export_task_id, "export_task_id")
            if settings is None:
                return self._export_status_opened(tid, for_wait)
            answer = functools.partial(_status_answer, tid, for_wait)
            cached = (export_task_id, settings, for_wait, status_request(settings.api_version, tid), answer)
            self._status_call = cached
        return self._call(cached[3], cached[4])

    async def _export_status_opened(self, export_task_id: str, for_wait: bool) -> ExportStatus:
        async with self:
            return await self._export_status(export_task_id, for_wait)


_OWN_GET_EXPORT_STATUS = HubSpotAsyncHook.get_export_status


def _status_answer(
    export_task_id: str, for_wait: bool, response: Any, body: bytes, describe: str
) -> ExportStatus:
    payload = read_response(response.status, response.headers, body, describe)
    return (
        parse_status(payload, export_task_id, for_wait=True)
        if for_wait
        else _without_url(payload, export_task_id)
    )


def _without_url(body: Any, export_task_id: str) -> ExportStatus:
    return replace(parse_status(body, export_task_id), result_url=None)


def _checked(response: aiohttp.ClientResponse, body: bytes, describe: str) -> aiohttp.ClientResponse:
    if not 200 <= response.status < 300:
        raise error_from_response(response.status, response.headers, body, describe)
    return response


# The name triggers and older code used; the same class.
HubSpotAsyncClient = HubSpotAsyncHook
