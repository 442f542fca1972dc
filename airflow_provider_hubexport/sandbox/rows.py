"""An export's rows: each cell as HubSpot writes it, and the records in position order.

``RowSource`` writes runs of generated records, the bulk of any big export, a block of a thousand
at a time; ``ExportRows`` is an export's rows (a ``crm.Selection``) by position, generated runs
through ``RowSource`` and stored records (changed, created) one by one from their values, as
``content``'s writers read them.

Cells: datetimes as ISO 8601 UTC with milliseconds (``2026-11-27T10:15:00.000Z``; real HubSpot's
formatting may differ, and may follow the portal's time zone); enumerations as their labels
(``Lead``), or their internal values (``lead``) with ``exportInternalValuesOptions: ["VALUES"]``;
no value as an empty cell.
"""

from __future__ import annotations

import bisect
import csv
import io
import operator
import threading
from collections.abc import Iterator, Mapping
from datetime import date
from typing import Any

from airflow_provider_hubexport.sandbox.crm import Row, Run, Selection
from airflow_provider_hubexport.sandbox.generated import BLOCK, Generated, associated_ids, draws
from airflow_provider_hubexport.sandbox.schema import Property

BLOCK_ROWS = BLOCK  # a power of ten: see RowSource
_SLOT = "@@{}@@"  # marks a cell filled per row while a block row is rendered as CSV
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_times_of_day: list[str] = []
_times_of_day_utf8: list[bytes] = []
_days: dict[int, str] = {}
_day_tables: dict[int, list[bytes]] = {}  # a few days' 86,400 formatted seconds each, newest last
_tables_lock = threading.Lock()


def _day_text(day: int) -> str:
    text = _days.get(day)
    if text is None:
        text = _days[day] = date.fromordinal(_EPOCH_ORDINAL + day).isoformat()
    return text


