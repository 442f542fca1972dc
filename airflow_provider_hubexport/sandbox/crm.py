"""The sandbox's CRM: records of four object types, their history, and what each export sees of them.

Records come two ways. The population of generated records (``generated``): N per object type,
ids 1 to N, computed from (object type, id), never stored, last modified evenly over the 30 days
before ``genesis_ms``. And sparse changes on top, stored: ``modify``, ``create`` and ``archive``
give a record versions (time, values); the export uses the latest one it may see.

What an export sees is fixed when it starts (``start_export``, called at the POST): its as-of time
(``clock_ms()``, or the next of ``as_of_queue``), the index lag and the population then, and the
stored records' state. HubSpot's exports read a search index that trails the database: a version
modified at T is visible to exports from ``T + index_lag_ms`` on (so are creations and archivals).
Its rows are worked out on first need (``selection``), from that snapshot: a window on a property
whose generated values grow with the id (``hs_object_id``, the times) is a range of ids, computed;
a filter on any other property (names, emails, stages, amounts) or a ``query`` has each generated
record in the range checked, which is quick for thousands and takes seconds for millions.

The population of generated records: every export start sets its object type's population to the
export plan's ``row_count`` when the plan gives one, else to the last ``set_population`` (25 unless
set). So ``plan_next(row_count=300)`` gives that export 300 generated records, and the next export
without a row count is back to the standing population. Changing the population changes every
generated record's times (they are spread over the same 30 days): compare exports of one population.

Simplified relative to HubSpot: ``sorts`` are ignored (rows come by id); a LIST export holds every
visible, non-archived record of its type; association ids are made up from the record id, and the
three association options are accepted and recorded without effect; enumeration filters compare
internal values; ``query`` is a substring match over a few text properties (``search.py``); dates
are always ISO 8601 UTC with milliseconds; error wording is plausible, not HubSpot's own.

All times are integer epoch milliseconds. Thread-safe: the event loop, the file writers' threads and
a test's thread all call it.
"""

from __future__ import annotations

import bisect
import collections
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_hubexport.sandbox.export_query import Query, read_query
from airflow_provider_hubexport.sandbox.generated import Generated, Timeline
from airflow_provider_hubexport.sandbox.schema import (
    DEFAULT_PORTAL_ID,
    PROPERTY_TYPES,
    ObjectType,
    Property,
    Schema,
)
from airflow_provider_hubexport.sandbox.search import parse_number, parse_time

DEFAULT_POPULATION = 25
HOUR_MS = 3_600_000
_FIELD_TYPES = {
    "string": "text",
    "number": "number",
    "datetime": "date",
    "enumeration": "select",
    "bool": "booleancheckbox",
}


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class Version:
    """A stored version: its time and the values it sets over the generated record (a created
    record's: all its values). Each carries the values of the version before it."""

    at_ms: int
    values: dict[str, Any]


@dataclass
class StoredRecord:
    id: int
    created: bool  # made by ``create``: no generated version under it
    versions: list[Version] = field(default_factory=list)  # ascending by time
    archived_ms: int | None = None


@dataclass(frozen=True)
class Run:
    """Generated, untouched records ``first`` to ``last`` (ids, inclusive), all in the export."""

    first: int
    last: int


@dataclass(frozen=True)
class Row:
    """A stored record in the export, with the raw values it has there."""

    id: int
    values: Mapping[str, Any]


@dataclass
class Selection:
    """The records an export holds, in id order: runs of generated records and stored rows."""

    query: Query
    generated: Generated
    segments: list[Run | Row]
    count: int


@dataclass
class _Snapshot:
    query: Query
    as_of_ms: int
    timeline: Timeline
    visible_to: int  # the export sees what was modified (created, archived) at or before this
    stored: list[tuple[int, dict[str, Any] | None]]  # (id, visible values or None) of stored records
    lock: threading.Lock = field(default_factory=threading.Lock)
    selection: Selection | None = None


