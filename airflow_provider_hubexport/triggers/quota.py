"""Sleeps out a start refused for HubSpot's daily limit on the triggerer: no worker slot held.

Airflow's own ``DateTimeTrigger`` would do the sleeping, but its event carries only the time, and
a resumed task's other kwargs are not kept everywhere (``dag.test()`` replaces them with the
event): this trigger hands the wait's state back in its event, so the deadline and the count of
refused tries survive every way a task is resumed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent


class HubSpotQuotaWaitTrigger(BaseTrigger):
    """Fires once at ``moment`` (a Unix time) with ``{"quota": quota}``.

    :param moment: when the start should be tried again.
    :param quota: the wait's state (``QuotaWait.to_kwargs()``), returned as it is.
    """

    def __init__(self, moment: float, quota: dict[str, Any]) -> None:
        super().__init__()
        self.moment = float(moment)
        self.quota = dict(quota)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return f"{type(self).__module__}.{type(self).__qualname__}", {
            "moment": self.moment,
            "quota": self.quota,
        }

    async def run(self) -> AsyncIterator[TriggerEvent]:
        # Slept in short steps: an event loop's timer may drift over a long sleep (a suspended VM).
        while (left := self.moment - time.time()) > 0:
            await asyncio.sleep(min(left, 60.0))
        yield TriggerEvent({"quota": self.quota})
