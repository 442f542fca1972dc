"""The hook example of docs/hook.md, included from here so that a test runs it (against the sandbox)."""

from __future__ import annotations

from airflow_provider_hubexport.hooks.hubspot import HubSpotHook


def export_contacts(hubspot_conn_id: str = "hubspot_default") -> str:
    hook = HubSpotHook(hubspot_conn_id=hubspot_conn_id)
    export_task_id = hook.start_export(
        {
            "exportType": "VIEW",
            "format": "CSV",
            "exportName": "contacts",
            "objectType": "CONTACT",
            "objectProperties": ["email", "firstname", "lastname"],
            "language": "EN",
        }
    )
    status = hook.get_export_status(export_task_id)  # ExportStatus: status, errors, num_errors, timestamps
    print(status.status)  # PENDING, PROCESSING, COMPLETE or CANCELED
    # HubSpot's description of the export (asked under the export task id: HubSpot documents an
    # export id here; that they are one number is not verified)
    print(hook.get_export(export_task_id))
    return export_task_id
