"""HubSpot's error bodies and rate-limit headers without a server (errors.py)."""

from __future__ import annotations

import pytest

from airflow_provider_hubexport.errors import (
    error_from_response,
    find_missing_scopes,
    read_response,
    retry_after_seconds,
)
from airflow_provider_hubexport.exceptions import HubSpotExportError


@pytest.mark.parametrize(
    "body",
    [
        {"context": {"missingScopes": ["crm.export", "crm.lists.read"]}},
        {"context": {"requiredGranularScopes": ["crm.export", "crm.lists.read"]}},
        {"errors": [{"message": "x", "context": {"missingScopes": ["crm.export", "crm.lists.read"]}}]},
        {
            "errors": [
                {"message": "x", "context": {"requiredGranularScopes": ["crm.export"]}},
                {"context": {"missingScopes": ["crm.lists.read"]}},
            ]
        },
        {
            "message": "This app hasn't been granted all required scopes {missingScopes=[crm.export, crm.lists.read]}"
        },
        {"errors": [{"message": "denied", "context": {"missingScopes": "[crm.export, crm.lists.read]"}}]},
    ],
)
def test_missing_scopes_found_wherever_hubspot_puts_them(body):
    assert find_missing_scopes(body) == ["crm.export", "crm.lists.read"]


def test_error_carries_every_field():
    body = (
        b'{"status":"error","message":"Denied","correlationId":"abc-123","category":"MISSING_SCOPES",'
        b'"subCategory":"SCOPES","errors":[{"message":"need scope","context":{"requiredGranularScopes":["crm.export"]}}]}'
    )
    err = error_from_response(403, {}, body, "start export")
    text = str(err)
    for part in (
        "Denied",
        "HTTP 403",
        "category=MISSING_SCOPES",
        "subCategory=SCOPES",
        "missing scopes=crm.export",
        "correlationId=abc-123",
        "need scope",
        "crm.export scope",
    ):
        assert part in text
    assert not err.retryable


@pytest.mark.parametrize(
    "headers,expected",
    [
        ({"Retry-After": "3"}, 3.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"X-HubSpot-RateLimit-Interval-Milliseconds": "10000"}, 10.0),
        ({"Retry-After": "2", "X-HubSpot-RateLimit-Interval-Milliseconds": "10000"}, 2.0),
        ({}, None),
        ({"Retry-After": "soon"}, None),
    ],
)
def test_retry_after(headers, expected):
    assert retry_after_seconds(headers) == expected


def test_429_and_5xx_are_retryable_with_their_wait():
    err = error_from_response(
        429, {"Retry-After": "4"}, b'{"message":"slow down","errorType":"RATE_LIMIT"}', "x"
    )
    assert err.retryable and err.retry_after == 4.0 and err.category == "RATE_LIMIT"
    assert error_from_response(502, {}, b"<html>bad gateway</html>", "x").retryable
    assert "bad gateway" in str(error_from_response(502, {}, b"<html>bad gateway</html>", "x"))


def test_non_json_200_is_a_retryable_malformed_response():
    with pytest.raises(HubSpotExportError) as err:
        read_response(200, {}, b"<html>", "export status")
    assert err.value.retryable and "malformed" in str(err.value)
