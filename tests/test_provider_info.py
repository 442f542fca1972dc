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
from airflow_provider_hubexport.compat import AIRFLOW_VERSION


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

    try:  # Airflow >= 3.2: the task runtime has its own view of the hooks
        from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime as HooksView
    except ImportError:
        HooksView = ProvidersManager

    pm = ProvidersManager()
    assert "airflow-provider-hubexport" in pm.providers
    hook = HooksView().hooks["hubspot"]
    assert hook.hook_class_name == "airflow_provider_hubexport.hooks.hubspot.HubSpotHook"
    behaviour = pm.field_behaviours.get("hubspot")
    if behaviour is None:
        # Airflow 3.0 and 3.1 read form customisations from hook classes only when wtforms (the FAB
        # provider) is installed, for every provider; the hook still offers them.
        import importlib.util

        from airflow_provider_hubexport.hooks.hubspot import HubSpotHook

        assert AIRFLOW_VERSION < (3, 2) and importlib.util.find_spec("wtforms") is None
        behaviour = HubSpotHook.get_ui_field_behaviour()
    assert behaviour["relabeling"]["password"] == "Access token"
    widgets = pm.connection_form_widgets
    if AIRFLOW_VERSION >= (3, 2):  # provider info's conn-fields: the extras drawn as form fields
        assert widgets["extra__hubspot__refresh_token"].is_sensitive
        assert not widgets["extra__hubspot__api_version"].is_sensitive
    else:  # 3.0, 3.1: the standard fields are relabelled; the extras go in the Extra JSON
        assert not [name for name in widgets if name.startswith("extra__hubspot__")]


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


def _select_label(value, values_display):
    """The text Airflow's connection form (3.2+, its FlexibleForm's FieldDropdown) shows for one
    option of a select, read from the UI's bundle (``ui/dist/assets``): ``values_display`` under the
    value's text (null's is ``"null"``), else its ``None`` entry, else the value's text."""
    text = "null" if value is None else str(value)
    if isinstance(values_display, dict):
        for key in (text, "None"):
            if values_display.get(key) is not None:
                return values_display[key]
    return text


def _api_version_field():
    """The form's api_version field as the API server hands it to the UI: the value a new
    connection starts with, and its schema."""
    if AIRFLOW_VERSION >= (3, 2):
        from airflow.providers_manager import ProvidersManager

        return ProvidersManager().connection_form_widgets["extra__hubspot__api_version"].field
    (conn,) = get_provider_info()["connection-types"]
    schema = conn["conn-fields"]["api_version"]["schema"]
    return {"value": schema.get("default"), "schema": schema}


def test_the_api_version_select_shows_v3_not_null_for_a_new_connection():
    field = _api_version_field()
    schema, value = field["schema"], field["value"]
    # No default: the form would save 'v3' in every connection, and the secrets masker warns that
    # so short a value is too short to mask (commit e966bbb). A new connection starts at null ...
    assert "default" not in schema and value is None and None in schema["enum"]
    # ... and the select shows that null as the default it stands for, never the word "null".
    shown = {option: _select_label(option, schema.get("values_display")) for option in schema["enum"]}
    assert "v3" in shown[value] and "null" not in shown[value].lower()
    assert "null" not in [label.lower() for label in shown.values()]
    assert len(set(shown.values())) == len(shown)  # no two options read alike
