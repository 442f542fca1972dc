"""Checks of ids and export requests (validation.py)."""

from __future__ import annotations

from airflow_provider_hubexport.validation import validate_export_request, validate_id


def test_ids_normalised():
    assert validate_id(" 42 ") == "42" and validate_id(7) == "7" and validate_id("007") == "7"


def test_request_copy_is_independent():
    original = {"exportType": "VIEW", "format": "CSV", "objectType": "DEAL", "objectProperties": ["dealname"]}
    sent = validate_export_request(original)
    sent["objectProperties"].append("x")
    assert original["objectProperties"] == ["dealname"]
