"""Export the members of one HubSpot list: start, wait on the triggerer, download.

Three separate tasks, so each can be retried on its own, with a deferrable sensor that frees its
worker slot while HubSpot works. Trigger it with ``{"list_id": "..."}`` to pick the list.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG, Param

from airflow_provider_hubexport.operators.export import (
    HubSpotDownloadExportOperator,
    HubSpotStartExportOperator,
)
from airflow_provider_hubexport.sensors.export import HubSpotExportSensor

EXPORT_ROOT = os.environ.get("HUBSPOT_EXPORT_DIR", "/tmp/hubspot-exports")
# First wait between status checks; the demo sets a short one for the sandbox's quick exports.
POKE_INTERVAL = float(os.environ.get("HUBSPOT_POKE_INTERVAL", "30"))
# The wait grows by half each time up to this cap (seconds): long exports cost few status calls.
MAX_POKE_INTERVAL = float(os.environ.get("HUBSPOT_MAX_POKE_INTERVAL", "600"))
EXPORT_ID = "{{ ti.xcom_pull(task_ids='start_export') }}"

with DAG(
    dag_id="hubspot_list_export",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    # A schema, so the trigger form (and the REST API) refuses a list id that is not one before a run
    # starts; the operator would refuse it too, but only after the run began.
    params={
        "list_id": Param(
            "42",
            type="string",
            pattern="^[0-9]{1,19}$",
            title="List id",
            description="The HubSpot list to export: the number at the end of the list's address in HubSpot",
        )
    },
    tags=["hubspot", "example"],
    doc_md=__doc__,
) as dag:
    start_export = HubSpotStartExportOperator(
        task_id="start_export",
        export_type="LIST",
        list_id="{{ params.list_id }}",
        object_type="CONTACT",
        object_properties=["email", "firstname", "lastname"],
        export_name="list {{ params.list_id }} {{ run_id }}",
    )

    wait_for_export = HubSpotExportSensor(
        task_id="wait_for_export",
        export_task_id=EXPORT_ID,
        deferrable=True,
        poke_interval=POKE_INTERVAL,
        max_poke_interval=MAX_POKE_INTERVAL,
    )

    download_export = HubSpotDownloadExportOperator(
        task_id="download_export",
        export_task_id=EXPORT_ID,
        # run_after, not ts: a run triggered from the UI or the REST API may have no logical date.
        destination=EXPORT_ROOT + "/lists/{{ params.list_id }}/{{ dag_run.run_after | ts_nodash }}",
    )

    start_export >> wait_for_export >> download_export
