"""One triggerer-density measurement: N waits in one event loop, in a process of their own.

``python -m benchmarks.density_child IMPL --complete-after S --timeout T``, with IMPL one of
``ours`` (HubSpotExportTrigger.run; ``ours-cache`` and ``ours-file`` the same, in the environment
of a variant the parent sets up), ``http`` (the HTTP provider's HttpEventTrigger), ``floor``
(a bare aiohttp loop over one shared ClientSession) or ``floor-airflow`` (the floor's loop in a
process that has made ours' imports: what Airflow's heap alone does to the waits, through Python's
full collections, which walk it). The process imports what IMPL needs, prints
``ready``, reads the export ids (a JSON list) from stdin, resets its peak RSS, runs the N waits
and prints one JSON line of figures. A fresh process per measurement keeps RSS clean.

By hand, to find where lateness comes from: ``BENCH_STALLS=1`` samples the loop every 2 ms and
reports its stalls (with the GC collections inside them), the GC's collections per second and the
latest waits; ``BENCH_PROFILE=path`` writes a cProfile of the waits; ``BENCH_GC_THRESHOLD=700,10,1000``
sets the collector's thresholds (that one: no full collection during a run).
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

IMPLS = ("ours", "ours-cache", "ours-file", "http", "floor", "floor-airflow")
HTTP_CONN_ID = "hubspot_http"  # an ``http`` connection to the sandbox, Authorization in its extras
POLL_INTERVAL = 1.0
MAX_POLLS = 600  # the floor loop's bound; the triggers are bounded by the overall timeout

# (arrival time, the export's requestedAt) of one finished wait
Outcome = tuple[float, str]


def _prepare(impl: str) -> Callable[[str], Awaitable[Outcome]]:
    """Import everything the waits will use, so imports are not counted as waiting cost."""
    if impl.startswith("ours"):  # the variants differ in their environment, set by the parent
        from airflow_provider_hubexport.compat import aget_connection
        from airflow_provider_hubexport.hooks import hubspot_async  # noqa: F401 (run() imports it lazily)
        from airflow_provider_hubexport.triggers.export import HubSpotExportTrigger

        # A triggerer that has run a trigger before has imported what reading a connection needs
        # (Airflow imports it lazily, 21 modules on 3.3); the waits still read it, once per loop.
        asyncio.run(aget_connection("hubspot_default"))

        async def wait_ours(task_id: str) -> Outcome:
            # As a deferring sensor hands it over: the status its check before deferring saw.
            trigger = HubSpotExportTrigger(
                export_task_id=task_id,
                poll_interval=POLL_INTERVAL,
                backoff_factor=1.0,
                max_poll_interval=1,
                last_status="PROCESSING",
            )
            outcome: Outcome | None = None
            async for event in trigger.run():  # to its end, as Airflow's triggerer runs a trigger
                payload = event.payload
                if outcome is not None or payload.get("status") != "success":
                    raise RuntimeError(f"event {payload}")
                outcome = time.time(), payload["export"]["requested_at"]
            if outcome is None:
                raise RuntimeError("no event")
            return outcome

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

    if impl == "floor-airflow":  # diagnostic: the floor's loop in a process holding ours' imports
        _prepare("ours")

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


class _Pauses:
    """What stopped the loop while the waits ran, for the misses' notes: Python's collections (by
    generation, timed through ``gc.callbacks``), modules imported after the waits began, and, with
    ``BENCH_STALLS`` set (by hand: the sampler wakes every 2 ms and so costs CPU), the loop's stalls."""

    STALL_S = 0.010  # a sampler wake-up this late counts as a stall

    def __init__(self) -> None:
        self.gc: list[tuple[int, float, float]] = []  # (generation, start, seconds)
        self._gc_start = 0.0
        self.stalls: list[tuple[float, float]] = []  # (when, seconds)
        self.modules_before: set[str] = set()

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_start = time.perf_counter()
        else:
            self.gc.append((info["generation"], self._gc_start, time.perf_counter() - self._gc_start))

    def __enter__(self) -> _Pauses:
        self.modules_before = set(sys.modules)
        self.t0 = time.perf_counter()
        gc.callbacks.append(self._on_gc)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._on_gc)

    async def sample(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(0.002)
            late = time.perf_counter() - before - 0.002
            if late >= self.STALL_S:
                self.stalls.append((before - self.t0, late))

    def figures(self) -> dict[str, Any]:
        by_gen = {g: [d for gen, _, d in self.gc if gen == g] for g in (0, 1, 2)}
        out: dict[str, Any] = {
            f"gc{g}": {"count": len(d), "total_s": sum(d), "max_s": max(d, default=0.0)}
            for g, d in by_gen.items()
        }
        out["imported_during_waits"] = sorted(set(sys.modules) - self.modules_before)
        if os.environ.get("BENCH_STALLS"):
            gc_spans = [(start - self.t0, start - self.t0 + d, g) for g, start, d in self.gc]
            worst = sorted(self.stalls, key=lambda s: -s[1])[:15]
            per_second: dict[int, list[int]] = {}
            for g, start, _ in self.gc:
                per_second.setdefault(int(start - self.t0), [0, 0, 0])[g] += 1
            out["gc_per_second"] = dict(sorted(per_second.items()))
            out["stalls"] = {
                "count": len(self.stalls),
                "total_s": sum(s for _, s in self.stalls),
                "worst": [
                    {
                        "at_s": round(at, 3),
                        "s": round(s, 4),
                        "gc": [g for a, b, g in gc_spans if a < at + s + 0.002 and b > at],
                    }
                    for at, s in worst
                ],
            }
        return out


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


async def _run_all(
    wait: Callable[[str], Awaitable[Outcome]], ids: list[str], timeout: float, spread: float, pauses: _Pauses
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
    sampler = asyncio.ensure_future(pauses.sample()) if os.environ.get("BENCH_STALLS") else None
    done, pending = await asyncio.wait(tasks, timeout=timeout)
    if sampler is not None:
        sampler.cancel()
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
    full_gc_started = time.perf_counter()
    gc.collect()  # what one full collection costs in this process before the waits add to its heap
    full_gc_s = time.perf_counter() - full_gc_started
    gc_objects = len(gc.get_objects())
    threshold = os.environ.get("BENCH_GC_THRESHOLD")  # by hand, e.g. "700,10,1000": no full collection
    if threshold:
        gc.set_threshold(*(int(t) for t in threshold.split(",")))
    procstat.reset_peak_rss()
    rss_before = procstat.rss_bytes()
    cpu_before = procstat.cpu_seconds()
    stolen_before = procstat.stolen_seconds()
    started = time.monotonic()
    profile_to = os.environ.get("BENCH_PROFILE")  # by hand: a cProfile of the waits, to this path
    if profile_to:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    with _Pauses() as pauses:
        outcomes = asyncio.run(_run_all(wait, ids, args.timeout, args.spread, pauses))
    if profile_to:
        profiler.disable()
        profiler.dump_stats(profile_to)
    wall = time.monotonic() - started
    cpu = procstat.cpu_seconds() - cpu_before
    stolen = procstat.stolen_seconds() - stolen_before
    peak = procstat.peak_rss_bytes()

    lateness = [
        arrival - (began + args.complete_after)
        for arrival, began in (o for o in outcomes if isinstance(o, tuple))
    ]
    failures = [repr(o)[:300] for o in outcomes if not isinstance(o, tuple)]
    finished = [o for o in outcomes if isinstance(o, tuple)]
    if os.environ.get("BENCH_STALLS") and finished:  # which waits were late: when they began, by how much
        first = min(began for _, began in finished)
        latest = sorted(finished, key=lambda o: -(o[0] - o[1]))[: max(10, len(finished) // 100)]
        pauses_latest = [(round(b - first, 3), round(a - b - args.complete_after, 3)) for a, b in latest]
    else:
        pauses_latest = None
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
        "stolen_s": stolen,
        "full_gc_s": full_gc_s,
        "gc_objects": gc_objects,
        **pauses.figures(),
        "latest_waits": pauses_latest,
    }
    print(json.dumps(result), file=channel, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
