"""The incremental window: which records an export of a run's data interval must hold. No I/O.

Completeness is decided here, once, so the operators, lineage and the tests read the same window:

- the records are those whose last-modified property falls in ``[start - lookback, end)``,
  half-open, in epoch milliseconds UTC: adjacent runs neither skip nor double-count a record stamped
  exactly at a boundary (except inside the lookback overlap, which downstream de-duplicates);
- the property is ``lastmodifieddate`` for contacts and ``hs_lastmodifieddate`` for every other
  object, custom ones included (a contact filter on the other property silently returns the wrong
  set);
- the window's two filters are ANDed into every filter group the user gave (HubSpot ORs the
  groups), within HubSpot's limits on groups and filters;
- a run whose data interval is a point (Airflow 3's ``@daily`` is a ``CronTriggerTimetable``, whose
  runs have ``data_interval_start == data_interval_end``) starts at the schedule's previous point,
  so a backfill stays idempotent; a run without an interval fails naming the fixes. Never an empty
  window, never a silent full export.

Why a lookback at all: HubSpot's exports read its CRM search index, which HubSpot updates
asynchronously and documents no bound for. A record modified shortly before an interval's end may
not be in that interval's export yet; with a strict window it is in no later one either.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone, tzinfo
from typing import Any

from airflow_provider_hubexport.exceptions import HubSpotExportRequestError
from airflow_provider_hubexport.validation import (
    MAX_FILTER_GROUPS,
    MAX_FILTERS_PER_GROUP,
    MAX_FILTERS_TOTAL,
)

# One hour: HubSpot documents no bound on its search index's lag. Seconds to minutes is what users
# report for single edits; imports, workflows and month-end batch updates stamp thousands of
# records at once and take longer to index. An hour of overlap re-exports only the records modified
# in the hour before the window, which de-duplication (latest per hs_object_id) absorbs.
DEFAULT_LOOKBACK = timedelta(hours=1)
ID_PROPERTY = "hs_object_id"
CONTACT_MODIFIED_PROPERTY = "lastmodifieddate"
MODIFIED_PROPERTY = "hs_lastmodifieddate"
_CONTACT_NAMES = {"CONTACT", "CONTACTS", "0-1"}
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MS = timedelta(milliseconds=1)
FIXES = (
    "give the DAG a schedule whose runs cover an interval (CronDataIntervalTimetable, or "
    "CronTriggerTimetable(..., interval=timedelta(...))), or pass modified_since and modified_until "
    "(templated, e.g. '{{ data_interval_start }}')"
)


def modified_property_for(object_type: str) -> str:
    """The property HubSpot stamps on every change of a record of ``object_type``."""
    return CONTACT_MODIFIED_PROPERTY if object_type.strip().upper() in _CONTACT_NAMES else MODIFIED_PROPERTY


def to_ms(moment: datetime) -> int:
    """Epoch milliseconds of an aware datetime, exactly (no float rounding at a boundary; plain
    datetime arithmetic, which a pendulum DateTime, what Airflow hands a task, would turn into its
    own Interval)."""
    return calendar.timegm(moment.utctimetuple()) * 1000 + moment.microsecond // 1000


def _iso(ms: int) -> str:
    return (_EPOCH + timedelta(milliseconds=ms)).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class ExportWindow:
    """The half-open range ``[start_ms, end_ms)`` of ``property``, lookback included."""

    property: str
    start_ms: int
    end_ms: int
    lookback_ms: int = 0

    def filters(self) -> list[dict[str, str]]:
        return [
            {"propertyName": self.property, "operator": "GTE", "value": str(self.start_ms)},
            {"propertyName": self.property, "operator": "LT", "value": str(self.end_ms)},
        ]

    def to_dict(self) -> dict[str, Any]:
        """For XCom, asset events and lineage: JSON-able, the edges in both ms and ISO 8601 UTC."""
        return {
            "property": self.property,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "start": _iso(self.start_ms),
            "end": _iso(self.end_ms),
            "lookback_seconds": self.lookback_ms / 1000,
        }


def parse_moment(value: Any, field_name: str) -> datetime:
    """A window edge as a user gives it: an aware datetime, a date, epoch milliseconds, or ISO 8601
    text (rendered templates are text). Naive values are UTC, as Airflow's templates render them."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    elif isinstance(value, int) and not isinstance(value, bool):
        return _from_ms(value, field_name)
    elif isinstance(value, str) and value.strip():
        text = value.strip()
        if text.isdigit():
            return _from_ms(int(text), field_name)
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise HubSpotExportRequestError(
                f"{field_name} must be a datetime, ISO 8601 text such as '2026-11-27T00:00:00+00:00' or "
                f"'{{{{ data_interval_start }}}}', or epoch milliseconds; got {text[:60]!r}."
            ) from None
    else:
        raise HubSpotExportRequestError(
            f"{field_name} must be a datetime, ISO 8601 text or epoch milliseconds; got {value!r}."
        )
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


