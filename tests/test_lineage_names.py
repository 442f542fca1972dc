"""OpenLineage names of an export's input and outputs (airflow_provider_hubexport/lineage.py)."""

from __future__ import annotations

import pytest

from airflow_provider_hubexport.landing import Destination
from airflow_provider_hubexport.lineage import destination_dataset, hubspot_dataset


@pytest.mark.parametrize(
    "portal,request_,expected",
    [
        (4242, {"exportType": "VIEW", "objectType": "contact"}, ("hubspot://4242", "CONTACT")),
        (
            4242,
            {"exportType": "LIST", "objectType": "CONTACT", "listId": "77"},
            ("hubspot://4242", "lists/77"),
        ),
        (None, {"exportType": "VIEW", "objectType": "2-12345"}, ("hubspot", "2-12345")),
    ],
)
def test_hubspot_side(portal, request_, expected):
    assert hubspot_dataset(portal, request_) == expected


def test_local_and_file_uri_destinations_are_absolute_paths(tmp_path):
    assert destination_dataset(Destination(str(tmp_path)).local_dir) == ("file", str(tmp_path))
    assert destination_dataset(Destination(f"file://{tmp_path}/").local_dir) == ("file", str(tmp_path))


def test_object_storage_destination_is_bucket_and_key():
    from airflow.sdk import ObjectStoragePath

    assert destination_dataset(None, ObjectStoragePath("s3://bkt/exports/contacts/")) == (
        "s3://bkt",
        "exports/contacts",
    )
