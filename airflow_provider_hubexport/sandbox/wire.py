"""HubSpot's wire shapes the sandbox answers with, and the record of every request it received."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone
from typing import Any

from aiohttp import web

from airflow_provider_hubexport.sandbox.peers import ClientProcesses
from airflow_provider_hubexport.sandbox.state import RecordedRequest


def iso(ts: float) -> str:
    return (
        datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def hubspot_error(status: int, message: str, category: str, **extra: Any) -> web.Response:
    """An error in HubSpot's body shape."""
    body = {"status": "error", "message": message, "correlationId": str(uuid.uuid4()), "category": category}
    body.update(extra)
    return web.json_response(body, status=status)


def rate_limit_response(headers: dict[str, str]) -> web.Response:
    """HubSpot's 429 for its per-second limit."""
    body = {
        "status": "error",
        "message": "You have reached your secondly limit.",
        "errorType": "RATE_LIMIT",
        "correlationId": str(uuid.uuid4()),
        "policyName": "SECONDLY",
    }
    return web.json_response(body, status=429, headers=headers)


class Recorder:
    """Appends each request, as it arrived, to ``requests`` (the sandbox's public list)."""

    def __init__(self, requests: list[RecordedRequest], clients: ClientProcesses | None) -> None:
        self.requests = requests
        self._clients = clients

    async def record(self, request: web.Request, server: str) -> None:
        arrived = time.monotonic()  # before the sender's lookup, which may wait for a scan
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
                at=arrived,
                pid=pid,
                pgid=pgid,
            )
        )


def export_limit_error(limit: tuple[int, float] | None) -> web.Response:
    """HubSpot's 429 for its export limit (30 per rolling 24 hours; ``None``: that default); no Retry-After, as HubSpot."""
    count, window = limit or (30, 86400.0)
    period = "24 hour" if window == 86400 else f"{window:g} second"
    return hubspot_error(
        429,
        f"You have reached the limit of {count} exports in a rolling {period} period.",
        "RATE_LIMITS",
        subCategory="ExportLimitError.DAILY_EXPORT_LIMIT",
    )
