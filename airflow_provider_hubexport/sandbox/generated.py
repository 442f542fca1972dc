"""The population of generated records: N records of an object type, ids 1 to N, computed, never
stored, so a test may have millions of contacts for the price of an integer.

A generated record's values are a function of (object type, id) alone: the same record has the
same values in every export, whichever other properties the export asks for. Its times come from
the ``Timeline``: its last modification (its type's modified property) is spread evenly over the
30 days before the CRM's genesis, increasing with the id, so a window on that property is a range
of ids, computed rather than scanned (``Linear``).

Values drawn from a list (names, stages, amounts) depend on ``id % 1000`` only: that is what lets
``content.RowSource`` write a thousand rows with one %-format.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from typing import Any

from airflow_provider_hubexport.sandbox.schema import DAY_MS, ObjectType, Property

SPAN_MS = 30 * DAY_MS  # the generated modifications fall in the 30 days before genesis
BLOCK = 1000  # drawn values repeat every BLOCK ids


@dataclass(frozen=True)
class Timeline:
    """When each generated record of a population of ``population`` was last modified:
    ``first_ms + (id - 1) * step_ms``, with ``step_ms = 30 days // population`` (whole milliseconds,
    so all of them fall in ``[genesis - 30 days, genesis)``; a population beyond 2.6 billion would
    share one time)."""

    genesis_ms: int
    population: int

    @property
    def step_ms(self) -> int:
        return SPAN_MS // max(1, self.population)

    @property
    def first_ms(self) -> int:
        return self.genesis_ms - SPAN_MS

    def at(self, record_id: int) -> int:
        return self.first_ms + (record_id - 1) * self.step_ms

    def last_modified_by(self, at_ms: int) -> int:
        """The highest id whose modification is at or before ``at_ms`` (0: none)."""
        if at_ms < self.first_ms:
            return 0
        if self.step_ms == 0:
            return self.population
        return min(self.population, (at_ms - self.first_ms) // self.step_ms + 1)

    def modified_in(self, start_ms: int, end_ms: int) -> range:
        """The ids modified in ``[start_ms, end_ms)``."""
        return range(self.last_modified_by(start_ms - 1) + 1, self.last_modified_by(end_ms - 1) + 1)


@dataclass(frozen=True)
class Linear:
    """A property whose generated value is ``a + b * (id - 1)`` with ``b >= 0``: the id, and times."""

    a: int
    b: int


_draws: dict[tuple[str, str], list[str]] = {}
_draws_lock = threading.Lock()


def draws(object_type: ObjectType, prop: Property) -> list[str] | None:
    """The BLOCK raw values a drawn property takes, by ``id % BLOCK`` (None: not a drawn property).

    One generator per (object type, property): a value never depends on which other properties
    were asked for, nor on the export."""
    gen = prop.gen
    if gen is None or gen.kind not in ("choice", "option", "decimal", "integer"):
        return None
    key = (object_type.name, prop.name)
    with _draws_lock:
        found = _draws.get(key)
        if found is None:
            rng = random.Random(f"{object_type.name}:{prop.name}")
            if gen.kind == "choice":
                found = [rng.choice(gen.arg) for _ in range(BLOCK)]
            elif gen.kind == "option":
                found = [rng.choice(prop.options).value for _ in range(BLOCK)]
            elif gen.kind == "decimal":
                low, high = gen.arg
                found = [f"{rng.randint(low, high) / 100:.2f}" for _ in range(BLOCK)]
            else:
                low, high = gen.arg
                found = [str(rng.randint(low, high)) for _ in range(BLOCK)]
            _draws[key] = found
        return found


def associated_ids(n: int, record_id: int) -> str:
    """The ids of a record's associated objects of the ``n``-th associated type, as an export lists
    them (``;``-joined): made up from ``id % BLOCK``, like the drawn values."""
    j = record_id % BLOCK
    first = (j * 7 + n * 31) % 997 + 1
    return f"{first};{(j * 13 + n) % 991 + 1}" if j % 3 == 0 else str(first)


class Generated:
    """The generated records of one object type under one timeline."""

    def __init__(self, object_type: ObjectType, timeline: Timeline) -> None:
        self.object_type = object_type
        self.timeline = timeline

    @property
    def population(self) -> int:
        return self.timeline.population

    def template(self, prop: Property) -> str | None:
        """The %-template of the id a numbered property (or the id itself) renders as, else None."""
        gen = prop.gen
        if gen is None:
            return None
        if gen.kind == "id":
            return "%d"
        return str(gen.arg) if gen.kind == "numbered" else None

    def linear(self, prop: Property) -> Linear | None:
        """``prop``'s generated values as a linear function of the id, if they are one."""
        gen = prop.gen
        if gen is None:
            return None
        if gen.kind == "id":
            return Linear(1, 1)
        if gen.kind == "time":
            return Linear(self.timeline.first_ms + int(gen.arg), self.timeline.step_ms)
        return None

    def raw(self, prop: Property, record_id: int) -> Any:
        """Generated record ``record_id``'s raw value of ``prop``: an int for ids and times (epoch
        ms), a string otherwise; None (or "") for no value."""
        gen = prop.gen
        if gen is None:
            return None
        kind = gen.kind
        if kind == "id":
            return record_id
        if kind == "time":
            return self.timeline.at(record_id) + int(gen.arg)
        if kind == "numbered":
            return gen.arg % record_id
        found = draws(self.object_type, prop)
        return None if found is None else found[record_id % BLOCK]

    def values(self, record_id: int) -> dict[str, Any]:
        """Every property's raw value (archived ones included: they are only hidden)."""
        return {name: self.raw(prop, record_id) for name, prop in self.object_type.properties.items()}
