"""Starting and stopping the sandbox: its TCP listeners, and the private event loop in a thread that
serves them when the sandbox runs inside a test or a script (``python -m`` uses the caller's loop)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable

from aiohttp import web


class Listeners:
    """aiohttp apps bound to TCP ports; ``open`` returns the port actually bound (for port 0)."""

    def __init__(self) -> None:
        self._runners: list[web.AppRunner] = []

    async def open(self, app: web.Application, host: str, port: int) -> int:
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        self._runners.append(runner)
        await web.TCPSite(runner, host, port, reuse_address=True).start()
        return int(runner.addresses[0][1])  # (host, port[, flowinfo, scope id]) of its one site

    async def close(self) -> None:
        runners, self._runners = self._runners, []
        for runner in runners:
            await runner.cleanup()


class LoopThread:
    """Runs ``start()`` then serves on a new event loop in a daemon thread until ``stop()``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(
        self,
        start: Callable[[], Awaitable[None]],
        stop: Callable[[], Awaitable[None]],
        timeout: float = 30,
    ) -> None:
        """Returns once ``start()`` finished in the thread; raises what it raised."""
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(start())
            except BaseException as err:  # reported to the caller below
                failure.append(err)
                started.set()
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(stop())
            loop.close()

        self._thread = threading.Thread(target=run, name=self.name, daemon=True)
        self._thread.start()
        if not started.wait(timeout):
            raise RuntimeError(f"the sandbox did not start within {timeout:.0f} s")
        if failure:
            raise failure[0]

    def stop(self, timeout: float = 30) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)
            self._thread = None
