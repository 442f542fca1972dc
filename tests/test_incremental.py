"""Incremental exports in real Airflow (``dag.test()``) against the sandbox's CRM: the window each
run sends, what lands compared with what the CRM says changed, custom objects by name, every
property, associations. The backfill that loses nothing runs with the real scheduler
(test_e2e_local.py)."""

from __future__ import annotations

import csv
import glob
import json
from datetime import datetime, timedelta, timezone

import pytest
from dagrun import assert_failed_with, run_dag
from test_operators import HEADER

from airflow_provider_hubexport.exceptions import HubSpotExportRequestError
from airflow_provider_hubexport.window import to_ms

UTC = timezone.utc
DAY = datetime(2026, 11, 28, tzinfo=UTC)  # the run's point; its window is the day before
DAY_BEFORE = DAY - timedelta(days=1)


@pytest.fixture
def env(sandbox, connect, airflow_db):
    connect()
    return sandbox


def _started(sandbox) -> list[dict]:
    return [json.loads(r.body) for r in sandbox.api_requests("/export/async", method="POST")]


def _rows(folder) -> list[dict]:
    rows = []
    for path in sorted(glob.glob(f"{folder}/*.csv")):
        with open(path, newline="", encoding="utf-8") as fh:
            rows += list(csv.DictReader(fh))
    return rows


def _asset_event_extra(uri):
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        query = (
            select(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.uri == uri)
        )
        return session.scalars(query).all()[-1].extra


def _old_ids(crm, object_type, count):
    """Generated records last modified long before the window (a month before the CRM's genesis),
    so a test's own modification is their only one in it."""
    old = crm.changes(object_type, crm.genesis_ms - 30 * 86_400_000, crm.genesis_ms - 20 * 86_400_000)
    return sorted(old)[:count]


DAILY = (
    HEADER
    + """
from datetime import timedelta
with DAG({dag_id}, schedule="@daily", start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False) as dag:
    HubSpotExportOperator(
        task_id="export", object_type={object_type}, object_properties={properties},
        incremental=True, lookback=timedelta(minutes=30), export_internal_values_options=["NAMES"],
        destination={dest}, filename="changes", unzip=True, poke_interval=0.1,
        outlets=[Asset("file://" + {dest})],
    )
"""
)


def test_a_daily_point_run_lands_exactly_the_records_changed_in_its_window(env, tmp_path):
    crm = env.crm
    crm.set_population("contacts", 3000)
    start_ms, end_ms = to_ms(DAY_BEFORE) - 30 * 60_000, to_ms(DAY)
    inside, edge_in, edge_out, last_ms = _old_ids(crm, "contacts", 4)
    crm.modify("contacts", inside, to_ms(DAY_BEFORE) + 3_600_000, firstname="Changed")
    crm.modify("contacts", edge_in, start_ms)  # the window's first millisecond: in (GTE)
    crm.modify("contacts", edge_out, end_ms)  # the next window's first millisecond: out (LT)
    crm.modify("contacts", last_ms, end_ms - 1)
    result = run_dag(
        "incremental_daily",
        DAILY,
        dest=str(tmp_path),
        object_type="CONTACT",
        properties=["email", "firstname"],
        test_kwargs={"logical_date": DAY},
    )
    assert result.tasks == {"export": "success"}

    (request,) = _started(env)
    window = [
        {"propertyName": "lastmodifieddate", "operator": "GTE", "value": str(start_ms)},
        {"propertyName": "lastmodifieddate", "operator": "LT", "value": str(end_ms)},
    ]
    assert request["publicCrmSearchRequest"] == {"filters": window}
    assert request["objectProperties"] == ["email", "firstname", "hs_object_id", "lastmodifieddate"]

    rows = _rows(tmp_path)
    landed = {int(r["hs_object_id"]): r for r in rows}
    expected = crm.changes("contacts", start_ms, end_ms)
    assert len(rows) == len(landed) and set(landed) == set(expected)
    assert {inside, edge_in, last_ms} <= set(landed) and edge_out not in landed
    assert landed[inside]["firstname"] == "Changed"
    assert len(expected) > 50  # generated records of that day too, not only the test's four

    recorded = result.keyed["export"]["export"]
    assert recorded["window"] == {
        "property": "lastmodifieddate",
        "start_ms": start_ms,
        "end_ms": end_ms,
        "start": "2026-11-26T23:30:00.000Z",
        "end": "2026-11-28T00:00:00.000Z",
        "lookback_seconds": 1800.0,
    }
    assert recorded["export_task_id"] in env.exports and recorded["object_type"] == "CONTACT"
    assert [item["window"] for item in result.xcom["export"]] == [recorded["window"]]  # the XCom value
    assert _asset_event_extra("file://" + str(tmp_path))["window"] == recorded["window"]