# Epoch milliseconds below this are before 1973: epoch seconds given by mistake
# ("{{ data_interval_start.int_timestamp }}"), which would make a window of nearly all time.
_MIN_PLAUSIBLE_MS = 100_000_000_000


def _from_ms(ms: int, field_name: str) -> datetime:
    if ms < _MIN_PLAUSIBLE_MS:
        raise HubSpotExportRequestError(
            f"{field_name}={ms} is before 1973 as epoch milliseconds: epoch seconds? Give milliseconds "
            "(e.g. '{{ data_interval_start.int_timestamp * 1000 }}') or ISO 8601 text ('{{ data_interval_start }}')."
        )
    return _EPOCH + timedelta(milliseconds=ms)


def lookback_ms(lookback: Any) -> int:
    if isinstance(lookback, timedelta):
        ms = lookback // _MS
    elif isinstance(lookback, (int, float)) and not isinstance(lookback, bool):
        ms = round(lookback * 1000)
    else:
        raise HubSpotExportRequestError(
            f"lookback must be a timedelta or seconds (e.g. timedelta(hours=1) or 3600); got {lookback!r}."
        )
    if ms < 0:
        raise HubSpotExportRequestError(f"lookback must not be negative; got {lookback!r}. Use 0 for none.")
    return ms


# Airflow's presets, as its timetables expand them (croniter knows only some of them).
CRON_PRESETS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@quarterly": "0 0 1 */3 *",
    "@yearly": "0 0 1 1 *",
}


@dataclass(frozen=True)
class Schedule:
    """What the window needs of a DAG's schedule to find the point before a run's: a cron
    expression in its timezone, or a fixed delta. Read from the timetable by ``compat``."""

    cron: str | None = None
    timezone: tzinfo = timezone.utc
    delta: timedelta | None = None

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any] | None) -> Schedule | None:
        """From ``compat.schedule_fields``: a timezone given as a name, a tzinfo or an offset in
        seconds; a delta as a timedelta or seconds (a calendar delta has no fixed previous point)."""
        if not fields:
            return None
        zone = fields.get("timezone") or "UTC"
        if isinstance(zone, int):
            zone = timezone(timedelta(seconds=zone))
        elif not isinstance(zone, tzinfo):
            from zoneinfo import ZoneInfo

            zone = timezone.utc if str(zone).upper() == "UTC" else ZoneInfo(str(zone))
        delta = fields.get("delta")
        if isinstance(delta, (int, float)) and not isinstance(delta, bool):
            delta = timedelta(seconds=delta)
        if fields.get("expression"):
            expression = str(fields["expression"])
            return cls(cron=CRON_PRESETS.get(expression, expression), timezone=zone)
        if isinstance(delta, timedelta) and delta > timedelta(0):
            return cls(delta=delta)
        return None

    def previous_point(self, point: datetime) -> datetime | None:
        """The schedule's last point strictly before ``point``, as Airflow's cron timetables
        compute their points: a cron that fires every hour steps in absolute time (so the hour a
        DST change repeats is not skipped); any other steps in wall-clock time, skipping a local
        time the clocks jumped over (which names the same instant as the point itself)."""
        if self.delta is not None:
            return point - self.delta
        if self.cron is None:
            return None
        from croniter import croniter

        local = point.astimezone(self.timezone).replace(tzinfo=None)
        cron = croniter(self.cron, start_time=local)
        if cron.expanded[1] == ["*"]:
            return point - (local - cron.get_prev(datetime))
        for _ in range(4):  # a DST gap costs one step; bounded all the same
            candidate = _localize(cron.get_prev(datetime), self.timezone)
            if candidate < point:
                return candidate
        return None


def _localize(naive: datetime, zone: tzinfo) -> datetime:
    """A wall-clock time in ``zone`` as Airflow (pendulum) reads it: a time the clocks passed twice
    is the second one; a time they jumped over is moved forward by the jump."""
    early, late = naive.replace(tzinfo=zone, fold=0), naive.replace(tzinfo=zone, fold=1)
    if (
        early.utcoffset() != late.utcoffset()
        and early.astimezone(timezone.utc).astimezone(zone).replace(tzinfo=None) == naive
    ):
        return late.astimezone(timezone.utc)  # passed twice
    return early.astimezone(timezone.utc)  # once, or jumped over (the offset before the jump)


