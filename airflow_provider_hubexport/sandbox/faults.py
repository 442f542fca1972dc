"""Misbehaviour on demand: injected faults (errors, resets, delays, malformed answers) and the
API host's per-second rate limit, with the answers HubSpot gives for them."""

from __future__ import annotations

import asyncio
import collections
import threading
import time
import uuid
from typing import Protocol

from aiohttp import web

from airflow_provider_hubexport.sandbox.state import MOVED_PREFIX, Fault
from airflow_provider_hubexport.sandbox.wire import export_limit_error, rate_limit_response


class Addresses(Protocol):
    """Where the sandbox's two listeners are (read when needed: known only once they listen)."""

    @property
    def api_url(self) -> str: ...

    @property
    def files_url(self) -> str: ...


_CATEGORIES = {
    400: "VALIDATION_ERROR",
    401: "INVALID_AUTHENTICATION",
    403: "MISSING_SCOPES",
    404: "OBJECT_NOT_FOUND",
}


class FaultBook:
    """The faults injected so far, each used up by the requests it matches."""

    def __init__(self, lock: threading.Lock) -> None:
        self.faults: list[Fault] = []
        self._lock = lock

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self.faults.append(fault)
        return fault

    def take(self, server: str, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.matches(method, path, server):
                    if fault.after > 0:
                        fault.after -= 1
                        return None
                    fault.times -= 1
                    return fault
        return None


async def apply(fault: Fault, request: web.Request, urls: dict[str, str]) -> web.StreamResponse | None:
    """Answer (or drop) the request as the fault says; None lets it through (after a delay).

    ``urls`` maps "api" and "files" to the listeners' base URLs, for redirects.
    """
    if fault.kind == "reset":
        assert request.transport is not None
        request.transport.abort()
        raise asyncio.CancelledError
    if fault.kind == "delay":
        await asyncio.sleep(fault.delay)
    elif fault.kind == "status":
        return error_response(fault)
    elif fault.kind == "redirect":
        return redirect_response(fault, request, urls)
    elif fault.kind == "gateway_page":
        return web.Response(
            text=_GATEWAY_PAGE.format(status=fault.status),
            status=fault.status,
            content_type="text/html",
            headers={"Server": "cloudflare", "CF-RAY": uuid.uuid4().hex[:16] + "-AMS"},
        )
    elif fault.kind == "export_limit":
        return export_limit_error(None)
    elif fault.kind == "non_json":
        return web.Response(text="<html><body>Bad gateway</body></html>", content_type="text/html")
    elif fault.kind == "missing_fields":
        return web.json_response({"links": {}})
    elif fault.kind == "unknown_status":
        return web.json_response({"status": "EXPLODED", "numErrors": 0, "errors": []})
    return None


_GATEWAY_PAGE = (
    "<!DOCTYPE html><html><head><title>api.hubapi.com | {status}: Bad gateway</title></head><body>"
    "<h1>Bad gateway</h1><p>Error code {status}</p><p>The web server reported a bad gateway error."
    "</p><p>Cloudflare Ray ID: 8f1c2a3b4c5d6e7f</p></body></html>"
)


def error_response(fault: Fault) -> web.Response:
    if fault.status == 429:
        headers = {"X-HubSpot-RateLimit-Interval-Milliseconds": "1000", "X-HubSpot-RateLimit-Max": "10"}
        if fault.retry_after is not None:
            headers["Retry-After"] = str(fault.retry_after)
        return rate_limit_response(headers)
    headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
    body = {
        "status": "error",
        "message": "internal error" if fault.status >= 500 else "injected error",
        "correlationId": str(uuid.uuid4()),
        "category": _CATEGORIES.get(fault.status, "INTERNAL_ERROR"),
    }
    return web.json_response(body, status=fault.status, headers=headers)


def redirect_response(fault: Fault, request: web.Request, urls: dict[str, str]) -> web.Response:
    """A 3xx to the same path and query under ``MOVED_PREFIX``, on the listener ``fault.location`` names."""
    if fault.location == "same":
        base = str(request.url.origin())
    else:
        base = urls.get(fault.location, fault.location).rstrip("/")
    location = f"{base}{MOVED_PREFIX}{request.path_qs}"
    return web.Response(status=fault.status, headers={"Location": location}, text=f"Moved to {location}")


class RateLimiter:
    """A sliding window over the API requests of the last ``window`` seconds."""

    def __init__(self, lock: threading.Lock) -> None:
        self._recent: collections.deque[float] = collections.deque()
        self._lock = lock

    def check(self, rate_limit: tuple[int, float] | None, retry_after: bool) -> web.Response | None:
        """None if the request may pass, else HubSpot's 429 (with Retry-After if ``retry_after``)."""
        if rate_limit is None:
            return None
        limit, window = rate_limit
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
        if retry_after:
            headers["Retry-After"] = f"{max(wait, 0.01):.2f}"
        return rate_limit_response(headers)


async def inject(
    faults: FaultBook, addresses: Addresses, server: str, request: web.Request
) -> web.StreamResponse | None:
    """Apply the first fault in ``faults`` that matches this request on ``server`` ("api" or "files")."""
    fault = faults.take(server, request.method, request.path)
    if fault is None:
        return None
    return await apply(fault, request, {"api": addresses.api_url, "files": addresses.files_url})
