"""One triggerer-density measurement: N waits in one event loop, in a process of their own.

``python -m benchmarks.density_child IMPL --complete-after S --timeout T``, with IMPL one of
``ours`` (HubSpotExportTrigger.run; ``ours-cache`` and ``ours-file`` the same, in the environment
of a variant the parent sets up), ``http`` (the HTTP provider's HttpEventTrigger) or ``floor``
(a bare aiohttp loop over one shared ClientSession). The process imports what IMPL needs, prints
``ready``, reads the export ids (a JSON list) from stdin, resets its peak RSS, runs the N waits
and prints one JSON line of figures. A fresh process per measurement keeps RSS clean.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import json
import math
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from benchmarks import procstat

IMPLS = ("ours", "ours-cache", "ours-file", "ours-gc-frozen", "http", "floor")
HTTP_CONN_ID = "hubspot_http"  # an ``http`` connection to the sandbox, Authorization in its extras
POLL_INTERVAL = 1.0
MAX_POLLS = 600  # the floor loop's bound; the triggers are bounded by the overall timeout

# (arrival time, the export's requestedAt) of one finished wait
Outcome = tuple[float, str]


def _prepare(impl: str) -> Callable[[str], Awaitable[Outcome]]:
    """Import everything the waits will use, so imports are not counted as waiting cost."""
    if impl.startswith("ours"):  # the variants differ in their environment, set by the parent
        from airflow_provider_hubexport.hooks import hubspot_async  # noqa: F401 (run() imports it lazily)
        from airflow_provider_hubexport.triggers.export import HubSpotExportTrigger

        async def wait_ours(task_id: str) -> Outcome:
            # As a deferring sensor hands it over: the status its check before deferring saw.
            trigger = HubSpotExportTrigger(
                export_task_id=task_id,
                poll_interval=POLL_INTERVAL,
                backoff_factor=1.0,
                max_poll_interval=1,
                last_status="PROCESSING",
            )
            async for event in trigger.run():
                payload = event.payload
                if payload.get("status") != "success":
                    raise RuntimeError(f"event {payload}")
                return time.time(), payload["export"]["requested_at"]
            raise RuntimeError("no event")

        return wait_ours

    if impl == "http":
        from airflow.providers.http.triggers.http import HttpEventTrigger

        import benchmarks.http_check  # noqa: F401 (the trigger imports it by path)

        async def wait_http(task_id: str) -> Outcome:
            trigger = HttpEventTrigger(
                response_check_path="benchmarks.http_check.export_complete",
                http_conn_id=HTTP_CONN_ID,
                method="GET",
                endpoint=f"/crm/v3/exports/export/async/tasks/{task_id}/status",
                poll_interval=POLL_INTERVAL,
            )
            async for event in trigger.run():
                payload = event.payload
                if payload.get("status") != "success":
                    raise RuntimeError(f"event {payload}")
                body = json.loads(base64.standard_b64decode(payload["response"]["content"]))
                return time.time(), body["requestedAt"]
            raise RuntimeError("no event")

        return wait_http

    import aiohttp

    conn = json.loads(os.environ["AIRFLOW_CONN_HUBSPOT_DEFAULT"])
    base, auth = conn["host"], {"Authorization": f"Bearer {conn['password']}"}
    session: list[aiohttp.ClientSession] = []  # created inside the loop, shared by every wait

    async def wait_floor(task_id: str) -> Outcome:
        if not session:
            session.append(aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)))
        url = f"{base}/crm/v3/exports/export/async/tasks/{task_id}/status"
        for _ in range(MAX_POLLS):
            await asyncio.sleep(POLL_INTERVAL)  # like our trigger: the caller checked before waiting
            async with session[0].get(url, headers=auth) as response:
                body = await response.json()
            if body.get("status") == "COMPLETE":
                return time.time(), body["requestedAt"]
        raise RuntimeError(f"export {task_id} not COMPLETE after {MAX_POLLS} polls")

    async def close() -> None:
        if session:
            await session[0].close()

    wait_floor.close = close  # type: ignore[attr-defined]
    return wait_floor


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


async def _run_all(
    wait: Callable[[str], Awaitable[Outcome]], ids: list[str], timeout: float, spread: float
) -> list[tuple[float, float] | BaseException]:
    """Start the waits evenly over ``spread`` seconds (as deferrals reach a triggerer); each outcome
    is (when its event arrived, when the wait began)."""
    first = time.time()

    async def staggered(i: int, task_id: str) -> tuple[float, float]:
        await asyncio.sleep(max(0.0, first + spread * i / len(ids) - time.time()))
        began = time.time()
        arrival, _ = await wait(task_id)
        return arrival, began

    tasks = [asyncio.ensure_future(staggered(i, task_id)) for i, task_id in enumerate(ids)]
    done, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    close = getattr(wait, "close", None)
    if close is not None:
        await close()
    return [
        t.exception() or t.result() if t in done else TimeoutError(f"not done in {timeout} s") for t in tasks
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.density_child")
    p.add_argument("impl", choices=IMPLS)
    p.add_argument(
        "--complete-after",
        type=float,
        required=True,
        help="seconds after a wait begins that its event is due (the polls until COMPLETE x the interval)",
    )
    p.add_argument("--spread", type=float, default=1.0, help="start the waits over this many seconds")
    p.add_argument("--timeout", type=float, default=300.0, help="give up on the waits after this long")
    args = p.parse_args(argv)

    channel = procstat.protocol_channel()
    wait = _prepare(args.impl)
    print("ready", file=channel, flush=True)
    ids: list[str] = json.loads(sys.stdin.readline())

    gc.collect()
    if os.environ.get("BENCH_GC_FREEZE"):  # diagnostic variant: full collections skip the imports' objects
        gc.freeze()
    procstat.reset_peak_rss()
    rss_before = procstat.rss_bytes()
    cpu_before = procstat.cpu_seconds()
    started = time.monotonic()
    outcomes = asyncio.run(_run_all(wait, ids, args.timeout, args.spread))
    wall = time.monotonic() - started
    cpu = procstat.cpu_seconds() - cpu_before
    peak = procstat.peak_rss_bytes()

    lateness = [
        arrival - (began + args.complete_after)
        for arrival, began in (o for o in outcomes if isinstance(o, tuple))
    ]
    failures = [repr(o)[:300] for o in outcomes if not isinstance(o, tuple)]
    result: dict[str, Any] = {
        "impl": args.impl,
        "n": len(ids),
        "ok": len(lateness),
        "failures": len(failures),
        "first_failures": failures[:3],
        "cpu_s": cpu,
        "wall_s": wall,
        "rss_before": rss_before,
        "peak_rss": peak,
        "lateness_p50": _percentile(lateness, 50) if lateness else None,
        "lateness_p99": _percentile(lateness, 99) if lateness else None,
        "lateness_max": max(lateness) if lateness else None,
    }
    print(json.dumps(result), file=channel, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
