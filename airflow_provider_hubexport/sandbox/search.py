"""HubSpot's CRM search, as an export's ``publicCrmSearchRequest`` uses it: the request read and
checked (HubSpot's limits and 400s), a record's values matched against it, and, for the
generated population, the ids it may match computed as ranges instead of scanned.

Semantics (HubSpot's CRM search):

- top-level ``filters`` are ANDed; ``filterGroups`` are ORed, the filters inside a group ANDed;
  with both, a record matches all the top-level filters AND at least one group. A group with no
  filters matches every record.
- number and datetime properties compare numerically (a datetime filter's value is epoch
  milliseconds, as a string or a number, or an ISO 8601 string); string, enumeration and bool
  properties compare case-insensitively, enumerations by internal value (``lead``, not ``Lead``).
- a record without a value for the property (none, or "") never matches a comparison (EQ, LT,
  ..., BETWEEN, IN, CONTAINS_TOKEN) and always matches NEQ, NOT_IN and NOT_CONTAINS_TOKEN: HubSpot
  does not document this corner; the sandbox treats "no value" as different from every value.
- CONTAINS_TOKEN is a whole-token, case-insensitive match: the value is cut into tokens at
  whitespace and punctuation, and every token of the filter's value must be among them; a ``*``
  in the filter's value is a wildcard over the whole value (``*@example.com``).
- ``query`` is a case-insensitive substring of any of the object type's searchable properties
  (``ObjectType.searchable``: contacts' firstname, lastname, email, company and phone; companies'
  name, domain and city; deals' dealname; vehicles' vehicle_name and make).
- ``sorts``, ``limit``, ``after`` and ``properties`` are accepted and ignored: an export is always
  ordered by record id.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from fractions import Fraction
from typing import Any

from airflow_provider_hubexport.sandbox.generated import Linear
from airflow_provider_hubexport.sandbox.schema import ObjectType, Property

OPERATORS = (
    "EQ",
    "NEQ",
    "LT",
    "LTE",
    "GT",
    "GTE",
    "BETWEEN",
    "IN",
    "NOT_IN",
    "HAS_PROPERTY",
    "NOT_HAS_PROPERTY",
    "CONTAINS_TOKEN",
    "NOT_CONTAINS_TOKEN",
)
_ONE_VALUE = ("EQ", "NEQ", "LT", "LTE", "GT", "GTE", "CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN")
_NO_VALUE_MATCHES = ("NEQ", "NOT_IN", "NOT_CONTAINS_TOKEN")
MAX_FILTER_GROUPS = 5  # HubSpot's CRM search limits
MAX_FILTERS_PER_GROUP = 6
MAX_FILTERS = 18

Ranges = list[tuple[int, int]]  # disjoint, ascending, inclusive (first id, last id) pairs


class QueryError(ValueError):
    """What HubSpot answers with a 400 VALIDATION_ERROR: ``str(err)`` is the message."""

    def __init__(self, message: str, code: str = "INVALID_INPUT", **context: Any) -> None:
        super().__init__(message)
        self.code = code
        self.context = context


def parse_number(text: Any) -> int | float | None:
    if isinstance(text, bool):
        return None
    if isinstance(text, (int, float)):
        return text if math.isfinite(text) else None
    try:
        value = float(str(text).strip())
    except ValueError:
        return None
    if not math.isfinite(value):
        return None
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


def parse_time(text: Any) -> int | None:
    """Epoch milliseconds from epoch milliseconds (a number or digits) or ISO 8601 (naive is UTC)."""
    number = parse_number(text)
    if number is not None:
        return int(number)
    if not isinstance(text, str):
        return None
    raw = text.strip()
    if raw.endswith(("Z", "z")):
        raw = raw[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return int(parsed.timestamp() * 1000)


def comparable(prop: Property, raw: Any) -> Any:
    """A raw value as filters compare it (None: the record has no value)."""
    if raw is None or raw == "":
        return None
    if prop.type == "number":
        return parse_number(raw)
    if prop.type == "datetime":
        return parse_time(raw)
    return str(raw).casefold()


_TOKEN_SPLIT = re.compile(r"[\W_]+")


def _tokens(text: str) -> set[str]:
    return {t for t in _TOKEN_SPLIT.split(text.casefold()) if t}


def _contains_token(raw: Any, wanted: str) -> bool:
    text = str(raw).casefold()
    if "*" in wanted:
        return fnmatch.fnmatchcase(text, wanted.casefold())
    tokens = _tokens(wanted)
    return bool(tokens) and tokens <= _tokens(text)


@dataclass(frozen=True)
class Filter:
    prop: Property
    operator: str
    value: Any = None  # comparable form
    high: Any = None
    values: frozenset[Any] = frozenset()
    text: str = ""  # CONTAINS_TOKEN's value as given

    def matches(self, raw: Any) -> bool:
        op = self.operator
        x = comparable(self.prop, raw)
        if op == "HAS_PROPERTY":
            return x is not None
        if op == "NOT_HAS_PROPERTY":
            return x is None
        if x is None:
            return op in _NO_VALUE_MATCHES
        if op == "EQ":
            return bool(x == self.value)
        if op == "NEQ":
            return bool(x != self.value)
        if op == "LT":
            return bool(x < self.value)
        if op == "LTE":
            return bool(x <= self.value)
        if op == "GT":
            return bool(x > self.value)
        if op == "GTE":
            return bool(x >= self.value)
        if op == "BETWEEN":
            return bool(self.value <= x <= self.high)
        if op == "IN":
            return x in self.values
        if op == "NOT_IN":
            return x not in self.values
        found = _contains_token(raw, self.text)
        return found if op == "CONTAINS_TOKEN" else not found


@dataclass
class Search:
    """A parsed ``publicCrmSearchRequest``. Empty (no filters, no query): every record matches."""

    filters: list[Filter] = field(default_factory=list)
    groups: list[list[Filter]] = field(default_factory=list)
    query: str | None = None
    query_props: list[Property] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.filters and not self.groups and not self.query

    def properties(self) -> list[Property]:
        """Every property a match reads."""
        seen: dict[str, Property] = {}
        for f in [*self.filters, *(f for g in self.groups for f in g)]:
            seen.setdefault(f.prop.name, f.prop)
        if self.query:
            for prop in self.query_props:
                seen.setdefault(prop.name, prop)
        return list(seen.values())

    def matches(self, values: Mapping[str, Any]) -> bool:
        """Whether a record with these raw values (by property name) matches."""
        if not all(f.matches(values.get(f.prop.name)) for f in self.filters):
            return False
        if self.groups and not any(all(f.matches(values.get(f.prop.name)) for f in g) for g in self.groups):
            return False
        if self.query:
            wanted = self.query.casefold()
            return any(
                wanted in str(values.get(p.name)).casefold()
                for p in self.query_props
                if values.get(p.name) not in (None, "")
            )
        return True

    def candidates(
        self, linear: Callable[[Property], Linear | None], first: int, last: int
    ) -> tuple[Ranges, bool]:
        """The ids in ``[first, last]`` a generated record may match, as ranges, and whether each of
        them must still be checked with ``matches`` (False: they all match). Filters on a property
        whose generated values are ``linear`` in the id (the id, the times) become ranges by
        arithmetic; any other filter, or a ``query``, leaves the ids to be checked one by one."""
        domain: Ranges = [(first, last)] if first <= last else []
        if self.empty or not domain:
            return domain, False
        residual = bool(self.query)

        def all_of(filters: list[Filter]) -> Ranges:
            nonlocal residual
            ranges = domain
            for f in filters:
                lin = linear(f.prop)
                found = None if lin is None else _filter_ranges(f, lin, first, last)
                if found is None:
                    residual = True
                else:
                    ranges = _intersect(ranges, found)
            return ranges

        ranges = all_of(self.filters)
        if self.groups:
            union: Ranges = []
            for group in self.groups:
                union = _union(union, all_of(group))
            ranges = _intersect(ranges, union)
        return ranges, residual


def _filter_ranges(f: Filter, lin: Linear, first: int, last: int) -> Ranges | None:
    """The ids in ``[first, last]`` whose value ``lin.a + lin.b * (id - 1)`` matches ``f`` (None:
    not computable here)."""
    op = f.operator
    if op in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
        return None
    if lin.b == 0 or op in ("HAS_PROPERTY", "NOT_HAS_PROPERTY"):
        return [(first, last)] if f.matches(lin.a) else []

    def at_least(i: int) -> Ranges:
        return [(max(first, i), last)] if max(first, i) <= last else []

    def at_most(i: int) -> Ranges:
        return [(first, min(last, i))] if first <= min(last, i) else []

    def q(x: Any) -> Fraction:  # where value x falls, in ids minus one
        return (Fraction(x) - lin.a) / lin.b

    def equal(x: Any) -> Ranges:
        where = q(x)
        if where.denominator != 1:
            return []
        i = int(where) + 1
        return [(i, i)] if first <= i <= last else []

    if op == "EQ":
        return equal(f.value)
    if op == "NEQ":
        return _complement(equal(f.value), first, last)
    if op == "LT":
        return at_most(math.ceil(q(f.value)))
    if op == "LTE":
        return at_most(math.floor(q(f.value)) + 1)
    if op == "GT":
        return at_least(math.floor(q(f.value)) + 2)
    if op == "GTE":
        return at_least(math.ceil(q(f.value)) + 1)
    if op == "BETWEEN":
        return _intersect(at_least(math.ceil(q(f.value)) + 1), at_most(math.floor(q(f.high)) + 1))
    points: Ranges = []
    for x in f.values:
        points = _union(points, equal(x))
    return points if op == "IN" else _complement(points, first, last)


def _intersect(a: Ranges, b: Ranges) -> Ranges:
    out: Ranges = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo <= hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def _union(a: Ranges, b: Ranges) -> Ranges:
    out: Ranges = []
    for lo, hi in sorted(a + b):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _complement(a: Ranges, first: int, last: int) -> Ranges:
    out: Ranges = []
    at = first
    for lo, hi in a:
        if lo > at:
            out.append((at, lo - 1))
        at = max(at, hi + 1)
    if at <= last:
        out.append((at, last))
    return out


# -- reading a request ------------------------------------------------------------------------------
def read_search(object_type: ObjectType, body: Any) -> Search:
    """``publicCrmSearchRequest`` checked as HubSpot checks it (its limits first), or ``QueryError``."""
    if body is None:
        return Search()
    if not isinstance(body, Mapping):
        raise QueryError("publicCrmSearchRequest must be an object.")
    filters = body.get("filters", [])
    groups = body.get("filterGroups", [])
    if not isinstance(filters, list) or not all(isinstance(f, Mapping) for f in filters):
        raise QueryError("publicCrmSearchRequest.filters must be a list of filters.")
    if not isinstance(groups, list) or not all(
        isinstance(g, Mapping) and isinstance(g.get("filters", []), list) for g in groups
    ):
        raise QueryError(
            "publicCrmSearchRequest.filterGroups must be a list of objects with a list of filters."
        )
    if len(groups) > MAX_FILTER_GROUPS:
        raise QueryError(
            f"Too many filter groups: {len(groups)}. At most {MAX_FILTER_GROUPS} filterGroups are allowed.",
            "TOO_MANY_FILTER_GROUPS",
            maxFilterGroups=[str(MAX_FILTER_GROUPS)],
        )
    for n, group in enumerate(groups):
        count = len(group.get("filters", []))
        if count > MAX_FILTERS_PER_GROUP:
            raise QueryError(
                f"Too many filters in filterGroups[{n}]: {count}. At most {MAX_FILTERS_PER_GROUP} filters "
                "are allowed in a group.",
                "TOO_MANY_FILTERS_IN_GROUP",
                maxFiltersPerGroup=[str(MAX_FILTERS_PER_GROUP)],
            )
    total = len(filters) + sum(len(g.get("filters", [])) for g in groups)
    if total > MAX_FILTERS:
        raise QueryError(
            f"Too many filters: {total}. At most {MAX_FILTERS} filters are allowed in all filterGroups.",
            "TOO_MANY_FILTERS",
            maxFilters=[str(MAX_FILTERS)],
        )
    query = body.get("query")
    if query is not None and not isinstance(query, str):
        raise QueryError("publicCrmSearchRequest.query must be a string.")
    props = [object_type.properties[n] for n in object_type.searchable if object_type.live(n)]
    return Search(
        filters=[_read_filter(object_type, f) for f in filters],
        groups=[[_read_filter(object_type, f) for f in g.get("filters", [])] for g in groups],
        query=query or None,
        query_props=props,
    )


def _read_filter(object_type: ObjectType, body: Mapping[str, Any]) -> Filter:
    name = body.get("propertyName")
    op = body.get("operator")
    if not isinstance(name, str) or not name:
        raise QueryError("A filter needs a propertyName.")
    prop = object_type.live(name)
    if prop is None:
        raise QueryError(
            f"There is no property {name!r} on {object_type.name} to filter on.",
            "PROPERTY_DOESNT_EXIST",
            propertyName=[name],
        )
    if op not in OPERATORS:
        raise QueryError(
            f"Unknown operator {op!r} in the filter on {name!r}: use one of {', '.join(OPERATORS)}.",
            "INVALID_OPERATOR",
        )

    def value(key: str) -> Any:
        if body.get(key) is None:
            raise QueryError(f"The filter on {name!r} with operator {op} needs a {key}.", "MISSING_VALUE")
        return _value(prop, body[key], name)

    if op in _ONE_VALUE:
        if op in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
            if body.get("value") is None:
                raise QueryError(f"The filter on {name!r} with operator {op} needs a value.", "MISSING_VALUE")
            return Filter(prop, op, text=str(body["value"]))
        return Filter(prop, op, value("value"))
    if op == "BETWEEN":
        return Filter(prop, op, value("value"), value("highValue"))
    if op in ("IN", "NOT_IN"):
        values = body.get("values")
        if not isinstance(values, list) or not values:
            raise QueryError(f"The filter on {name!r} with operator {op} needs a non-empty list of values.")
        return Filter(prop, op, values=frozenset(_value(prop, v, name) for v in values))
    return Filter(prop, op)


def _value(prop: Property, raw: Any, name: str) -> Any:
    if isinstance(raw, (dict, list)):
        raise QueryError(f"The filter on {name!r} has a value that is not a single value: {raw!r}.")
    value = comparable(prop, raw)
    if value is None:
        raise QueryError(
            f"The filter on {name!r} has a value that is not a valid {prop.type}: {raw!r}.", "INVALID_VALUE"
        )
    return value
