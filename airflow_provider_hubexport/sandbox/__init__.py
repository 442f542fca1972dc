"""A HubSpot-compatible exports server for local development and tests (``python -m`` to run it)."""

from airflow_provider_hubexport.sandbox.content import Packaging
from airflow_provider_hubexport.sandbox.server import (
    DEFAULT_OAUTH_CLIENT,
    DEFAULT_TOKEN,
    HUBSPOT_EXPORT_LIMIT,
    Sandbox,
)
from airflow_provider_hubexport.sandbox.state import ExportPlan, ExportRecord, Fault, RecordedRequest

__all__ = [
    "DEFAULT_OAUTH_CLIENT",
    "DEFAULT_TOKEN",
    "ExportPlan",
    "ExportRecord",
    "Fault",
    "HUBSPOT_EXPORT_LIMIT",
    "Packaging",
    "RecordedRequest",
    "Sandbox",
]
