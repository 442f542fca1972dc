"""Waiting out HubSpot's export limit (30 starts per rolling 24 hours): when to try a refused start
again, and when to give up. No I/O: the start operators sleep or defer as this says.

A refused start costs HubSpot nothing, so trying again every ``interval`` is harmless; the deadline
is wall-clock time (not a monotonic clock) because a deferred wait resumes in another process,
possibly on another machine.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

DEFAULT_QUOTA_RETRY_INTERVAL = 900.0  # 15 minutes: 96 cheap tries a day at most
DEFAULT_QUOTA_WAIT_TIMEOUT = 24 * 3600.0  # a full window: by then the oldest start has aged out


@dataclass(frozen=True)
class QuotaWait:
    """One task's wait for the window to free up, carried across deferrals in the task's kwargs."""

    interval: float
    deadline: float  # epoch seconds
    refused: int = 0  # refused tries so far

    @classmethod
    def begin(cls, now: float, interval: float, timeout: float) -> QuotaWait:
        return cls(interval=max(float(interval), 0.0), deadline=now + max(float(timeout), 0.0))

    def after_refusal(self, now: float) -> tuple[QuotaWait, float | None]:
        """This wait with one more refusal, and the seconds until the next try: a full interval, or
        what is left before the deadline (one last try there); None once the deadline has passed."""
        later = replace(self, refused=self.refused + 1)
        if now >= self.deadline:
            return later, None
        return later, min(self.interval, self.deadline - now)

    def to_kwargs(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_kwargs(cls, data: Any) -> QuotaWait | None:
        if not isinstance(data, dict):
            return None
        try:
            return cls(float(data["interval"]), float(data["deadline"]), int(data.get("refused", 0)))
        except (KeyError, TypeError, ValueError):
            return None
