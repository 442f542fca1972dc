"""OpenLineage events of the export operators, as the OpenLineage provider emits them from real
task runs (``dag.test()``) against the sandbox, read back from its file transport."""

from __future__ import annotations

import json
from importlib.resources import files

import pytest
from dagrun import run_dag
from test_operators import HEADER

from airflow_provider_hubexport.lineage import RUN_FACET
from airflow_provider_hubexport.sandbox import Packaging

PROPERTIES = ["email", "firstname"]


def _listener_manager():
    try:
        from airflow.sdk.listener import get_listener_manager  # Airflow >= 3.2
    except ImportError:
        from airflow.listeners.listener import get_listener_manager
    return get_listener_manager()


@pytest.fixture(scope="module")
def lineage_events(tmp_path_factory):
    """The OpenLineage listener, writing every event to one file (its client is made once per
    process, so one file for the module); returns a reader of one DAG's events."""
    from airflow.providers.openlineage.plugins.listener import get_openlineage_listener

    path = tmp_path_factory.mktemp("openlineage") / "events.jsonl"
    env = pytest.MonkeyPatch()
    env.setenv(
        "AIRFLOW__OPENLINEAGE__TRANSPORT",
        json.dumps({"type": "file", "log_file_path": str(path), "append": True}),
    )
    env.setenv("AIRFLOW__OPENLINEAGE__NAMESPACE", "hubexport-tests")
    listener = get_openlineage_listener()
    manager = _listener_manager()
    manager.add_listener(listener)

    def read(dag_id: str) -> dict[str, list[dict]]:
        """task id -> its events in order (eventType START, COMPLETE, FAIL)."""
        events: dict[str, list[dict]] = {}
        lines = path.read_text().splitlines() if path.exists() else []
        for event in (json.loads(line) for line in lines if line.strip()):
            dag, _, task = event["job"]["name"].partition(".")
            if dag == dag_id and task:
                events.setdefault(task, []).append(event)
        return events

    try:
        yield read
    finally:
        manager.pm.unregister(listener)
        env.undo()


@pytest.fixture
def env(sandbox, connect, airflow_db, lineage_events):
    connect()
    return sandbox


def _complete(events: list[dict]) -> dict:
    (complete,) = [e for e in events if e["eventType"] == "COMPLETE"]
    return complete


def _hubspot_input(event: dict, name: str = "CONTACT", properties=PROPERTIES) -> None:
    (given,) = event["inputs"]
    assert (given["namespace"], given["name"]) == ("hubspot://4242", name)
    assert [f["name"] for f in given["facets"]["schema"]["fields"]] == properties


def _valid_run_facet(facet: dict) -> None:
    """The facet as the JSON schema shipped beside the package (its ``_schemaURL``) describes it."""
    import jsonschema

    schema = json.loads(
        files("airflow_provider_hubexport").joinpath("HubSpotExportRunFacet.json").read_text()
    )
    ours = schema["$defs"]["HubSpotExportRunFacet"]["allOf"][1]
    jsonschema.validate(facet, {**ours, "additionalProperties": False, "properties": {
        **ours["properties"], "_producer": {"type": "string"}, "_schemaURL": {"const": schema["$id"]},
    }})  # fmt: skip


