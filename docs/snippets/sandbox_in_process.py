"""The in-process sandbox example of docs/sandbox.md, included from here so that a test runs it."""

from __future__ import annotations

import os


def plan_and_inject() -> list:
    from airflow_provider_hubexport.hooks.hubspot import HubSpotHook
    from airflow_provider_hubexport.sandbox import Sandbox

    with Sandbox() as sandbox:  # ephemeral ports on 127.0.0.1
        sandbox.plan_next(pending_polls=1, processing_polls=1, row_count=1000)
        sandbox.inject("status", status=429, retry_after=1, path="/status")
        os.environ["AIRFLOW_CONN_HUBSPOT_SANDBOX"] = sandbox.connection_json()
        hook = HubSpotHook(hubspot_conn_id="hubspot_sandbox")
        export_task_id = hook.start_export(
            {
                "exportType": "VIEW",
                "format": "CSV",
                "exportName": "contacts",
                "objectType": "CONTACT",
                "objectProperties": ["email"],
                "language": "EN",
            }
        )
        hook.get_export_status(export_task_id)  # the 429, waited out as Retry-After says
        return sandbox.requests  # every request it received, headers included
