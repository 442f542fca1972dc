"""What the sandbox knows: export plans, injected faults, recorded requests and exports. No I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FAULT_KINDS = ("status", "reset", "delay", "non_json", "missing_fields", "unknown_status", "redirect")
REDIRECT_STATUSES = (301, 302, 303, 307, 308)
MOVED_PREFIX = "/moved"  # where a redirect points: the same resource, under this prefix


@dataclass
class ExportPlan:
    """How one export behaves. Time-based by default; poll-based when ``*_polls`` are set, which
    makes a test's sequence of statuses exact whatever the machine's speed."""

    pending_seconds: float = 1.0
    processing_seconds: float = 2.0
    pending_polls: int | None = None
    processing_polls: int | None = None
    cancel: bool = False
    errors: list[dict[str, Any]] = field(default_factory=list)
    row_count: int = 25
    url_ttl: float = 300.0
    expired_urls: int = 0  # the first N signed URLs handed out have already expired
    cut_downloads: int = 0
    download_rate: float | None = None  # bytes per second the file host serves at (None: as fast as it can)
    corrupt: bool | str = False  # True or "data": damage the middle; "directory": a ZIP's directory
    unsafe_zip: bool = False

    @property
    def poll_based(self) -> bool:
        return self.pending_polls is not None or self.processing_polls is not None


@dataclass
class Fault:
    """A misbehaviour for the next ``times`` requests whose path contains ``path``, on the API host
    (``server="api"``, the default) or the file host (``server="files"``).

    kinds: ``status`` (an HTTP error with HubSpot's body), ``reset`` (connection dropped),
    ``delay`` (slow answer), ``non_json`` (a 200 that is not JSON), ``missing_fields`` (a 200 JSON
    without the fields), ``unknown_status`` (a status HubSpot never documented), ``redirect`` (a
    ``status`` of 301, 302, 303, 307 or 308 with a ``Location`` header).

    A redirect points at the same path and query under ``/moved`` (``MOVED_PREFIX``), where the
    same resource is served: a client that follows it gets a normal answer, and the sandbox's
    ``requests`` show whether it went there and with which headers. ``location`` says on which
    listener: ``"same"`` (the one that answered), ``"api"``, ``"files"``, or an absolute URL.
    """

    kind: str = "status"
    status: int = 503
    times: int = 1
    path: str = ""
    method: str | None = None
    retry_after: float | None = None
    delay: float = 0.0
    after: int = 0  # let this many matching requests through first
    server: str = "api"  # or "files"
    location: str = "same"  # for redirects: "same", "api", "files" or an absolute URL

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {FAULT_KINDS}")
        if self.server not in ("api", "files"):
            raise ValueError('fault server must be "api" or "files"')
        if self.kind == "redirect" and self.status not in REDIRECT_STATUSES:
            raise ValueError(f"a redirect fault needs a status in {REDIRECT_STATUSES}, e.g. status=307")

    def matches(self, method: str, path: str, server: str = "api") -> bool:
        return (
            self.times > 0
            and self.server == server
            and self.path in path
            and not path.startswith(MOVED_PREFIX + "/")  # a followed redirect lands, it is not sent on
            and (self.method is None or self.method == method)
        )


@dataclass(frozen=True)
class RecordedRequest:
    server: str  # "api" or "files"
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    peer: str = ""  # client address:port, to see whether connections are reused
    at: float = 0.0  # time.monotonic() when it arrived
    pid: int | None = None  # the sending process and its group, with ``identify_clients=True``
    pgid: int | None = None


@dataclass
class Export:
    id: str
    request: dict[str, Any]
    plan: ExportPlan
    created: float
    api_version: str
    polls: int = 0
    file_path: str | None = None
    downloads: int = 0
    completed_at: float | None = None

    def status(self, now: float) -> str:
        plan = self.plan
        final = "CANCELED" if plan.cancel else "COMPLETE"
        if plan.poll_based:
            pending = plan.pending_polls or 0
            processing = plan.processing_polls or 0
            if self.polls <= pending:
                return "PENDING"
            if self.polls <= pending + processing:
                return "PROCESSING"
            return final
        elapsed = now - self.created
        if elapsed < plan.pending_seconds:
            return "PENDING"
        if elapsed < plan.pending_seconds + plan.processing_seconds:
            return "PROCESSING"
        return final