class Crm:
    """The CRM the sandbox's exports, properties and schemas APIs answer from (``Sandbox.crm``).

    Settings a test may change at any time: ``index_lag_ms``, ``clock_ms`` (the CRM's now, default
    the wall clock), ``as_of_queue`` (if not empty, each export start takes its as-of time from the
    left of it instead of ``clock_ms()``) and ``genesis_ms`` (best before the first export).

    ``object_type`` arguments take any of HubSpot's spellings: ``contacts``, ``CONTACT``, ``0-1``,
    ``vehicles``, ``2-4242001``, ``p4242_vehicles``.
    """

    def __init__(
        self,
        *,
        genesis_ms: int | None = None,
        clock_ms: Callable[[], int] = wall_clock_ms,
        portal_id: Callable[[], int | None] = lambda: DEFAULT_PORTAL_ID,
    ) -> None:
        self.schema = Schema()
        self.index_lag_ms: int = 0
        self.clock_ms = clock_ms
        self.as_of_queue: collections.deque[int] = collections.deque()
        self.genesis_ms: int = genesis_ms if genesis_ms is not None else wall_clock_ms() // HOUR_MS * HOUR_MS
        self.portal_id = portal_id  # read when a custom object's fully qualified name is needed
        self._standing = {t.name: DEFAULT_POPULATION for t in self.schema}
        self._population = dict(self._standing)
        self._stored: dict[str, dict[int, StoredRecord]] = {t.name: {} for t in self.schema}
        self._exports: dict[str, _Snapshot] = {}
        self._lock = threading.RLock()

    # -- object types and their properties ---------------------------------------------------------
    def object_type(self, spelling: str) -> ObjectType:
        """The object type any of HubSpot's spellings names (``schema.UnknownObjectType`` if none)."""
        return self.schema.find(spelling)

    def object_types(self) -> list[ObjectType]:
        return list(self.schema)

    def properties(self, object_type: str, archived: bool = False) -> list[Property]:
        """The type's properties that are live (``archived=False``) or archived (``archived=True``)."""
        t = self.object_type(object_type)
        with self._lock:
            return [p for p in t.properties.values() if p.archived == archived]

    def add_property(
        self, object_type: str, name: str, label: str | None = None, type: str = "string"
    ) -> None:
        """A property created in HubSpot later: no record has a value for it until modified (an
        archived one of that name is restored, keeping its type). Enumerations get no options, so
        any value is accepted for them."""
        t = self.object_type(object_type)
        if type not in PROPERTY_TYPES:
            raise ValueError(f"type must be one of {PROPERTY_TYPES}, got {type!r}")
        now = self.clock_ms()
        with self._lock:
            found = t.properties.get(name)
            if found is not None and not found.archived:
                raise ValueError(f"{t.name} already has a property {name!r}")
            if found is not None:
                found.archived, found.archived_ms, found.updated_ms = False, None, now
                return
            group = next(iter(t.properties.values())).group
            t.properties[name] = Property(
                name,
                label or name,
                type,
                _FIELD_TYPES[type],
                group,
                None,
                display_order=len(t.properties),
                created_ms=now,
                updated_ms=now,
            )

    def archive_property(self, object_type: str, name: str) -> None:
        """Archive a property: left out of the properties API's live list and refused in exports."""
        t = self.object_type(object_type)
        with self._lock:
            prop = t.live(name)
            if prop is None:
                raise KeyError(f"{t.name} has no live property {name!r}")
            if name in ("hs_object_id", t.modified, t.created):
                raise ValueError(f"HubSpot does not let {name!r} be archived")
            prop.archived, prop.archived_ms = True, self.clock_ms()
            prop.updated_ms = prop.archived_ms

    # -- the population ----------------------------------------------------------------------------
    def set_population(self, object_type: str, n: int) -> None:
        """``n`` generated records (ids 1 to n) from now on, for this and later exports."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"a population is a whole number >= 0, got {n!r}")
        t = self.object_type(object_type)
        with self._lock:
            self._standing[t.name] = self._population[t.name] = n

    def population(self, object_type: str) -> int:
        """The population of generated records now (the last export start's, or set_population's)."""
        return self._population[self.object_type(object_type).name]

    def timeline(self, object_type: str) -> Timeline:
        """When the generated records are modified, for the population now."""
        return Timeline(self.genesis_ms, self.population(object_type))

    # -- changes -----------------------------------------------------------------------------------
    def modify(self, object_type: str, record_id: int, at_ms: int, **properties: Any) -> None:
        """A new version of the record at ``at_ms``: the values of its latest version at or before
        ``at_ms`` with ``properties`` over them, and its modified property set to ``at_ms``. None
        clears a value. A generated record's own (generated) version always counts as older."""
        t = self.object_type(object_type)
        values = self._checked(t, properties)
        at_ms = int(at_ms)
        with self._lock:
            record = self._record(t, record_id)
            before = [v for v in record.versions if v.at_ms <= at_ms]
            new = {**(before[-1].values if before else {}), **values, t.modified: at_ms}
            times = [v.at_ms for v in record.versions]
            record.versions.insert(bisect.bisect_right(times, at_ms), Version(at_ms, new))

    def create(self, object_type: str, at_ms: int, **properties: Any) -> int:
        """A new record at ``at_ms`` (its create date and modified property), with the next id:
        one past every id the type has (the population's included). Returns the id. Should the
        population grow past it later, this record stands in place of the generated one."""
        t = self.object_type(object_type)
        values = self._checked(t, properties)
        at_ms = int(at_ms)
        with self._lock:
            stored = self._stored[t.name]
            record_id = max([self._population[t.name], *stored]) + 1
            values = {**values, "hs_object_id": record_id, t.created: at_ms, t.modified: at_ms}
            stored[record_id] = StoredRecord(record_id, True, [Version(at_ms, values)])
            return record_id

    def archive(self, object_type: str, record_id: int, at_ms: int) -> None:
        """Archive the record at ``at_ms``: exports that see that time never export it."""
        t = self.object_type(object_type)
        with self._lock:
            self._record(t, record_id).archived_ms = int(at_ms)

    def changes(self, object_type: str, start_ms: int, end_ms: int) -> dict[int, int]:
        """Ground truth, with full knowledge (no index lag): id -> latest modification time within
        ``[start_ms, end_ms)``, for every record (generated or changed) with a version modified in
        that range, in id order. Records archived (at any time) are left out."""
        t = self.object_type(object_type)
        with self._lock:
            timeline = self.timeline(t.name)
            stored = dict(self._stored[t.name])
            found = {i: timeline.at(i) for i in timeline.modified_in(start_ms, end_ms) if i not in stored}
            extra = {}
            for record_id, record in stored.items():
                if record.archived_ms is not None:
                    continue
                times = [v.at_ms for v in record.versions]
                if not record.created and record_id <= timeline.population:
                    times.append(timeline.at(record_id))
                inside = [at for at in times if start_ms <= at < end_ms]
                if inside:
                    extra[record_id] = max(inside)
        if extra:
            found.update(extra)
            found = dict(sorted(found.items()))
        return found

    def _record(self, t: ObjectType, record_id: int) -> StoredRecord:
        stored = self._stored[t.name]
        record = stored.get(record_id)
        if record is None:
            if isinstance(record_id, bool) or not isinstance(record_id, int):
                raise TypeError(f"a record id is an int, got {record_id!r}")
            if not 1 <= record_id <= self._population[t.name]:
                raise KeyError(f"{t.name} has no record {record_id}")
            record = stored[record_id] = StoredRecord(record_id, False)
        return record

    def _checked(self, t: ObjectType, properties: Mapping[str, Any]) -> dict[str, Any]:
        """``properties`` as raw values (datetimes as epoch ms, the rest as strings), or ValueError."""
        out: dict[str, Any] = {}
        for name, value in properties.items():
            prop = t.live(name)
            if prop is None:
                raise ValueError(f"{t.name} has no live property {name!r}")
            if name == "hs_object_id":
                raise ValueError("hs_object_id is the record's id: it cannot change")
            out[name] = _raw(prop, value)
        return out

    # -- exports -----------------------------------------------------------------------------------
    def read_query(self, body: Mapping[str, Any]) -> Query:
        """An export's start request read against the schema, or ``search.QueryError`` (a 400)."""
        with self._lock:
            return read_query(self.schema, body)

    def start_export(self, export_id: str, query: Query, row_count: int | None = None) -> int:
        """Fix what export ``export_id`` sees: its as-of time (returned), the population (``row_count``
        if given, else the standing one), the index lag, and the stored records' state then."""
        t = query.object_type
        with self._lock:
            as_of = self.as_of_queue.popleft() if self.as_of_queue else int(self.clock_ms())
            population = self._standing[t.name] if row_count is None else int(row_count)
            self._population[t.name] = population
            timeline = Timeline(self.genesis_ms, population)
            visible_to = as_of - self.index_lag_ms
            stored = [
                (i, self._visible(t, r, timeline, visible_to))
                for i, r in sorted(self._stored[t.name].items())
            ]
            self._exports[export_id] = _Snapshot(query, as_of, timeline, visible_to, stored)
        return as_of

    def exported_as_of(self, export_id: str | int) -> int:
        """The as-of time export ``export_id`` was evaluated at (KeyError if the CRM never saw it)."""
        return self._exports[str(export_id)].as_of_ms

    def selection(
        self, export_id: str, request: Mapping[str, Any] | None = None, row_count: int | None = None
    ) -> Selection:
        """The records export ``export_id`` holds, worked out once, on first need. An export the
        CRM never saw start (one started on the export book directly) starts now, from ``request``."""
        with self._lock:
            snap = self._exports.get(export_id)
        if snap is None:
            if request is None:
                raise KeyError(f"the CRM never saw export {export_id} start")
            self.start_export(export_id, self.read_query(request), row_count)
            snap = self._exports[export_id]
        with snap.lock:
            if snap.selection is None:
                snap.selection = _select(snap)
            return snap.selection

    def record_count(
        self, export_id: str, request: Mapping[str, Any] | None = None, row_count: int | None = None
    ) -> int:
        """How many records export ``export_id`` holds (``selection``'s count)."""
        return self.selection(export_id, request, row_count).count

    def _visible(
        self, t: ObjectType, record: StoredRecord, timeline: Timeline, visible_to: int
    ) -> dict[str, Any] | None:
        """The values of ``record``'s latest version visible at ``visible_to``; None if it does not
        exist yet there, or is archived by then."""
        if record.archived_ms is not None and record.archived_ms <= visible_to:
            return None
        versions = [v for v in record.versions if v.at_ms <= visible_to]
        generated = (
            not record.created and record.id <= timeline.population and timeline.at(record.id) <= visible_to
        )
        if not versions and not generated:
            return None
        values = (
            {n: None for n in t.properties} if record.created else Generated(t, timeline).values(record.id)
        )
        if versions:
            values.update(versions[-1].values)
        return values