def _seconds_text(seconds: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS`` (UTC) of epoch ``seconds``, from a table of the day's 86,400 times."""
    if not _times_of_day:
        with _tables_lock:
            if not _times_of_day:
                _times_of_day.extend(
                    f"T{h:02d}:{m:02d}:{s:02d}" for h in range(24) for m in range(60) for s in range(60)
                )
    day, rest = divmod(seconds, 86_400)
    return _day_text(day) + _times_of_day[rest]


def _seconds_range(first: int, last: int) -> list[bytes]:
    """``_seconds_text`` (UTF-8) of the seconds ``first`` to ``last``: slices of whole days
    formatted once (a big export's blocks walk through each day a block at a time)."""
    out: list[bytes] = []
    while first <= last:
        day, rest = divmod(first, 86_400)
        table = _day_tables.get(day)
        if table is None:
            if not _times_of_day_utf8:
                _seconds_text(0)  # the times of day, made once
                _times_of_day_utf8[:] = [t.encode() for t in _times_of_day]
            head = _day_text(day).encode()
            table = [head + t for t in _times_of_day_utf8]
            with _tables_lock:
                while len(_day_tables) >= 4:
                    del _day_tables[next(iter(_day_tables))]
                _day_tables[day] = table
        end = min(last, (day + 1) * 86_400 - 1)
        out += table[rest : rest + end - first + 1]
        first = end + 1
    return out


def iso_ms(ms: int) -> str:
    """Epoch milliseconds as an export shows them: ``2026-11-27T10:15:00.000Z``."""
    seconds, millis = divmod(int(ms), 1000)
    return f"{_seconds_text(seconds)}.{millis:03d}Z"


def cell(prop: Property, raw: Any, internal_values: bool) -> str:
    """A raw value as its export cell."""
    if raw is None:
        return ""
    if prop.type == "datetime":
        return iso_ms(raw)
    if prop.type == "enumeration" and not internal_values:
        return prop.option_label(str(raw))
    return str(raw)


class _Numbered:
    """A cell that is a %-template of the record id (ids, emails, names like "Deal 12")."""

    def __init__(self, template: str) -> None:
        if any(c in template for c in ',"\r\n'):
            raise ValueError(f"a numbered cell's template must need no CSV quoting: {template!r}")
        self.template = template


class _Timed:
    """A datetime cell of the timeline: ``base + id * step`` epoch milliseconds.

    Within block k (ids 1000k to 1000k + 999, row j of it), that is ``base + j * step`` plus
    ``1000 * k * step``: a whole number of seconds. So row j's milliseconds are the same in every
    block (part of the block's template), and its seconds are ``seconds[j] + k * step``: a big
    population's block spans few distinct seconds, taken as one slice of a day's formatted
    seconds and picked per row."""

    def __init__(self, base: int, step: int) -> None:
        self.base, self.step = base, step
        at = [base + j * step for j in range(BLOCK_ROWS)]
        self.millis = [a % 1000 for a in at]
        self.seconds = [a // 1000 for a in at]
        self.low, self.high = self.seconds[0], self.seconds[-1]
        # Dense: the block's distinct seconds are fewer than its rows (populations over 2.6 million).
        self.dense = self.high - self.low < BLOCK_ROWS
        self._pick = operator.itemgetter(*[s - self.low for s in self.seconds])

    def texts(self, k: int) -> Any:
        """Block k's seconds (UTF-8), row by row."""
        shift = k * self.step
        if self.dense:
            return self._pick(_seconds_range(self.low + shift, self.high + shift))
        return [_seconds_text(s + shift).encode() for s in self.seconds]

    def text(self, record_id: int) -> str:
        return iso_ms(self.base + record_id * self.step)


class _Block:
    """Block rows as the fast path writes them: per row, a %-template of its numbered and timed
    cells (for rows written one by one); and the whole block as fragments between those cells, in
    a list whose odd places each block fills (``slots``) before joining it."""

    def __init__(self, plans: list[_Numbered | _Timed | list[str]]) -> None:
        slots = [c for c, p in enumerate(plans) if not isinstance(p, list)]
        self.numbered = [n for n, c in enumerate(slots) if isinstance(plans[c], _Numbered)]
        self.timed = [(n, plans[c]) for n, c in enumerate(slots) if isinstance(plans[c], _Timed)]
        self.width = len(slots)
        out = io.StringIO()
        writer = csv.writer(out)
        self.rows: list[bytes] = []
        parts: list[bytes] = []
        tail = ""
        for j in range(BLOCK_ROWS):
            cells = [_SLOT.format(c) if c in slots else plan[j] for c, plan in enumerate(plans)]  # type: ignore[index]
            out.seek(0)
            out.truncate()
            writer.writerow(cells)
            line = out.getvalue()
            row = line.replace("%", "%%")
            rest = line
            for c in slots:
                plan = plans[c]
                before, _, rest = rest.partition(_SLOT.format(c))
                if isinstance(plan, _Numbered):
                    template = plan.template
                    head, _, after = template.rpartition("%d")  # the number's place
                    row = row.replace(_SLOT.format(c), template.replace("%", "%%").replace("%%d", "%d"))
                    parts += [(tail + before + head).encode(), b""]
                    rest = f"{j:03d}{after}" + rest
                else:
                    assert isinstance(plan, _Timed)
                    row = row.replace(_SLOT.format(c), f"%s.{plan.millis[j]:03d}Z")
                    parts += [(tail + before).encode(), b""]
                    rest = f".{plan.millis[j]:03d}Z" + rest
                tail = ""
            tail += rest
            self.rows.append(row.encode())
        parts.append(tail.encode())
        self.parts = parts  # fragments at even places; slot values at the odd ones
        self.plain = b"".join(parts) if not slots else b""

    def fill(self, parts: list[bytes], k: int) -> bytes:
        """Block k (k >= 1), written into ``parts`` (a copy of ``self.parts``) and joined."""
        step = 2 * self.width
        if self.numbered:
            prefix = [b"%d" % k] * BLOCK_ROWS
            for n in self.numbered:
                parts[2 * n + 1 :: step] = prefix
        for n, timed in self.timed:
            parts[2 * n + 1 :: step] = timed.texts(k)
        return b"".join(parts)


class RowSource:
    """The cells of generated records (ids, in any run), a function of (object type, id) alone.

    Each column is numbered (a %-template of the id), timed (the record's times, ``_Timed``) or
    fixed by ``id % 1000`` (drawn values: names, stages, amounts; association ids; no value). So
    the records with ids ``1000k`` to ``1000k + 999`` are one block: the fixed cells are the same
    for every block, and a whole block is fragments made once with its numbers and times between.

    In block k >= 1 a numbered cell's number is ``k`` followed by the row's three digits within
    the block: those digits are part of the fragments, and the block is the fragments with ``k``
    put into each numbered cell and each timed cell's seconds picked from the block's few distinct
    ones, then joined: several hundred MB a second.
    """

    def __init__(
        self,
        generated: Generated,
        columns: list[Property],
        associated: int = 0,
        internal_values: bool = False,
    ) -> None:
        t = generated.object_type
        step = generated.timeline.step_ms
        self.plans: list[_Numbered | _Timed | list[str]] = []
        for prop in columns:
            template = generated.template(prop)
            linear = generated.linear(prop)
            drawn = draws(t, prop)
            if template is not None:
                self.plans.append(_Numbered(template))
            elif linear is not None:
                self.plans.append(_Timed(linear.a - step, step))
            elif drawn is not None:
                self.plans.append([cell(prop, v, internal_values) for v in drawn])
            else:
                self.plans.append([""] * BLOCK_ROWS)
        for n in range(associated):
            self.plans.append([associated_ids(n, j) for j in range(BLOCK_ROWS)])
        self._block: _Block | None = None
        self._lock = threading.Lock()

    def row(self, record_id: int) -> list[str]:
        j = record_id % BLOCK_ROWS
        out = []
        for plan in self.plans:
            if isinstance(plan, _Numbered):
                out.append(plan.template % record_id)
            elif isinstance(plan, _Timed):
                out.append(plan.text(record_id))
            else:
                out.append(plan[j])
        return out

    def rows(self, first: int, count: int) -> Iterator[list[str]]:
        for i in range(first, first + count):
            yield self.row(i)

    def block(self) -> _Block:
        with self._lock:
            if self._block is None:
                self._block = _Block(self.plans)
            return self._block

    def _row_values(self, record_id: int) -> tuple[Any, ...]:
        k, j = divmod(record_id, BLOCK_ROWS)
        values: list[Any] = []
        for plan in self.plans:
            if isinstance(plan, _Numbered):
                values.append(record_id)
            elif isinstance(plan, _Timed):
                values.append(_seconds_text(plan.seconds[j] + k * plan.step).encode())
        return tuple(values)

    def csv_chunks(self, first: int, count: int) -> Iterator[bytes]:
        """The CSV lines (UTF-8) of records ``first`` to ``first + count - 1``, in chunks of up to
        a block; rows outside whole blocks (and block 0, where ids have fewer digits) one by one."""
        if count < BLOCK_ROWS:  # too few for a block: no templates needed
            for row in self.rows(first, count):
                yield csv_line(row)
            return
        block = self.block()
        parts = list(block.parts)  # this generator's own: each block fills it in place
        i, stop = first, first + count
        while i < stop:
            k, j = divmod(i, BLOCK_ROWS)
            if j == 0 and k > 0 and stop - i >= BLOCK_ROWS:
                yield block.fill(parts, k) if block.width else block.plain
                i += BLOCK_ROWS
                continue
            yield block.rows[j] % self._row_values(i)
            i += 1


def csv_line(cells: list[str]) -> bytes:
    out = io.StringIO()
    csv.writer(out).writerow(cells)
    return out.getvalue().encode()


class ExportRows:
    """An export's rows (a ``crm.Selection``) by position, as the writers read them: runs of
    generated records through ``RowSource``, stored records from their values."""

    def __init__(self, selection: Selection) -> None:
        query = selection.query
        self.header = query.header()
        self.count = selection.count
        self._columns = query.columns
        self._associated = len(query.associated)
        self._internal = query.internal_values
        self.source = RowSource(selection.generated, query.columns, self._associated, query.internal_values)
        self._segments = selection.segments
        self._starts: list[int] = []  # each segment's position
        at = 0
        for segment in self._segments:
            self._starts.append(at)
            at += segment.last - segment.first + 1 if isinstance(segment, Run) else 1

    def stored_row(self, record_id: int, values: Mapping[str, Any]) -> list[str]:
        cells = [cell(p, values.get(p.name), self._internal) for p in self._columns]
        return cells + [associated_ids(n, record_id) for n in range(self._associated)]

    def _pieces(self, start: int, count: int) -> Iterator[tuple[Run | Row, int, int]]:
        """(segment, offset into it, rows of it) covering positions ``start`` to ``start + count``."""
        n = max(0, bisect.bisect_right(self._starts, start) - 1)
        stop = start + count
        while n < len(self._segments) and self._starts[n] < stop:
            segment = self._segments[n]
            size = segment.last - segment.first + 1 if isinstance(segment, Run) else 1
            lo = max(start, self._starts[n]) - self._starts[n]
            hi = min(stop, self._starts[n] + size) - self._starts[n]
            if hi > lo:
                yield segment, lo, hi - lo
            n += 1

    def rows(self, start: int, count: int) -> Iterator[list[str]]:
        for segment, offset, n in self._pieces(start, count):
            if isinstance(segment, Run):
                yield from self.source.rows(segment.first + offset, n)
            else:
                yield self.stored_row(segment.id, segment.values)

    def csv_chunks(self, start: int, count: int) -> Iterator[bytes]:
        for segment, offset, n in self._pieces(start, count):
            if isinstance(segment, Run):
                yield from self.source.csv_chunks(segment.first + offset, n)
            else:
                yield csv_line(self.stored_row(segment.id, segment.values))

    def csv_size_estimate(self, count: int) -> int:
        """About how many bytes of CSV ``count`` rows make (the first thousand rows' average)."""
        sample = min(self.count, BLOCK_ROWS)
        if sample == 0:
            return 0
        return sum(len(c) for c in self.csv_chunks(0, sample)) * count // sample