def incremental_window(
    *,
    object_type: str,
    modified_property: str | None,
    data_interval_start: datetime | None,
    data_interval_end: datetime | None,
    lookback: Any,
    modified_since: Any = None,
    modified_until: Any = None,
    schedule: Schedule | None = None,
) -> ExportWindow:
    """The run's window: ``[since - lookback, until)``, where ``since`` and ``until`` are
    ``modified_since``/``modified_until`` when given, else the run's data interval; a point interval
    starts at the schedule's previous point."""
    prop = modified_property if modified_property is not None else modified_property_for(object_type)
    if not isinstance(prop, str) or not re.fullmatch(r"[A-Za-z0-9_]+", prop):
        raise HubSpotExportRequestError(
            f"modified_property must be a property's internal name such as 'hs_lastmodifieddate'; got {prop!r}."
        )
    back = lookback_ms(lookback)
    until = (
        parse_moment(modified_until, "modified_until")
        if modified_until not in (None, "")
        else data_interval_end
    )
    since = (
        parse_moment(modified_since, "modified_since")
        if modified_since not in (None, "")
        else data_interval_start
    )
    if until is None or since is None:
        raise HubSpotExportRequestError(
            "incremental=True needs the run's data interval, and this run has none (a manual or "
            f"asset-triggered run of a DAG without one): {FIXES}."
        )
    if since == until and modified_since in (None, ""):
        previous = schedule.previous_point(until) if schedule is not None else None
        if previous is None:
            raise HubSpotExportRequestError(
                f"incremental=True: this run's data interval is a point ({until.isoformat()}), and its "
                f"schedule has no previous point to start from; {FIXES}."
            )
        since = previous
    start_ms, end_ms = to_ms(since) - back, to_ms(until)
    if start_ms >= end_ms:
        raise HubSpotExportRequestError(
            f"incremental=True: the window [{_iso(start_ms)}, {_iso(end_ms)}) is empty; "
            "modified_since must be before modified_until."
        )
    return ExportWindow(prop, start_ms, end_ms, back)


def apply_window(request: Mapping[str, Any], window: ExportWindow) -> dict[str, Any]:
    """The request with the window ANDed into every filter group (and the top-level filters), and
    the id and modified property among the exported columns, so the overlap can be de-duplicated.

    HubSpot ORs ``filterGroups`` and documents top-level ``filters`` as ANDed; the window goes into
    both, so it holds whichever way HubSpot combines them. Refused, naming the limit, when the two
    added filters would break HubSpot's limits (which the request alone met)."""
    request = dict(request)
    search = dict(request.get("publicCrmSearchRequest") or {})
    added = window.filters()
    groups = [dict(g) for g in search.get("filterGroups") or []]
    top = list(search.get("filters") or [])
    total = len(top) + sum(len(g.get("filters") or []) for g in groups)
    for i, group in enumerate(groups):
        count = len(group.get("filters") or [])
        if count + len(added) > MAX_FILTERS_PER_GROUP:
            raise HubSpotExportRequestError(
                f"filter_groups[{i}] has {count} filters, and incremental=True adds {len(added)} to every "
                f"group (the window on {window.property}); HubSpot allows at most {MAX_FILTERS_PER_GROUP} "
                "per group: move some into another group."
            )
        group["filters"] = [*(group.get("filters") or []), *added]
    places = len(groups) + (1 if top or not groups else 0)
    if total + places * len(added) > MAX_FILTERS_TOTAL:
        raise HubSpotExportRequestError(
            f"incremental=True adds {len(added)} filters to each of {places} filter group(s) (the window "
            f"on {window.property}), making {total + places * len(added)}; HubSpot allows at most "
            f"{MAX_FILTERS_TOTAL} in all: drop some filters or groups (at most {MAX_FILTER_GROUPS} groups)."
        )
    if groups:
        search["filterGroups"] = groups
    if top or not groups:
        search["filters"] = [*top, *added]
    request["publicCrmSearchRequest"] = search
    columns = list(request.get("objectProperties") or [])
    for needed in (ID_PROPERTY, window.property):
        if needed not in columns:
            columns.append(needed)
    request["objectProperties"] = columns
    return request
