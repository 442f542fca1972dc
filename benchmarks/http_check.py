"""The response check the HTTP provider's ``HttpEventTrigger`` needs (it imports it by path)."""

from __future__ import annotations

from typing import Any


async def export_complete(response: Any) -> bool:
    """Done when the sandbox says the export is COMPLETE (``HttpEventTrigger`` wants a coroutine)."""
    return response.json().get("status") == "COMPLETE"
