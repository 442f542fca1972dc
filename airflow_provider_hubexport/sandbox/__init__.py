"""A HubSpot-compatible exports server for local development and tests (``python -m`` to run it)."""

from airflow_provider_hubexport.sandbox.content import Packaging
from airflow_provider_hubexport.sandbox.server import DEFAULT_OAUTH_CLIENT, DEFAULT_TOKEN, Sandbox
from airflow_provider_hubexport.sandbox.state import ExportPlan, Fault, RecordedRequest

__all__ = [
    "DEFAULT_OAUTH_CLIENT",
    "DEFAULT_TOKEN",
    "ExportPlan",
    "Fault",
    "Packaging",
    "RecordedRequest",
    "Sandbox",
]
