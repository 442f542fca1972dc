"""The incremental window (window.py), without a server: its edges, the point-interval rule, the
filters it adds and HubSpot's limits. The end-to-end proof that no record is lost is in
test_e2e_local.py; the operator's use of it in test_incremental.py."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from airflow_provider_hubexport.exceptions import HubSpotExportRequestError
from airflow_provider_hubexport.window import (
    DEFAULT_LOOKBACK,
    ExportWindow,
    Schedule,
    apply_window,
    incremental_window,
    modified_property_for,
    to_ms,
)

UTC = timezone.utc
DAY1 = datetime(2026, 11, 27, tzinfo=UTC)
DAY2 = datetime(2026, 11, 28, tzinfo=UTC)
DAILY = Schedule.from_fields({"expression": "@daily", "timezone": "UTC"})


def window(**kw):
    args = dict(
        object_type="CONTACT",
        modified_property=None,
        data_interval_start=DAY1,
        data_interval_end=DAY2,
        lookback=0,
    )
    return incremental_window(**{**args, **kw})


@pytest.mark.parametrize(
    "object_type,prop",
    [
        ("CONTACT", "lastmodifieddate"),
        ("contact", "lastmodifieddate"),
        ("0-1", "lastmodifieddate"),
        ("COMPANY", "hs_lastmodifieddate"),
        ("DEAL", "hs_lastmodifieddate"),
        ("TICKET", "hs_lastmodifieddate"),
        ("2-4242001", "hs_lastmodifieddate"),
        ("vehicles", "hs_lastmodifieddate"),
    ],
)
def test_the_modified_property_follows_the_object(object_type, prop):
    assert modified_property_for(object_type) == prop
    assert window(object_type=object_type).property == prop


def test_edges_are_exact_milliseconds_half_open_and_the_lookback_widens_the_start():
    w = window(lookback=timedelta(minutes=90))
    assert w.end_ms == 1_795_824_000_000 == to_ms(DAY2)
    assert w.start_ms == to_ms(DAY1) - 90 * 60_000
    assert w.filters() == [
        {"propertyName": "lastmodifieddate", "operator": "GTE", "value": str(w.start_ms)},
        {"propertyName": "lastmodifieddate", "operator": "LT", "value": str(w.end_ms)},
    ]
    assert (
        w.to_dict()["start"] == "2026-11-26T22:30:00.000Z"
        and w.to_dict()["end"] == "2026-11-28T00:00:00.000Z"
    )
    assert window(lookback=600).start_ms == to_ms(DAY1) - 600_000
    assert DEFAULT_LOOKBACK == timedelta(hours=1)


def test_adjacent_runs_without_lookback_share_their_boundary_and_nothing_else():
    first = window()
    second = window(data_interval_start=DAY2, data_interval_end=DAY2 + timedelta(days=1))
    boundary = to_ms(DAY2)
    inside = [w for w in (first, second) if w.start_ms <= boundary < w.end_ms]
    assert inside == [second]
    assert first.end_ms == second.start_ms


@pytest.mark.parametrize(
    "fields,point,previous",
    [
        ({"expression": "@daily", "timezone": "UTC"}, DAY2, DAY1),
        ({"expression": "0 0 * * *", "timezone": "UTC"}, DAY2, DAY1),
        ({"expression": "0 * * * *", "timezone": "UTC"}, DAY2, DAY2 - timedelta(hours=1)),
        (
            {"expression": "@daily", "timezone": "UTC"},
            DAY2 + timedelta(hours=5),
            DAY2,
        ),  # off-schedule: manual
        (
            {"expression": "0 6 * * *", "timezone": "Europe/Amsterdam"},
            datetime(2026, 11, 28, 5, tzinfo=UTC),
            datetime(2026, 11, 27, 5, tzinfo=UTC),
        ),
        # the night Amsterdam's clocks go back: the previous 06:00 local is 25 hours earlier
        (
            {"expression": "0 6 * * *", "timezone": ZoneInfo("Europe/Amsterdam")},
            datetime(2026, 10, 25, 5, tzinfo=UTC),
            datetime(2026, 10, 24, 4, tzinfo=UTC),
        ),
        ({"delta": 3600.0}, DAY2, DAY2 - timedelta(hours=1)),
        ({"delta": timedelta(minutes=15)}, DAY2, DAY2 - timedelta(minutes=15)),
    ],
)
def test_a_point_interval_starts_at_the_schedules_previous_point(fields, point, previous):
    w = window(data_interval_start=point, data_interval_end=point, schedule=Schedule.from_fields(fields))
    assert (w.start_ms, w.end_ms) == (to_ms(previous), to_ms(point))


def test_a_backfill_of_point_runs_gives_contiguous_windows():
    points = [DAY1 + timedelta(days=i) for i in range(1, 8)]
    windows = [window(data_interval_start=p, data_interval_end=p, schedule=DAILY) for p in points]
    assert all(a.end_ms == b.start_ms for a, b in itertools.pairwise(windows))
    assert windows == [window(data_interval_start=p, data_interval_end=p, schedule=DAILY) for p in points]


@pytest.mark.parametrize(
    "kw,words",
    [
        (
            dict(data_interval_start=None, data_interval_end=None),
            ["has none", "CronDataIntervalTimetable", "modified_since"],
        ),
        (
            dict(data_interval_start=DAY2, data_interval_end=DAY2),
            ["is a point", "interval=timedelta", "modified_until"],
        ),
        (
            dict(
                data_interval_start=DAY2,
                data_interval_end=DAY2,
                schedule=Schedule.from_fields({"delta": {"days": 1}}),
            ),
            ["is a point"],
        ),
        (
            dict(modified_since="2026-11-29", modified_until="2026-11-28"),
            ["is empty", "modified_since must be before"],
        ),
        (dict(modified_since="yesterday"), ["modified_since must be", "ISO 8601"]),
        (dict(lookback="1h"), ["lookback must be a timedelta or seconds"]),
        (dict(lookback=-5), ["lookback must not be negative"]),
        (dict(modified_property="last modified"), ["modified_property must be"]),
    ],
)
def test_no_window_is_refused_naming_the_fix(kw, words):
    with pytest.raises(HubSpotExportRequestError) as err:
        window(**kw)
    assert all(w in str(err.value) for w in words), str(err.value)


@pytest.mark.parametrize(
    "value,expected",
    [
        ("2026-11-27T00:00:00+00:00", DAY1),
        ("2026-11-27T01:00:00+01:00", DAY1),
        ("2026-11-27", DAY1),  # {{ ds }}: naive is UTC
        ("2026-11-27T00:00:00Z", DAY1),
        (str(to_ms(DAY1)), DAY1),
        (to_ms(DAY1), DAY1),
        (DAY1, DAY1),
    ],
)
def test_explicit_edges_in_the_spellings_templates_render(value, expected):
    w = window(modified_since=value, modified_until=DAY2, data_interval_start=None, data_interval_end=None)
    assert w.start_ms == to_ms(expected)


def test_an_explicit_since_on_a_point_run_needs_no_schedule():
    w = window(data_interval_start=DAY2, data_interval_end=DAY2, modified_since=DAY1)
    assert (w.start_ms, w.end_ms) == (to_ms(DAY1), to_ms(DAY2))


REQUEST = {"exportType": "VIEW", "format": "CSV", "objectType": "CONTACT", "objectProperties": ["email"]}
W = ExportWindow("lastmodifieddate", 1000, 2000)


def test_the_window_is_anded_into_every_group_and_the_columns_added():
    groups = [{"filters": [{"propertyName": "email", "operator": "HAS_PROPERTY"}]}, {"filters": []}]
    out = apply_window({**REQUEST, "publicCrmSearchRequest": {"filterGroups": groups}}, W)
    assert [g["filters"][-2:] for g in out["publicCrmSearchRequest"]["filterGroups"]] == [W.filters()] * 2
    assert out["publicCrmSearchRequest"]["filterGroups"][0]["filters"][0]["propertyName"] == "email"
    assert "filters" not in out["publicCrmSearchRequest"]
    assert out["objectProperties"] == ["email", "hs_object_id", "lastmodifieddate"]
    assert groups[0]["filters"] == [{"propertyName": "email", "operator": "HAS_PROPERTY"}]  # not mutated


def test_top_level_filters_and_no_filters_get_the_window_too():
    top = [{"propertyName": "email", "operator": "HAS_PROPERTY"}]
    out = apply_window({**REQUEST, "publicCrmSearchRequest": {"filters": top}}, W)
    assert out["publicCrmSearchRequest"]["filters"] == [*top, *W.filters()]
    assert apply_window(REQUEST, W)["publicCrmSearchRequest"] == {"filters": W.filters()}
    both = apply_window(
        {**REQUEST, "publicCrmSearchRequest": {"filters": top, "filterGroups": [{"filters": top}]}}, W
    )
    assert both["publicCrmSearchRequest"]["filters"][-2:] == W.filters()
    assert both["publicCrmSearchRequest"]["filterGroups"][0]["filters"][-2:] == W.filters()
    cols = apply_window({**REQUEST, "objectProperties": ["lastmodifieddate", "hs_object_id"]}, W)[
        "objectProperties"
    ]
    assert cols == ["lastmodifieddate", "hs_object_id"]


def flt(n):
    return [{"propertyName": f"p{i}", "operator": "HAS_PROPERTY"} for i in range(n)]


@pytest.mark.parametrize(
    "search,words",
    [
        ({"filterGroups": [{"filters": flt(5)}]}, ["filter_groups[0] has 5 filters", "at most 6 per group"]),
        ({"filterGroups": [{"filters": flt(4)}] * 4}, ["making 24", "at most 18 in all"]),
        ({"filters": flt(17)}, ["making 19", "at most 18"]),
    ],
)
def test_hubspots_limits_are_refused_naming_the_window(search, words):
    with pytest.raises(HubSpotExportRequestError) as err:
        apply_window({**REQUEST, "publicCrmSearchRequest": search}, W)
    assert all(w in str(err.value) for w in words) and "incremental=True" in str(err.value), str(err.value)


def test_up_to_the_limits_is_accepted():
    out = apply_window({**REQUEST, "publicCrmSearchRequest": {"filterGroups": [{"filters": flt(4)}] * 3}}, W)
    assert sum(len(g["filters"]) for g in out["publicCrmSearchRequest"]["filterGroups"]) == 18


@pytest.mark.parametrize(
    "schedule,point,previous",
    [
        # midnight in Amsterdam, the DAG's timezone: 23:00 UTC in winter
        ("@daily", datetime(2026, 11, 27, 23, tzinfo=UTC), datetime(2026, 11, 26, 23, tzinfo=UTC)),
        ("0 6 * * *", datetime(2026, 11, 28, 5, tzinfo=UTC), datetime(2026, 11, 27, 5, tzinfo=UTC)),
        (timedelta(hours=2), DAY2, DAY2 - timedelta(hours=2)),
    ],
)
def test_the_previous_point_is_read_from_airflows_own_timetables(schedule, point, previous):
    """What the task sees as ``dag.timetable`` differs by minor (the scheduler's classes on 3.0 and
    3.1, the Task SDK's definitions from 3.2): each leg runs this against its own."""
    import pendulum
    from airflow.sdk import DAG

    from airflow_provider_hubexport.compat import schedule_fields

    with DAG("w", schedule=schedule, start_date=pendulum.datetime(2026, 1, 1, tz="Europe/Amsterdam")) as dag:
        pass
    found = Schedule.from_fields(schedule_fields(dag.timetable))
    assert found is not None and found.previous_point(point) == previous


def test_timetables_with_real_intervals_need_no_previous_point():
    import pendulum
    from airflow.sdk import DAG

    from airflow_provider_hubexport.compat import schedule_fields

    try:
        from airflow.sdk import CronDataIntervalTimetable
    except ImportError:  # Airflow < 3.2
        from airflow.timetables.interval import CronDataIntervalTimetable
    with DAG(
        "w",
        schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
        start_date=pendulum.datetime(2026, 1, 1),
    ) as dag:
        pass
    assert schedule_fields(dag.timetable) is None
    with DAG("n", schedule=None, start_date=pendulum.datetime(2026, 1, 1)) as dag:
        pass
    assert schedule_fields(dag.timetable) is None


def test_airflows_pendulum_datetimes_give_the_same_edges():
    """A task's data interval is pendulum's DateTime, whose difference is pendulum's own Interval."""
    import pendulum

    edges = window(
        data_interval_start=pendulum.datetime(2026, 11, 27, 1, tz="Europe/Amsterdam"),
        data_interval_end=pendulum.datetime(2026, 11, 28, tz="UTC").add(microseconds=999),
    )
    assert (edges.start_ms, edges.end_ms) == (to_ms(DAY1), to_ms(DAY2))


@pytest.mark.parametrize(
    "cron,zone,around",
    [
        (
            "0 2 * * *",
            "America/New_York",
            datetime(2026, 3, 8, tzinfo=UTC),
        ),  # 02:00 does not exist that night
        ("30 2 * * *", "Europe/Berlin", datetime(2026, 3, 29, tzinfo=UTC)),
        ("0 0 * * *", "America/Santiago", datetime(2026, 9, 6, tzinfo=UTC)),  # midnight does not exist
        ("0 1 * * *", "America/New_York", datetime(2026, 11, 1, tzinfo=UTC)),  # 01:00 happens twice
        ("0 * * * *", "America/New_York", datetime(2026, 11, 1, tzinfo=UTC)),
        ("0 * * * *", "Europe/Berlin", datetime(2026, 3, 29, tzinfo=UTC)),
        ("*/30 * * * *", "Europe/Amsterdam", datetime(2026, 10, 25, tzinfo=UTC)),
        ("0 6 * * 1-5", "Australia/Sydney", datetime(2026, 4, 5, tzinfo=UTC)),
        ("0 0 * * *", "UTC", datetime(2026, 11, 27, tzinfo=UTC)),
    ],
)
def test_previous_points_match_airflows_own_schedule_across_dst(cron, zone, around):
    """Airflow's cron timetable is the oracle (its private step methods, used here only to check):
    the window of every run across a DST change starts at the run Airflow scheduled before it, so
    the windows tile time, no hour skipped (the clocks jumping forward) or counted twice."""
    import pendulum
    from airflow.timetables.trigger import CronTriggerTimetable

    airflow_schedule = CronTriggerTimetable(cron, timezone=zone)
    ours = Schedule.from_fields({"expression": cron, "timezone": zone})
    points = [pendulum.instance(around - timedelta(days=2))]
    while points[-1] < around + timedelta(days=2):
        points.append(airflow_schedule._get_next(points[-1]))
    assert len(points) > 3
    for before, point in itertools.pairwise(points[1:]):
        assert ours.previous_point(point) == before, (cron, zone, point)
