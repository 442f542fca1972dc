"""Which local process sent a request: the process that owns the client end of the connection,
looked up once per connection when its first request arrives (while it is certainly open).

Tests of real Airflow use it to say "the triggerer polled" from the sandbox's own complete record
instead of sampling sockets from outside. Off by default: each new connection costs a scan of the
machine's sockets, which a benchmark with thousands of connections should not pay.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any


class ClientProcesses:
    """Maps a connection's peer address to ``(pid, process group)``; ``(None, None)`` if unknown."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, int], tuple[int, int | None, int | None]] = {}
        self._lock: asyncio.Lock | None = None

    async def identify(self, transport: Any) -> tuple[int | None, int | None]:
        peer = transport.get_extra_info("peername") if transport is not None else None
        if not peer:
            return None, None
        key = (str(peer[0]), int(peer[1]))
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # one scan at a time; a scan answers for every open connection
            known = self._known.get(key)
            if known is None or known[0] != id(transport):
                found = await asyncio.get_running_loop().run_in_executor(None, _scan, key)
                known = (id(transport), *found)
                self._known[key] = known
        return known[1], known[2]


def _scan(peer: tuple[str, int]) -> tuple[int | None, int | None]:
    import psutil

    for conn in psutil.net_connections(kind="tcp"):
        if conn.pid and conn.laddr and (conn.laddr.ip, conn.laddr.port) == peer:
            try:
                return conn.pid, os.getpgid(conn.pid)
            except ProcessLookupError:
                return conn.pid, None
    return None, None
