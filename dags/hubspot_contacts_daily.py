"""Every day, export the contacts HubSpot changed during the run's data interval and count them.

The filter and the destination both come from the data interval, so a re-run or a backfill of a
day exports the same contacts to the same place (the file is replaced atomically), and days never
mix. Set ``HUBSPOT_EXPORT_DIR`` (or change ``EXPORT_ROOT``) to choose where files land: a local
directory or an object storage URI such as ``s3://my-bucket/hubspot``.

Backfills: HubSpot allows 30 exports per rolling 24 hours, one at a time. A start it refuses for
that limit waits for the window and tries again (``wait_for_quota``), so a backfill of more days
runs unattended; set ``HUBSPOT_POOL`` to a one-slot pool that counts deferred tasks to keep all
HubSpot tasks to one export at a time (README, "Backfills").
"""

from __future__ import annotations

import os

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
    # A real interval (yesterday 00:00 to today 00:00), not a point in time: the filter needs one.
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
        object_properties=["hs_object_id", "email", "firstname", "lastname", "company", "lastmodifieddate"],
        export_name="contacts modified {{ data_interval_start | ds }}",
        filters=[
            {
                "propertyName": "lastmodifieddate",
                "operator": "BETWEEN",
                "value": "{{ data_interval_start.int_timestamp * 1000 }}",
                "highValue": "{{ data_interval_end.int_timestamp * 1000 - 1 }}",
            }
        ],
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
        """Stand-in for the warehouse load: read what landed and report its size."""
        import csv
        import logging

        total = 0
        for item in landed:
            with open(item["path"], newline="", encoding="utf-8") as fh:
                rows = sum(1 for _ in csv.reader(fh)) - 1  # less the header
            logging.getLogger(__name__).info("%s: %d rows, %d bytes", item["path"], rows, item["size"])
            total += rows
        return total

    start_export >> wait_for_export >> download_export
    count_rows(download_export.output)
