"""Export deals to XLSX with one task that starts, waits and downloads.

For those who want one box in the graph. A retry reconnects to the export already started.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG

from airflow_provider_hubexport.operators.export import HubSpotExportOperator

EXPORT_ROOT = os.environ.get("HUBSPOT_EXPORT_DIR", "/tmp/hubspot-exports")
# First wait between status checks; the demo sets a short one for the sandbox's quick exports.
POKE_INTERVAL = float(os.environ.get("HUBSPOT_POKE_INTERVAL", "30"))

with DAG(
    dag_id="hubspot_export_one_task",
    schedule="@weekly",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["hubspot", "example"],
    doc_md=__doc__,
) as dag:
    HubSpotExportOperator(
        task_id="export_deals",
        object_type="DEAL",
        object_properties=["dealname", "amount", "dealstage", "closedate"],
        file_format="XLSX",
        export_name="deals {{ dag_run.run_after | ds }}",
        destination=EXPORT_ROOT + "/deals/{{ dag_run.run_after | ds }}",
        filename="deals",
        deferrable=True,  # the wait (and a wait for HubSpot's daily limit) on the triggerer
        poke_interval=POKE_INTERVAL,
        retries=2,
    )