def test_three_task_pipeline_reports_hubspot_in_and_the_landed_file_out(env, tmp_path, lineage_events):
    env.plan_next(pending_polls=1, processing_polls=1, row_count=50)
    source = (
        HEADER
        + """
with DAG({dag_id}, schedule=None, start_date=pendulum.datetime(2026, 1, 1)) as dag:
    start = HubSpotStartExportOperator(
        task_id="start_export", object_type="CONTACT", object_properties={properties},
    )
    wait = HubSpotExportSensor(
        task_id="wait", export_task_id="{{{{ ti.xcom_pull(task_ids='start_export') }}}}",
        deferrable=True, poke_interval=0.1,
    )
    download = HubSpotDownloadExportOperator(
        task_id="download", export_task_id=wait.output, destination={dest},
    )
    start >> wait >> download
"""
    )
    result = run_dag("lineage_pipeline", source, dest=str(tmp_path), properties=PROPERTIES)
    assert result.tasks == {"start_export": "success", "wait": "success", "download": "success"}
    task_id = result.xcom["start_export"]
    (landed,) = result.xcom["download"]
    events = lineage_events("lineage_pipeline")

    started = _complete(events["start_export"])
    _hubspot_input(started)
    assert started["outputs"] == []
    assert started["run"]["facets"][RUN_FACET]["exportTaskId"] == task_id

    downloaded = _complete(events["download"])
    _hubspot_input(downloaded)  # from HubSpot's description of the export: the task has only its id
    (out,) = downloaded["outputs"]
    assert (out["namespace"], out["name"]) == ("file", str(tmp_path))
    stats = out["outputFacets"]["outputStatistics"]
    assert (stats["rowCount"], stats["size"], stats["fileCount"]) == (50, landed["size"], 1)
    facet = downloaded["run"]["facets"][RUN_FACET]
    assert facet["exportTaskId"] == task_id and facet["files"] == [landed["path"]]
    _valid_run_facet(facet)
    assert (facet["objectType"], facet["exportType"], facet["format"]) == ("CONTACT", "VIEW", "CSV")
    assert "Signature" not in json.dumps(events)  # no signed URL in any event


def test_all_in_one_after_a_deferral_reports_every_unzipped_file(env, tmp_path, lineage_events):
    env.packaging = Packaging(zip_over_bytes=10_000, rows_per_file=400)
    env.plan_next(pending_polls=1, processing_polls=2, row_count=1000)
    source = (
        HEADER
        + """
with DAG({dag_id}, schedule=None, start_date=pendulum.datetime(2026, 1, 1)) as dag:
    HubSpotExportOperator(
        task_id="export", object_type="CONTACT", object_properties={properties},
        destination={dest}, unzip=True, deferrable=True, poke_interval=0.1,
    )
"""
    )
    result = run_dag("lineage_all_in_one", source, dest=str(tmp_path), properties=PROPERTIES)
    assert result.tasks == {"export": "success"} and result.runs["export"] == 2  # resumed after deferring
    landed = result.xcom["export"]
    assert len(landed) == 3  # 1,000 rows at 400 a file
    complete = _complete(lineage_events("lineage_all_in_one")["export"])
    _hubspot_input(complete)
    (out,) = complete["outputs"]
    assert (out["namespace"], out["name"]) == ("file", str(tmp_path))
    stats = out["outputFacets"]["outputStatistics"]
    assert stats == {**stats, "rowCount": 1000, "size": sum(f["size"] for f in landed), "fileCount": 3}
    assert complete["run"]["facets"][RUN_FACET]["files"] == [f["path"] for f in landed]


def test_a_list_export_names_its_list_and_an_unknown_portal_names_hubspot(env, tmp_path, lineage_events):
    env.portal_id = None  # a token HubSpot does not let read the account's details
    env.plan_next(pending_polls=0, processing_polls=0, row_count=5)
    source = (
        HEADER
        + """
with DAG({dag_id}, schedule=None, start_date=pendulum.datetime(2026, 1, 1)) as dag:
    HubSpotExportOperator(
        task_id="export", export_type="LIST", list_id="77", object_type="CONTACT",
        object_properties={properties}, destination={dest}, deferrable=False, poke_interval=0.1,
    )
"""
    )
    result = run_dag("lineage_list", source, dest=str(tmp_path), properties=PROPERTIES)
    assert result.tasks == {"export": "success"}
    (given,) = _complete(lineage_events("lineage_list")["export"])["inputs"]
    assert (given["namespace"], given["name"]) == ("hubspot", "lists/77")