def _raw(prop: Property, value: Any) -> Any:
    if value is None:
        return None
    if prop.type == "datetime":
        at = parse_time(value)
        if at is None or isinstance(value, bool):
            raise ValueError(f"{prop.name} is a datetime: give epoch milliseconds or ISO 8601, got {value!r}")
        return at
    if prop.type == "number":
        if parse_number(value) is None:
            raise ValueError(f"{prop.name} is a number, got {value!r}")
        return str(value)
    if prop.type == "bool":
        if isinstance(value, bool):
            return "true" if value else "false"
        if str(value).lower() not in ("true", "false"):
            raise ValueError(f"{prop.name} is a bool, got {value!r}")
        return str(value).lower()
    if prop.type == "enumeration" and prop.options and value not in {o.value for o in prop.options}:
        allowed = ", ".join(o.value for o in prop.options)
        raise ValueError(f"{prop.name} takes one of its options' internal values ({allowed}), got {value!r}")
    return str(value)


def _select(snap: _Snapshot) -> Selection:
    """Which records an export holds: the generated ones it may see that match (ranges worked out
    by ``Search.candidates``, checked one by one only when a filter needs it), and the stored ones
    visible to it that match, in id order."""
    query = snap.query
    search = query.search
    generated = Generated(query.object_type, snap.timeline)
    last = snap.timeline.last_modified_by(snap.visible_to)
    ranges, check = search.candidates(generated.linear, 1, last)
    if check:
        read = search.properties()
        runs: list[tuple[int, int]] = []
        for lo, hi in ranges:
            start = None
            for i in range(lo, hi + 1):
                if search.matches({p.name: generated.raw(p, i) for p in read}):
                    if start is None:
                        start = i
                elif start is not None:
                    runs.append((start, i - 1))
                    start = None
            if start is not None:
                runs.append((start, hi))
        ranges = runs
    stored_ids = [i for i, _ in snap.stored]
    rows = [Row(i, values) for i, values in snap.stored if values is not None and search.matches(values)]
    segments: list[Run | Row] = []
    for lo, hi in ranges:  # the generated runs, without the stored ids (their rows are the stored ones)
        at = lo
        for i in stored_ids[bisect.bisect_left(stored_ids, lo) : bisect.bisect_right(stored_ids, hi)]:
            if i > at:
                segments.append(Run(at, i - 1))
            at = i + 1
        if at <= hi:
            segments.append(Run(at, hi))
    if rows:
        segments = sorted([*segments, *rows], key=lambda s: s.first if isinstance(s, Run) else s.id)
    count = sum(s.last - s.first + 1 if isinstance(s, Run) else 1 for s in segments)
    return Selection(query, generated, segments, count)
