"""The example DAGs in dags/: they parse, and each runs end to end against the sandbox."""

from __future__ import annotations

import csv
import hashlib
import json
import os
from pathlib import Path

import pendulum
import pytest
from dagrun import run_dag

DAGS = Path(__file__).resolve().parent.parent / "dags"


def test_example_dags_parse_without_errors():
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow < 3.2
        from airflow.models.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    assert set(bag.dag_ids) == {
        "hubspot_contacts_daily",
        "hubspot_list_export",
        "hubspot_export_one_task",
        "hubspot_deletions_reconcile",
    }


@pytest.fixture
def examples(sandbox, connect, airflow_db, tmp_path, monkeypatch):
    connect()
    monkeypatch.setenv("HUBSPOT_EXPORT_DIR", str(tmp_path))
    monkeypatch.setenv("HUBSPOT_POKE_INTERVAL", "0.2")
    return tmp_path


def _run(name, **test_kwargs):
    return run_dag(name, (DAGS / f"{name}.py").read_text(), raw=True, test_kwargs=test_kwargs)


def _sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_contacts_daily_exports_the_interval_idempotently(sandbox, examples):
    day = pendulum.datetime(2026, 11, 27, tz="UTC")
    sandbox.plan_next(row_count=3000)  # contacts changed over the last 30 days: ~100 a day
    first = _run("hubspot_contacts_daily", logical_date=day)
    assert set(first.tasks.values()) == {"success"}
    request = json.loads(sandbox.api_requests("/async", method="POST")[0].body)
    start_ms = (day.int_timestamp - 86400 - 3600) * 1000  # the interval, an hour of lookback before
    end_ms = day.int_timestamp * 1000
    assert request["publicCrmSearchRequest"]["filters"] == [
        {"propertyName": "lastmodifieddate", "operator": "GTE", "value": str(start_ms)},
        {"propertyName": "lastmodifieddate", "operator": "LT", "value": str(end_ms)},
    ]
    (landed,) = first.xcom["download_export"]
    assert os.path.dirname(landed["path"]) == str(examples / "contacts" / "2026-11-26_2026-11-27")
    with open(landed["path"], newline="", encoding="utf-8") as fh:
        ids = [int(row["hs_object_id"]) for row in csv.DictReader(fh)]
    changed = sandbox.crm.changes("contacts", start_ms, end_ms)
    assert sorted(ids) == sorted(changed) and first.xcom["count_rows"] == len(changed) > 50
    assert _sha(landed["path"]) == _sha(sandbox.served_file(first.xcom["start_export"]))
    # A re-run of the same day lands in the same place, replacing the file: nothing piles up.
    second = _run("hubspot_contacts_daily", logical_date=day)
    assert set(second.tasks.values()) == {"success"}
    assert second.xcom["download_export"][0]["path"] == landed["path"]
    assert os.listdir(os.path.dirname(landed["path"])) == [os.path.basename(landed["path"])]


def test_deletions_reconcile_marks_the_ids_gone_since_the_last_snapshot(sandbox, examples):
    sandbox.plan_next(row_count=40)
    first = _run("hubspot_deletions_reconcile", logical_date=pendulum.datetime(2026, 11, 27, tz="UTC"))
    assert set(first.tasks.values()) == {"success"} and first.xcom["find_deleted"] == []
    request = json.loads(sandbox.api_requests("/async", method="POST")[0].body)
    assert request["objectProperties"] == ["hs_object_id"] and "publicCrmSearchRequest" not in request
    now = sandbox.crm.clock_ms()
    for gone in (3, 17):
        sandbox.crm.archive("contacts", gone, now - 1000)
    sandbox.plan_next(row_count=40)
    second = _run("hubspot_deletions_reconcile", logical_date=pendulum.datetime(2026, 11, 28, tz="UTC"))
    assert set(second.tasks.values()) == {"success"}
    assert second.xcom["find_deleted"] == ["3", "17"]
    deleted = examples / "contacts_deleted" / "2026-11-28.csv"
    assert deleted.read_text().split() == ["hs_object_id", "3", "17"]


def test_list_export_with_deferrable_sensor(sandbox, examples):
    # Counted polls: the check before deferring sees PENDING however slow the machine is.
    sandbox.plan_next(pending_polls=1, processing_polls=1)
    result = _run("hubspot_list_export")
    assert set(result.tasks.values()) == {"success"}
    request = json.loads(sandbox.api_requests("/async", method="POST")[0].body)
    assert request["exportType"] == "LIST" and request["listId"] == "42"
    agents = {r.headers["User-Agent"].rsplit(" ", 1)[-1] for r in sandbox.api_requests("/status")}
    assert "aiohttp" in agents  # the wait ran as a trigger
    (landed,) = result.xcom["download_export"]
    assert _sha(landed["path"]) == _sha(sandbox.served_file(result.xcom["start_export"]))


def test_export_one_task(sandbox, examples):
    result = _run("hubspot_export_one_task")
    assert result.tasks == {"export_deals": "success"}
    (landed,) = result.xcom["export_deals"]
    assert landed["path"].endswith(".xlsx") and landed["path"].startswith(str(examples / "deals"))


def test_the_example_waits_are_deferrable_whatever_the_default():
    # Issue 26: in `make airflow` ([operators] default_deferrable unset) the daily DAG's sensor
    # waited in poke mode, holding a worker slot: the examples show the wait users should copy.
    import ast
    from pathlib import Path

    dags = Path(__file__).resolve().parent.parent / "dags"
    waits = {"HubSpotExportSensor", "HubSpotExportOperator"}
    seen = []
    for path in sorted(dags.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in waits:
                given = {k.arg: k.value for k in node.keywords}
                assert "deferrable" in given and getattr(given["deferrable"], "value", None) is True, (
                    f"{path.name}: {node.func.id} without deferrable=True"
                )
                seen.append(path.name)
    assert sorted(seen) == [
        "hubspot_contacts_daily.py",
        "hubspot_deletions_reconcile.py",
        "hubspot_export_one_task.py",
        "hubspot_list_export.py",
    ]