def test_a_failed_task_reports_its_export_and_asks_hubspot_nothing(env, tmp_path, lineage_events):
    env.plan_next(pending_polls=0, processing_polls=1, cancel=True)
    source = (
        HEADER
        + """
with DAG({dag_id}, schedule=None, start_date=pendulum.datetime(2026, 1, 1)) as dag:
    HubSpotExportOperator(
        task_id="export", object_type="CONTACT", object_properties={properties},
        destination={dest}, deferrable=False, poke_interval=0.1,
    )
"""
    )
    result = run_dag("lineage_failed", source, dest=str(tmp_path), properties=PROPERTIES)
    assert result.tasks == {"export": "failed"}
    (failed,) = [e for e in lineage_events("lineage_failed")["export"] if e["eventType"] == "FAIL"]
    (task_id,) = env.exports
    assert failed["run"]["facets"][RUN_FACET]["exportTaskId"] == task_id
    # No portal id without asking, and a failed task asks nothing: no input rather than one named
    # 'hubspot' beside the 'hubspot://<portal>' its successes report.
    assert failed["inputs"] == [] and failed["outputs"] == []
    assert env.api_requests("/account-info") == [] and env.api_requests(f"/export/{task_id}") == []


def test_a_download_whose_export_hubspot_does_not_describe_reports_its_outputs(sandbox, hook, tmp_path):
    """The download asks for the export's description under the export task id, which HubSpot's
    documentation does not promise is the export id (api.py, "Ids"): a 404 there leaves lineage
    with the outputs alone, and the task as it was."""
    from conftest import CONTACTS

    from airflow_provider_hubexport.lineage import task_lineage

    sandbox.plan_next(pending_polls=0, processing_polls=0, row_count=5)
    export_task_id = hook.start_export(CONTACTS)
    landed = hook.download_export(export_task_id, tmp_path)
    sandbox.inject("status", status=404, path=f"/export/{export_task_id}", times=1)
    lineage = task_lineage(
        hook, export_task_id=export_task_id, request=None, landed=landed, destination=str(tmp_path)
    )
    assert len(sandbox.api_requests(f"/export/{export_task_id}", method="GET")) == 1  # asked, once
    assert lineage.inputs == [] and [(o.namespace, o.name) for o in lineage.outputs] == [
        ("file", str(tmp_path))
    ]
    assert lineage.outputs[0].outputFacets["outputStatistics"].rowCount is None
    assert lineage.run_facets[RUN_FACET].exportTaskId == export_task_id


def test_an_incremental_export_reports_its_window_and_every_resolved_property(env, tmp_path, lineage_events):
    """Resumed after a deferral, the operator holds nothing from before: the window and the
    properties "ALL" resolved to come back from XCom's ``export``."""
    import pendulum

    env.plan_next(pending_polls=1, processing_polls=2, row_count=30)
    source = (
        HEADER
        + """
with DAG({dag_id}, schedule="@daily", start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False) as dag:
    HubSpotExportOperator(
        task_id="export", object_type="DEAL", object_properties="ALL", incremental=True,
        destination={dest}, deferrable=True, poke_interval=0.1, outlets=[Asset("file://" + {dest})],
    )
"""
    )
    result = run_dag(
        "lineage_incremental",
        source,
        dest=str(tmp_path),
        test_kwargs={"logical_date": pendulum.datetime(2026, 11, 28, tz="UTC")},
    )
    assert result.tasks == {"export": "success"} and result.runs["export"] == 2  # resumed after deferring
    recorded = result.keyed["export"]["export"]
    complete = _complete(lineage_events("lineage_incremental")["export"])
    _hubspot_input(complete, name="DEAL", properties=recorded["object_properties"])
    assert len(recorded["object_properties"]) > 5 and "hs_lastmodifieddate" in recorded["object_properties"]
    facet = complete["run"]["facets"][RUN_FACET]
    _valid_run_facet(facet)
    assert facet["window"] == {
        "property": "hs_lastmodifieddate",
        "startMs": recorded["window"]["start_ms"],
        "endMs": recorded["window"]["end_ms"],
        "start": "2026-11-26T23:00:00.000Z",
        "end": "2026-11-28T00:00:00.000Z",
        "lookbackSeconds": 3600.0,
    }
