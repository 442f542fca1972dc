"""API economy in simulated time: status calls spent waiting for exports of a given length.

``python -m benchmarks.economy_child``: an in-process sandbox (fine here: this counts calls, it
does not time anything) and ``HubSpotExportTrigger.run()`` share one fake clock, as in
tests/test_trigger.py::test_two_hour_export_costs_tens_of_calls: the trigger module's ``time``
and ``asyncio`` are replaced, so a two-hour wait takes milliseconds while every status call is a
real HTTP request that the sandbox answers and counts. Prints one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import types
from typing import Any

from benchmarks import procstat
from benchmarks.common import EXPORT_REQUEST

DURATIONS = (60, 600, 7200)
FIXED_POKE = {"poll_interval": 60.0, "backoff_factor": 1.0, "max_poll_interval": 60.0}


def main() -> int:
    channel = procstat.protocol_channel()

    import airflow_provider_hubexport.triggers.export as trigger_module
    from airflow_provider_hubexport import polling
    from airflow_provider_hubexport.hooks.hubspot import HubSpotHook
    from airflow_provider_hubexport.sandbox import Sandbox

    defaults = {  # what a sensor gets when it sets nothing
        "poll_interval": polling.DEFAULT_POLL_INTERVAL,
        "backoff_factor": polling.DEFAULT_BACKOFF_FACTOR,
        "max_poll_interval": polling.DEFAULT_MAX_POLL_INTERVAL,
    }
    schedules = {"ours": defaults, "fixed60": FIXED_POKE}
    clock = {"now": time.time()}
    sleeps: list[float] = []
    real_sleep = asyncio.sleep

    async def fake_sleep(seconds: float) -> None:
        clock["now"] += seconds
        sleeps.append(seconds)
        await real_sleep(0)

    trigger_module.time = types.SimpleNamespace(time=lambda: clock["now"])  # type: ignore[assignment]
    trigger_module.asyncio = types.SimpleNamespace(sleep=fake_sleep)  # type: ignore[assignment]

    results: list[dict[str, Any]] = []
    with Sandbox() as sandbox:
        sandbox.clock = lambda: clock["now"]
        os.environ["AIRFLOW_CONN_HUBSPOT_DEFAULT"] = sandbox.connection_json()
        hook = HubSpotHook()
        for name, schedule in schedules.items():
            for duration in DURATIONS:
                sandbox.plan_next(pending_seconds=duration / 2, processing_seconds=duration / 2, row_count=1)
                task_id = hook.start_export(EXPORT_REQUEST)
                begin = clock["now"]
                first = hook.get_export_status(task_id)  # the sensor's check before deferring
                assert not first.is_final
                sleeps.clear()
                trigger = trigger_module.HubSpotExportTrigger(
                    export_task_id=task_id, started_at=begin, deadline=begin + 86400, **schedule
                )

                async def events(t: Any = trigger) -> list[dict[str, Any]]:
                    return [event.payload async for event in t.run()]

                (event,) = asyncio.run(events())
                if event["status"] != "success":
                    raise RuntimeError(f"unexpected event {event}")
                calls = sandbox.exports[task_id].polls  # every status request the sandbox answered
                results.append(
                    {
                        "schedule": name,
                        "duration": duration,
                        "calls": calls,  # the check before deferring included
                        "trigger_polls": len(sleeps),
                        "added_wait": clock["now"] - (begin + duration),
                        "last_interval": sleeps[-1] if sleeps else 0.0,
                    }
                )
        hook.close()
    print(json.dumps({"schedules": schedules, "results": results}), file=channel, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
