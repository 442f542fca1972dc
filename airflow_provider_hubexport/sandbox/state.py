"""What the sandbox knows: export plans, injected faults, recorded requests, exports and how they
queue, the starts HubSpot's export limit allows, and the export book that keeps them. No I/O."""

from __future__ import annotations

import collections
import copy
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

FAULT_KINDS = (
    "status",
    "reset",
    "delay",
    "non_json",
    "missing_fields",
    "unknown_status",
    "redirect",
    "gateway_page",
    "export_limit",
)
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
    # The population of generated records of the export's object type, set when it starts (an
    # unfiltered export has this many rows); None: the CRM's standing population (25 unless set).
    row_count: int | None = None
    url_ttl: float = 300.0
    expired_urls: int = 0  # the first N signed URLs handed out have already expired
    cut_downloads: int = 0
    download_rate: float | None = None  # bytes per second the file host serves at (None: as fast as it can)
    corrupt: bool | str = False  # True or "data": damage the middle; "directory": a ZIP's directory
    unsafe_zip: bool = False
    # "gzip": the file host sends the file gzip-encoded, with ``Content-Encoding: gzip`` and the
    # encoded length, whatever the client asked for (as S3 does for an object stored that way).
    content_encoding: str | None = None

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
    ``status`` of 301, 302, 303, 307 or 308 with a ``Location`` header), ``gateway_page`` (the CDN's
    own HTML error page, e.g. Cloudflare's 502, with ``status``: HubSpot's application never saw
    the request), ``export_limit`` (HubSpot's 429 for its 30-exports-per-24-hours limit, whatever
    the sandbox's own ``export_limit`` says).

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
    """One export. Its pending time (or polls) counts from ``released_at`` (``released_polls``):
    its start, or, when HubSpot runs one export at a time, the moment the line ahead of it cleared."""

    id: str
    request: dict[str, Any]
    plan: ExportPlan
    created: float
    api_version: str
    polls: int = 0
    file_path: str | None = None
    downloads: int = 0
    completed_at: float | None = None  # set when a status request first sees it final
    released_at: float | None = None  # None: waiting behind another export
    released_polls: int = 0  # status requests it got before it was released (they do not count)
    processing_seen: float | None = None  # poll-counted plans: the status request that left PENDING

    def status(self, now: float) -> str:
        plan = self.plan
        final = "CANCELED" if plan.cancel else "COMPLETE"
        if self.released_at is None:
            return "PENDING"
        if plan.poll_based:
            pending = plan.pending_polls or 0
            processing = plan.processing_polls or 0
            polls = self.polls - self.released_polls
            if polls <= pending:
                return "PENDING"
            if polls <= pending + processing:
                return "PROCESSING"
            return final
        elapsed = now - self.released_at
        if elapsed < plan.pending_seconds:
            return "PENDING"
        if elapsed < plan.pending_seconds + plan.processing_seconds:
            return "PROCESSING"
        return final

    def processing_since(self, now: float) -> float | None:
        """When it left PENDING, if it has by ``now``: exact for timed plans, observed for poll-counted."""
        if self.released_at is None:
            return None
        if self.plan.poll_based:
            return self.processing_seen
        at = self.released_at + self.plan.pending_seconds
        return at if at <= now else None

    def finished_at(self, now: float) -> float | None:
        """When it became COMPLETE or CANCELED, if it has by ``now``."""
        if self.released_at is None:
            return None
        if self.plan.poll_based:
            return self.completed_at
        at = self.released_at + self.plan.pending_seconds + self.plan.processing_seconds
        return at if at <= now else None


@dataclass(frozen=True)
class ExportRecord:
    """What happened to one export, in the sandbox's clock: for a test to assert on."""

    id: str
    started: float  # the accepted start request
    processing_at: float | None  # when it left PENDING (None: not yet)
    completed_at: float | None  # when it became COMPLETE or CANCELED (None: not yet)
    status: str


class ExportQueue:
    """Which exports may leave PENDING. With ``one_at_a_time`` (as HubSpot runs them), an export is
    released only once every export started before it is COMPLETE or CANCELED, and its pending time
    or polls count from then; otherwise each is released when it starts.

    A poll-counted export moves on only when polled, so one that nobody polls holds the line.
    """

    def __init__(self) -> None:
        self._waiting: collections.deque[Export] = collections.deque()
        self._running: list[Export] = []  # released, not known to be finished
        self._free_at = float("-inf")  # when the last finished export finished

    def admit(self, export: Export, one_at_a_time: bool) -> None:
        if one_at_a_time or self._waiting:
            self._waiting.append(export)
        else:
            self._release(export, export.created)
            self._running.append(export)  # looked at only if one_at_a_time is switched on

    def advance(self, now: float, one_at_a_time: bool) -> None:
        """Release whoever may go at ``now``; call before reading or polling any export."""
        if not one_at_a_time and not self._waiting:
            return  # nothing queues: costs nothing per request
        still = []
        for export in self._running:
            finished = export.finished_at(now)
            if finished is None:
                still.append(export)
            else:
                self._free_at = max(self._free_at, finished)
        self._running = still
        while self._waiting and not (one_at_a_time and self._running):
            export = self._waiting.popleft()
            # In line: from when the exports ahead finished. Switched off while some waited: now.
            at = self._free_at if one_at_a_time else now
            self._release(export, max(export.created, at))
            finished = export.finished_at(now)
            if finished is None:
                self._running.append(export)
            else:
                self._free_at = max(self._free_at, finished)

    def _release(self, export: Export, at: float) -> None:
        export.released_at = at
        export.released_polls = export.polls

    def poll(self, export: Export, now: float, one_at_a_time: bool) -> str:
        """A status request for ``export`` at ``now``: its status after counting the poll."""
        self.advance(now, one_at_a_time)
        export.polls += 1
        status = export.status(now)
        if status != "PENDING" and export.plan.poll_based and export.processing_seen is None:
            export.processing_seen = now
        if status in ("COMPLETE", "CANCELED") and export.completed_at is None:
            export.completed_at = export.finished_at(now) if not export.plan.poll_based else now
        return status


@dataclass
class StartBook:
    """Start requests accepted and refused (their times), and HubSpot's rolling export limit."""

    accepted: list[float] = field(default_factory=list)
    refused: list[float] = field(default_factory=list)

    def admit(self, now: float, limit: tuple[int, float] | None) -> bool:
        """Whether a start at ``now`` is within ``limit`` (N starts per W seconds); records it."""
        if limit is not None:
            count, window = limit
            if sum(1 for at in self.accepted if at > now - window) >= count:
                self.refused.append(now)
                return False
        self.accepted.append(now)
        return True


class ExportLimitReached(Exception):
    """A start refused for the export limit; ``limit`` is the ``(N, W)`` that refused it."""

    def __init__(self, limit: tuple[int, float]) -> None:
        super().__init__(f"export limit of {limit[0]} starts per {limit[1]:g} s reached")
        self.limit = limit


class ExportStatus(NamedTuple):
    """An export as one request saw it, at ``at`` on the book's clock."""

    status: str
    at: float
    processing_since: float | None  # when it left PENDING (None: not yet)
    completed_at: float | None  # when a status request first saw it final (None: not yet)


class ExportBook:
    """The exports the sandbox has started and the rules they follow: the plan each gets, the export
    limit on starts, the line they wait in and the clock their statuses run on.

    The sandbox's rooms start, find, poll and serve exports through its methods, and only it changes
    an ``Export``; they read an export's fields (``request``, ``plan``, ``file_path``) as they like.
    Its settings (``plan``, ``clock``, ``export_limit``, ``one_at_a_time``) may change at any time.
    Thread-safe: the event loop, the file writers' threads and a test's thread all call it. It
    knows nothing of rows or files' contents, so it costs the same for a big export as a small one.
    """

    def __init__(
        self,
        plan: ExportPlan | None = None,
        *,
        clock: Callable[[], float] = time.time,
        export_limit: tuple[int, float] | None = None,
        one_at_a_time: bool = False,
        first_id: int = 40_000_001,
    ) -> None:
        self.plan = plan or ExportPlan()  # what an export gets unless ``plan_next`` said otherwise
        self.clock = clock
        self.export_limit = export_limit
        self.one_at_a_time = one_at_a_time
        self.exports: dict[str, Export] = {}  # by id, in start order: read it, do not change it
        self._next_plans: collections.deque[ExportPlan] = collections.deque()
        self._next_id = first_id
        self._queue = ExportQueue()
        self._starts = StartBook()
        self._lock = threading.Lock()

    @property
    def export_limit(self) -> tuple[int, float] | None:
        """``(N, W)``: N export starts per rolling W seconds of ``clock`` (None: no limit)."""
        return self._export_limit

    @export_limit.setter
    def export_limit(self, limit: tuple[int, float] | None) -> None:
        if limit is not None:
            count, window = limit
            if int(count) != count or count < 0 or not window > 0:
                raise ValueError(f"export_limit must be (N >= 0 exports, W > 0 seconds), got {limit!r}")
            limit = (int(count), float(window))
        self._export_limit = limit

    def now(self) -> float:
        return self.clock()

    # -- starting and finding --------------------------------------------------------------------
    def plan_next(self, **overrides: Any) -> ExportPlan:
        """The next export started gets ``plan`` with these overrides (queued, first in first out)."""
        plan = copy.deepcopy(self.plan)
        for key, value in overrides.items():
            if not hasattr(plan, key):
                raise TypeError(f"ExportPlan has no field {key!r}")
            setattr(plan, key, value)
        with self._lock:
            self._next_plans.append(plan)
        return plan

    def start(self, request: dict[str, Any], api_version: str = "v3") -> Export:
        """A new export of ``request`` (already validated), started now; or ``ExportLimitReached``."""
        now = self.clock()
        limit = self._export_limit
        with self._lock:
            if not self._starts.admit(now, limit):
                assert limit is not None
                raise ExportLimitReached(limit)
            export_id = str(self._next_id)
            self._next_id += 1
            plan = self._next_plans.popleft() if self._next_plans else copy.deepcopy(self.plan)
            export = Export(export_id, request, plan, now, api_version)
            self.exports[export_id] = export
            self._queue.admit(export, self.one_at_a_time)
        return export

    def get(self, export_id: str) -> Export | None:
        return self.exports.get(export_id)

    # -- status ----------------------------------------------------------------------------------
    def poll(self, export: Export) -> ExportStatus:
        """A status request for ``export``: counted (poll-based plans move on with it)."""
        now = self.clock()
        with self._lock:
            status = self._queue.poll(export, now, self.one_at_a_time)
            return ExportStatus(status, now, export.processing_since(now), export.completed_at)

    def peek(self, export: Export) -> ExportStatus:
        """``export`` as of now, without counting a poll."""
        now = self.clock()
        with self._lock:
            self._queue.advance(now, self.one_at_a_time)
            status = export.status(now)
            return ExportStatus(status, now, export.processing_since(now), export.completed_at)

    # -- its file --------------------------------------------------------------------------------
    def attach_file(self, export: Export, path: str) -> None:
        """``export``'s result is the file at ``path`` (written once, by the file host)."""
        with self._lock:
            export.file_path = path

    def url_expiry(self, export: Export) -> int:
        """When a signed URL handed out now for ``export``'s file expires (0: it already has, for
        the first ``plan.expired_urls`` handed out)."""
        plan = export.plan
        expires = int(self.clock() + plan.url_ttl) if plan.url_ttl > 0 else 0
        with self._lock:
            if plan.expired_urls > 0:
                plan.expired_urls -= 1
                expires = 0
        return expires

    def count_download(self, export: Export) -> bool:
        """Counts a download of ``export``'s file; True if the plan cuts this one short."""
        with self._lock:
            export.downloads += 1
            return export.downloads <= export.plan.cut_downloads

    # -- the record ------------------------------------------------------------------------------
    def accepted_starts(self) -> list[float]:
        """When each accepted start arrived (``clock`` time), in order."""
        with self._lock:
            return list(self._starts.accepted)

    def refused_starts(self) -> list[float]:
        """When each start refused for the export limit arrived (``clock`` time), in order."""
        with self._lock:
            return list(self._starts.refused)

    def history(self) -> list[ExportRecord]:
        """Each export's start, when it left PENDING and when it finished, as of now, in start order."""
        now = self.clock()
        with self._lock:
            self._queue.advance(now, self.one_at_a_time)
            return [
                ExportRecord(e.id, e.created, e.processing_since(now), e.finished_at(now), e.status(now))
                for e in self.exports.values()
            ]


def most_in_window(times: list[float], window: float) -> int:
    """The most of ``times`` that fall within any ``window`` seconds (t to t + window, open end)."""
    ordered = sorted(times)
    most, first = 0, 0
    for last, at in enumerate(ordered):
        while ordered[first] <= at - window:
            first += 1
        most = max(most, last - first + 1)
    return most


def most_at_once(spans: list[tuple[float, float | None]]) -> int:
    """The most of the ``(start, end)`` spans open at one time (end None: still open; end excluded)."""
    edges = sorted(
        [(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans if end is not None]
    )  # at equal times an end (-1) sorts before a start: touching spans do not overlap
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most