def test_a_custom_object_by_name_exports_its_type_id_on_hs_lastmodifieddate(env, tmp_path):
    crm = env.crm
    crm.set_population("vehicles", 500)
    (changed,) = _old_ids(crm, "vehicles", 1)
    crm.modify("vehicles", changed, to_ms(DAY_BEFORE) + 60_000, vehicle_name="Renamed")
    result = run_dag(
        "incremental_vehicles",
        DAILY,
        dest=str(tmp_path),
        object_type="Vehicles",  # the plural label
        properties=["vehicle_name"],
        test_kwargs={"logical_date": DAY},
    )
    assert result.tasks == {"export": "success"}
    (request,) = _started(env)
    assert request["objectType"] == "2-4242001"
    assert {f["propertyName"] for f in request["publicCrmSearchRequest"]["filters"]} == {
        "hs_lastmodifieddate"
    }
    landed = {int(r["hs_object_id"]): r for r in _rows(tmp_path)}
    start_ms = to_ms(DAY_BEFORE) - 30 * 60_000
    assert set(landed) == set(crm.changes("vehicles", start_ms, to_ms(DAY)))
    assert landed[changed]["vehicle_name"] == "Renamed"
    assert result.keyed["export"]["export"]["object_type"] == "2-4242001"


def test_an_unknown_custom_object_fails_before_any_export_listing_the_names(env, tmp_path):
    result = run_dag(
        "incremental_unknown",
        DAILY,
        dest=str(tmp_path),
        object_type="bikes",
        properties=["name"],
        test_kwargs={"logical_date": DAY},
    )
    assert_failed_with(result, "export", HubSpotExportRequestError, r"'bikes'.*vehicles \(2-4242001\)")
    assert _started(env) == []


ALL = (
    HEADER
    + """
with DAG({dag_id}, schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")) as dag:
    HubSpotStartExportOperator(task_id="start", object_type="COMPANY", object_properties="ALL")
"""
)


def _property_names(sandbox, object_type):
    import requests

    answer = requests.get(
        f"{sandbox.api_url}/crm/v3/properties/{object_type}",
        headers={"Authorization": f"Bearer {sandbox.token}"},
        timeout=10,
    )
    answer.raise_for_status()
    return [p["name"] for p in answer.json()["results"]]


def test_all_properties_resolve_when_the_task_runs_and_a_new_one_shows_up_next_run(env):
    first = run_dag("all_properties_1", ALL)
    assert first.tasks == {"start": "success"}
    names = _property_names(env, "companies")
    assert len(names) > 5 and "favorite_color" not in names
    assert _started(env)[0]["objectProperties"] == names
    assert first.keyed["start"]["export"]["object_properties"] == names

    env.crm.add_property("companies", "favorite_color", label="Favorite color")
    env.crm.archive_property("companies", "city")
    second = run_dag("all_properties_2", ALL)
    assert second.tasks == {"start": "success"}
    sent = _started(env)[1]["objectProperties"]
    assert "favorite_color" in sent and "city" not in sent
    assert second.keyed["start"]["export"]["object_properties"] == sent
    assert len(env.api_requests("/crm/v3/properties/")) == 3  # one call per run, and the test's own


def test_a_run_whose_interval_is_a_point_without_a_schedule_fails_naming_the_fixes(env, tmp_path):
    source = (
        HEADER
        + """
with DAG({dag_id}, schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")) as dag:
    HubSpotStartExportOperator(task_id="start", object_type="CONTACT", object_properties=["email"],
                               incremental=True)
"""
    )
    result = run_dag("incremental_manual", source, test_kwargs={"logical_date": DAY})
    assert_failed_with(
        result,
        "start",
        HubSpotExportRequestError,
        r"incremental=True.*CronDataIntervalTimetable.*modified_since",
    )
    assert _started(env) == []


def test_explicit_templated_edges_replace_the_interval(env):
    source = (
        HEADER
        + """
with DAG({dag_id}, schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")) as dag:
    HubSpotStartExportOperator(task_id="start", object_type="DEAL", object_properties=["dealname"],
                               incremental=True, lookback=0,
                               modified_since="{{{{ macros.ds_add(ds, -7) }}}}", modified_until="{{{{ ds }}}}")
"""
    )
    result = run_dag("incremental_explicit", source, test_kwargs={"logical_date": DAY})
    assert result.tasks == {"start": "success"}
    (request,) = _started(env)
    assert request["publicCrmSearchRequest"]["filters"] == [
        {
            "propertyName": "hs_lastmodifieddate",
            "operator": "GTE",
            "value": str(to_ms(DAY - timedelta(days=7))),
        },
        {"propertyName": "hs_lastmodifieddate", "operator": "LT", "value": str(to_ms(DAY))},
    ]


