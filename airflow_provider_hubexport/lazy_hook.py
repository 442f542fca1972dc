"""The hook, created on first use: DAG files import operators and sensors on every parse, and the
hook brings requests and the HTTP provider with it."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow_provider_hubexport.hooks.hubspot import HubSpotHook


class LazyHubSpotHook:
    """For operators and sensors with a ``hubspot_conn_id``."""

    hubspot_conn_id: str
    _hook_instance: HubSpotHook | None = None

    @property
    def hook(self) -> HubSpotHook:
        if self._hook_instance is None:
            from airflow_provider_hubexport.hooks.hubspot import HubSpotHook

            self._hook_instance = HubSpotHook(hubspot_conn_id=self.hubspot_conn_id)
        return self._hook_instance
