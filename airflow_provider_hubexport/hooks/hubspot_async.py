"""The async side of the HubSpot hook, for triggers: the same wire format, auth and retry policy
as ``HubSpotHook``, sent with aiohttp on the triggerer's event loop.

A triggerer holds thousands of waits, so they share one ``aiohttp.ClientSession`` per event loop
(one connection pool); Authorization and timeouts are set per request, so sharing is safe across
connections. The session closes when the last client on the loop is done.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import aiohttp
import tenacity

from airflow_provider_hubexport.compat import aget_connection, amask_secret, base_hook_class
from airflow_provider_hubexport.hooks import auth
from airflow_provider_hubexport.hooks.connection import USER_AGENT, HubSpotConnectionSettings
from airflow_provider_hubexport.models import (
    ApiRequest,
    ExportStatus,
    parse_status,
    parse_token_response,
    read_response,
    status_request,
    token_refresh_request,
    transient_error,
    validate_id,
)


def _ssl_option(verify: bool | str) -> Any:
    """requests' ``verify`` (True, False or a CA bundle path) in aiohttp's terms."""
    if verify is True:
        return True
    if verify is False:
        return False
    import ssl

    return ssl.create_default_context(cafile=str(verify))


async def _mask(secret: str) -> None:
    await amask_secret(secret)


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
    async def release(cls, session: aiohttp.ClientSession) -> None:
        loop = asyncio.get_running_loop()
        shared = cls._by_loop.get(loop)
        if shared is None or shared.session is not session:
            await session.close()
            return
        shared.users -= 1
        if shared.users <= 0:
            del cls._by_loop[loop]
            await session.close()


_refresh_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


class HubSpotAsyncClient:
    """Use as ``async with HubSpotAsyncClient(conn_id) as client: await client.get_export_status(id)``."""

    def __init__(self, hubspot_conn_id: str = "hubspot_default", log: Any = None) -> None:
        self.hubspot_conn_id = hubspot_conn_id
        self.settings: HubSpotConnectionSettings | None = None
        self.session: aiohttp.ClientSession | None = None
        self.log = log or base_hook_class()().log

    async def __aenter__(self) -> HubSpotAsyncClient:
        conn = await aget_connection(self.hubspot_conn_id)
        self.settings = HubSpotConnectionSettings.from_connection(conn, self.hubspot_conn_id)
        for secret in auth.not_yet_masked(self.settings.secrets):
            await _mask(secret)
        self.session = _SharedSession.acquire()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        # Shielded: a cancelled trigger must still give its session back.
        if self.session is not None:
            session, self.session = self.session, None
            await asyncio.shield(_SharedSession.release(session))

    async def _send(self, request: ApiRequest, token: str | None) -> tuple[int, Any, bytes]:
        assert self.settings is not None and self.session is not None
        s = self.settings
        headers = {"Authorization": f"Bearer {token}"} if request.authenticated else {}
        timeout = aiohttp.ClientTimeout(
            total=s.connect_timeout + s.read_timeout, connect=s.connect_timeout, sock_read=s.read_timeout
        )
        try:
            async with self.session.request(
                request.method,
                s.base_url + request.path,
                json=request.json,
                data=dict(request.form) if request.form else None,
                headers=headers,
                timeout=timeout,
                allow_redirects=False,
                ssl=_ssl_option(s.verify),
                proxy=(s.proxies or {}).get("https") if s.base_url.startswith("https") else None,
            ) as response:
                return response.status, response.headers, await response.read()
        except (aiohttp.ClientError, asyncio.TimeoutError) as err:
            never_connected = isinstance(err, (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError))
            raise transient_error(request.describe, err, sent=not never_connected) from None

    async def _send_once(self, request: ApiRequest, parse: Callable[[Any], Any]) -> Any:
        assert self.settings is not None
        settings = self.settings
        token = None
        if request.authenticated:
            if auth.needs_refresh(settings):
                await self._refresh_token(None)
            token = auth.cached_token(settings)
        status, headers, body = await self._send(request, token)
        if status == 401 and request.authenticated and settings.oauth:
            # Refresh once and retry once; a second 401 is final.
            auth.forget_token(settings, token)
            await self._refresh_token(token)
            status, headers, body = await self._send(request, auth.cached_token(settings))
        return parse(read_response(status, headers, body, request.describe))

    async def call(self, request: ApiRequest, parse: Callable[[Any], Any] = lambda body: body) -> Any:
        assert self.settings is not None
        kwargs = self.settings.retry.tenacity_kwargs(
            self.log, request.describe, idempotent=request.idempotent
        )
        return await tenacity.AsyncRetrying(**kwargs)(self._send_once, request, parse)

    async def _refresh_token(self, rejected: str | None) -> None:
        """One refresh per connection at a time: a thousand waits on one loop share its result."""
        assert self.settings is not None
        s = self.settings
        locks = _refresh_locks.setdefault(asyncio.get_running_loop(), {})
        async with locks.setdefault(auth.cache_key(s), asyncio.Lock()):
            current = auth.cached_token(s)
            if not auth.needs_refresh(s) and current != rejected:
                return  # another wait refreshed while this one queued
            token = await self.call(
                token_refresh_request(s.client_id or "", s.client_secret or "", s.refresh_token or ""),
                parse_token_response,
            )
            for secret in auth.not_yet_masked([token.token]):
                await _mask(secret)
            auth.store_token(s, token)

    async def get_export_status(self, task_id: str | int) -> ExportStatus:
        assert self.settings is not None
        tid = validate_id(task_id, "export_task_id")
        status = await self.call(
            status_request(self.settings.api_version, tid), lambda body: parse_status(body, tid)
        )
        # A wait never needs the signed URL (a download asks for a fresh one), so it is dropped here:
        # it cannot leak from a trigger, and thousands of waits do not grow the secrets masker.
        return replace(status, result_url=None)