def test_associations_and_internal_values_reach_hubspot_as_documented(env, tmp_path):
    source = (
        HEADER
        + """
with DAG({dag_id}, schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")) as dag:
    HubSpotExportOperator(
        task_id="export", object_type="DEAL", object_properties=["dealname", "dealstage"],
        associated_object_types=["COMPANY", "CONTACT"], include_labeled_associations=True,
        export_internal_values_options=["NAMES", "VALUES"],
        override_associated_objects_per_definition_per_row_limit=True,
        destination={dest}, poke_interval=0.1,
    )
"""
    )
    env.plan_next(pending_polls=0, processing_polls=0, row_count=20)
    result = run_dag("associations", source, dest=str(tmp_path))
    assert result.tasks == {"export": "success"}
    (request,) = _started(env)
    assert request["associatedObjectType"] == ["COMPANY", "CONTACT"]
    assert request["includeLabeledAssociations"] is True
    assert request["exportInternalValuesOptions"] == ["NAMES", "VALUES"]
    assert request["overrideAssociatedObjectsPerDefinitionPerRowLimit"] is True
    rows = _rows(tmp_path)
    assert len(rows) == 20 and {"dealname", "dealstage"} <= set(rows[0])


@pytest.mark.parametrize(
    "call,scope",
    [
        (lambda hook: hook.resolve_object_type("vehicles"), "crm.schemas.custom.read"),
        (lambda hook: hook.get_property_names("CONTACT"), "crm.schemas.contacts.read"),
    ],
)
def test_a_token_without_the_schema_scopes_is_told_which_scope(sandbox, connect, call, scope):
    """HubSpot's 403 MISSING_SCOPES, surfaced with its category and the scope to grant, not retried."""
    from airflow_provider_hubexport.exceptions import HubSpotExportError
    from airflow_provider_hubexport.hooks.hubspot import HubSpotHook

    sandbox.add_token("pat-export-only", scopes=("crm.export",))
    connect(password="pat-export-only")
    with pytest.raises(HubSpotExportError) as err:
        call(HubSpotHook())
    assert err.value.status_code == 403 and err.value.category == "MISSING_SCOPES"
    assert scope in err.value.missing_scopes and scope in str(err.value) and err.value.correlation_id
    assert len(sandbox.api_requests("/crm/v3/")) == 1  # refused for good: not retried


def test_names_resolve_case_insensitively_and_standard_types_and_ids_need_no_lookup(sandbox, connect):
    from airflow_provider_hubexport.hooks.hubspot import HubSpotHook

    connect()
    hook = HubSpotHook()
    assert [hook.resolve_object_type(n) for n in ("vehicles", "P4242_VEHICLES", "Vehicles")] == [
        "2-4242001"
    ] * 3
    assert len(sandbox.api_requests("/crm/v3/schemas")) == 3
    assert [hook.resolve_object_type(n) for n in ("contact", "DEAL", "2-4242001", "0-3")] == [
        "CONTACT",
        "DEAL",
        "2-4242001",
        "0-3",
    ]
    assert len(sandbox.api_requests("/crm/v3/schemas")) == 3  # no lookup for those


def test_the_three_task_pipeline_carries_the_window_to_the_downloads_asset_event(env, tmp_path):
    source = (
        HEADER
        + """
with DAG({dag_id}, schedule="@daily", start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False) as dag:
    start = HubSpotStartExportOperator(task_id="start", object_type="COMPANY", object_properties=["name"],
                                       incremental=True)
    wait = HubSpotExportSensor(task_id="wait", export_task_id=start.output, poke_interval=0.1)
    download = HubSpotDownloadExportOperator(task_id="download", export_task_id=wait.output,
                                             destination={dest}, outlets=[Asset("file://" + {dest})])
    start >> wait >> download
"""
    )
    result = run_dag("incremental_pipeline", source, dest=str(tmp_path), test_kwargs={"logical_date": DAY})
    assert set(result.tasks.values()) == {"success"}
    window = result.keyed["start"]["export"]["window"]
    assert window["property"] == "hs_lastmodifieddate" and window["end_ms"] == to_ms(DAY)
    assert _asset_event_extra("file://" + str(tmp_path))["window"] == window
    assert result.xcom["download"][0]["window"] == window  # the download's XCom value


def test_hubspots_limits_with_the_window_are_refused_before_any_call(env):
    source = (
        HEADER
        + """
with DAG({dag_id}, schedule="@daily", start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False) as dag:
    HubSpotStartExportOperator(
        task_id="start", object_type="vehicles", object_properties="ALL", incremental=True,
        filter_groups=[{{"filters": [{{"propertyName": "make", "operator": "HAS_PROPERTY"}}] * 5}}],
    )
"""
    )
    result = run_dag("incremental_limits", source, test_kwargs={"logical_date": DAY})
    assert_failed_with(
        result, "start", HubSpotExportRequestError, r"filter_groups\[0\] has 5 filters.*at most 6"
    )
    assert env.api_requests("/crm/") == []  # not even the schema or properties lookups
