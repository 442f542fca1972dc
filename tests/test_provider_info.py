"""Registration: provider info valid against Airflow's schema, and seen by the airflow CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from importlib.resources import files

import jsonschema

from airflow_provider_hubexport import get_provider_info


def test_provider_info_validates_against_airflow_schema():
    schema = json.loads(files("airflow").joinpath("provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)


def test_package_name_and_entry_point():
    info = get_provider_info()
    assert info["package-name"] == metadata.metadata("airflow-provider-hubexport")["Name"]
    eps = [
        ep
        for ep in metadata.entry_points(group="apache_airflow_provider")
        if ep.value.startswith("airflow_provider_hubexport")
    ]
    assert len(eps) == 1 and eps[0].load()() == info


def test_connection_form_declared_in_provider_info():
    (conn,) = get_provider_info()["connection-types"]
    assert conn["connection-type"] == "hubspot"
    assert conn["ui-field-behaviour"]["relabeling"]["password"] == "Access token"
    fields = conn["conn-fields"]
    for secret in ("client_secret", "refresh_token"):
        assert fields[secret]["schema"]["format"] == "password"
    assert "format" not in fields["client_id"]["schema"]


def test_providers_manager_sees_the_form():
    from airflow.providers_manager import ProvidersManager
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    pm = ProvidersManager()
    assert "airflow-provider-hubexport" in pm.providers
    hook = ProvidersManagerTaskRuntime().hooks["hubspot"]
    assert hook.hook_class_name == "airflow_provider_hubexport.hooks.hubspot.HubSpotHook"
    widgets = pm.connection_form_widgets
    assert widgets["extra__hubspot__refresh_token"].is_sensitive
    assert not widgets["extra__hubspot__api_version"].is_sensitive
    assert pm.field_behaviours["hubspot"]["relabeling"]["password"] == "Access token"


def _airflow(*args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "airflow", *args],
        capture_output=True,
        text=True,
        timeout=180,
        env=os.environ.copy(),
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_airflow_cli_lists_provider_and_hook():
    assert "airflow-provider-hubexport" in _airflow("providers", "list", "-o", "json")
    hooks = json.loads(_airflow("providers", "hooks", "-o", "json"))
    hubspot = [h for h in hooks if h["connection_type"] == "hubspot"]
    assert hubspot and hubspot[0]["class"] == "airflow_provider_hubexport.hooks.hubspot.HubSpotHook"
