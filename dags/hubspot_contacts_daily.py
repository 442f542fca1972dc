"""Every day, export the contacts HubSpot changed during the run's data interval and load them.

``incremental=True`` filters on ``lastmodifieddate`` over the data interval widened back by an hour
(``lookback``: HubSpot's search index lags behind edits), so no contact changed near midnight is
lost; the overlap is de-duplicated in the load (the latest row per ``hs_object_id``). The window
and the destination both come from the data interval, so a re-run or a backfill of a day exports
the same contacts to the same place (the file is replaced atomically). Deleted contacts never
appear in an export: ``hubspot_deletions_reconcile`` finds them. Set ``HUBSPOT_EXPORT_DIR`` (or change ``EXPORT_ROOT``) to choose where files land: a local
directory or an object storage URI such as ``s3://my-bucket/hubspot``.

Backfills: HubSpot allows 30 exports per rolling 24 hours, one at a time. A start it refuses for
that limit waits for the window and tries again (``wait_for_quota``), so a backfill of more days
runs unattended; set ``HUBSPOT_POOL`` to a one-slot pool that counts deferred tasks to keep all
HubSpot tasks to one export at a time (README, "Backfills").
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.sdk import DAG, task

try:
    from airflow.sdk import CronDataIntervalTimetable
except ImportError:  # Airflow < 3.2
    from airflow.timetables.interval import CronDataIntervalTimetable

from airflow_provider_hubexport.operators.export import (
    HubSpotDownloadExportOperator,
    HubSpotStartExportOperator,
)
from airflow_provider_hubexport.sensors.export import HubSpotExportSensor

EXPORT_ROOT = os.environ.get("HUBSPOT_EXPORT_DIR", "/tmp/hubspot-exports")
# First wait between status checks; the demo sets a short one for the sandbox's quick exports.
POKE_INTERVAL = float(os.environ.get("HUBSPOT_POKE_INTERVAL", "30"))
EXPORT_ID = "{{ ti.xcom_pull(task_ids='start_export') }}"
POOL = os.environ.get("HUBSPOT_POOL", "default_pool")  # e.g. "hubspot_exports": one slot, deferred counted

with DAG(
    dag_id="hubspot_contacts_daily",
    # A real interval (yesterday 00:00 to today 00:00), which also names the day's folder. A plain
    # "@daily" works too (its runs are points; the window starts at the previous midnight).
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,  # HubSpot runs one export at a time per account
    tags=["hubspot", "example"],
    doc_md=__doc__,
) as dag:
    start_export = HubSpotStartExportOperator(
        task_id="start_export",
        object_type="CONTACT",
        # hs_object_id and lastmodifieddate are added: the load de-duplicates on them
        object_properties=["email", "firstname", "lastname", "company"],
        incremental=True,
        lookback=timedelta(hours=1),  # the default, said out loud
        export_internal_values_options=["NAMES"],  # headers are property names, whatever the language
        export_name="contacts modified {{ data_interval_start | ds }}",
        retries=2,
        pool=POOL,
    )

    wait_for_export = HubSpotExportSensor(
        task_id="wait_for_export",
        export_task_id=EXPORT_ID,
        # Waits on the triggerer, holding no worker slot for the minutes or hours an export takes
        # (without it, [operators] default_deferrable decides, which is False unless set).
        deferrable=True,
        poke_interval=POKE_INTERVAL,
        timeout=6 * 3600,
        pool=POOL,
    )

    download_export = HubSpotDownloadExportOperator(
        task_id="download_export",
        export_task_id=EXPORT_ID,
        destination=EXPORT_ROOT + "/contacts/{{ data_interval_start | ds }}_{{ data_interval_end | ds }}",
        unzip=True,  # large exports arrive zipped; land the CSV files themselves
        filename="contacts",  # the same name on every re-run of the day, not HubSpot's per-export name
        retries=2,
        pool=POOL,
    )

    @task
    def count_rows(landed: list[dict]) -> int:
        """Stand-in for the warehouse load: the day's contacts, one row each (the latest per
        hs_object_id: the lookback's overlap with yesterday's file is absorbed by the same rule in
        a MERGE on hs_object_id)."""
        import csv
        import logging
        from datetime import datetime

        def modified(row: dict) -> float:  # HubSpot documents no date format: epoch ms or ISO 8601
            text = row["lastmodifieddate"]
            return (
                int(text)
                if text.isdigit()
                else datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000
            )

        latest: dict[str, dict] = {}
        for item in landed:
            with open(item["path"], newline="", encoding="utf-8") as fh:
                for row in csv.DictReader(fh):
                    kept = latest.get(row["hs_object_id"])
                    if kept is None or modified(row) >= modified(kept):
                        latest[row["hs_object_id"]] = row
        logging.getLogger(__name__).info("%d contacts changed, from %d file(s)", len(latest), len(landed))
        return len(latest)

    start_export >> wait_for_export >> download_export
    count_rows(download_export.output)
