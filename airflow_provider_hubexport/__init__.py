"""Apache Airflow provider for HubSpot's CRM Exports API.

Kept import-free: Airflow reads ``get_provider_info`` on start-up and DAG files import our
operators on every parse.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.2.0"

_MODULE = "airflow_provider_hubexport"


def get_provider_info() -> dict[str, Any]:
    """Provider metadata for Airflow's ProvidersManager (validated against its schema in tests)."""
    integration = "HubSpot CRM Exports"
    return {
        "package-name": "airflow-provider-hubexport",
        "name": "HubSpot CRM Exports",
        "description": "Start, wait for and download HubSpot CRM exports (contacts, companies, deals, "
        "lists, custom objects) as CSV, XLS or XLSX files.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": integration,
                "external-doc-url": "https://developers.hubspot.com/docs/api-reference/crm-exports-v3/guide",
                "tags": ["service"],
            }
        ],
        "hooks": [
            {
                "integration-name": integration,
                "python-modules": [f"{_MODULE}.hooks.hubspot", f"{_MODULE}.hooks.hubspot_async"],
            }
        ],
        "sensors": [{"integration-name": integration, "python-modules": [f"{_MODULE}.sensors.export"]}],
        "triggers": [
            {
                "integration-name": integration,
                "python-modules": [f"{_MODULE}.triggers.export", f"{_MODULE}.triggers.quota"],
            }
        ],
        "connection-types": [
            {
                "hook-class-name": f"{_MODULE}.hooks.hubspot.HubSpotHook",
                "hook-name": "HubSpot",
                "connection-type": "hubspot",
                "ui-field-behaviour": {
                    "hidden-fields": ["login", "schema", "port"],
                    "relabeling": {"host": "API base URL", "password": "Access token"},
                    "placeholders": {
                        "host": "https://api.hubapi.com",
                        "password": "A Service Key (Development > Keys > Service keys), a private app "
                        "token (pat-...) or an OAuth access token, with the crm.export scope",
                    },
                },
                "conn-fields": {
                    "api_version": {
                        "label": "API version",
                        "description": "Empty: v3 (paths /crm/v3/exports/...); or 2026-03 (date-versioned paths).",
                        # No default: it would be saved in every connection, and Airflow's secrets
                        # masker warns about so short a value. A new connection starts at null, which
                        # Airflow's select (3.2+) labels from values_display (else it shows "null").
                        "schema": {
                            "type": ["string", "null"],
                            "enum": [None, "v3", "2026-03"],
                            "values_display": {
                                "null": "Default (v3)",
                                "v3": "v3 (/crm/v3/exports/...)",
                                "2026-03": "2026-03 (/crm/exports/2026-03/...)",
                            },
                        },
                    },
                    "client_id": {
                        "label": "OAuth client id",
                        "description": "With client secret and refresh token: refresh OAuth access tokens.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "client_secret": {
                        "label": "OAuth client secret",
                        "description": "Your OAuth app's client secret (HubSpot: Development > Apps > your "
                        "app > Auth); only with client id and refresh token.",
                        "schema": {"type": ["string", "null"], "format": "password"},
                    },
                    "refresh_token": {
                        "label": "OAuth refresh token",
                        "description": "From an OAuth app install with the crm.export scope.",
                        "schema": {"type": ["string", "null"], "format": "password"},
                    },
                    "connect_timeout": {
                        "label": "Connect timeout (s)",
                        "schema": {"type": ["number", "null"], "default": 10},
                    },
                    "read_timeout": {
                        "label": "Read timeout (s)",
                        "schema": {"type": ["number", "null"], "default": 60},
                    },
                    "portal_id": {
                        "label": "Portal id (lineage)",
                        "description": "Your HubSpot account's id, for OpenLineage dataset names "
                        "(hubspot://<portal id>); empty: asked of HubSpot when lineage is reported.",
                        "schema": {"type": ["integer", "null"]},
                    },
                    "retry_max_attempts": {
                        "label": "Retry: max attempts",
                        "description": "Attempts per call on 429, 5xx and network errors.",
                        "schema": {"type": ["integer", "null"], "default": 6},
                    },
                    "retry_max_seconds": {
                        "label": "Retry: max seconds",
                        "description": "Total time one call may spend retrying.",
                        "schema": {"type": ["number", "null"], "default": 300},
                    },
                    "resend_uncertain_start": {
                        "label": "Resend uncertain starts",
                        "description": "Resend a start after a 500, 504 or timeout (may start a second export).",
                        "schema": {"type": ["boolean", "null"], "default": True},
                    },
                    "retry_backoff_seconds": {
                        "label": "Retry: first backoff (s)",
                        "description": "Wait after a first 5xx or network error; doubles per attempt, at most 30 s.",
                        "schema": {"type": ["number", "null"], "default": 1},
                    },
                    "quota_retry_interval": {
                        "label": "Daily limit: retry every (s)",
                        "description": "A start refused for the 30-a-day limit is tried again this often.",
                        "schema": {"type": ["number", "null"], "default": 900},
                    },
                    "quota_wait_timeout": {
                        "label": "Daily limit: wait at most (s)",
                        "description": "How long a refused start keeps trying before the task fails.",
                        "schema": {"type": ["number", "null"], "default": 86400},
                    },
                },
            }
        ],
    }
