"""HubSpot's statuses, tokens and requests without a server (api.py)."""

from __future__ import annotations

import pytest

from airflow_provider_hubexport.api import ExportStatus, decode_json, parse_status, parse_token_response
from airflow_provider_hubexport.exceptions import HubSpotExportError


@pytest.mark.parametrize("payload", [None, [], {}, {"links": {}}, "COMPLETE"])
def test_status_without_status_field_is_malformed(payload):
    with pytest.raises(HubSpotExportError, match="malformed"):
        parse_status(payload, "1")


def test_unknown_status_fails_clearly():
    with pytest.raises(HubSpotExportError, match="unknown status 'EXPLODED'"):
        parse_status({"status": "EXPLODED"}, "1")


def test_complete_without_result_is_malformed():
    with pytest.raises(HubSpotExportError, match="without a 'result'"):
        parse_status({"status": "COMPLETE"}, "1")


def test_canceled_status_lists_errors():
    status = parse_status(
        {"status": "CANCELED", "errors": [{"message": "Too many rows", "context": {"limit": ["5"]}}]}, "7"
    )
    assert status.is_final and status.num_errors == 1 and "Too many rows" in status.errors[0]


def test_a_wait_reads_only_the_status_until_it_is_final():
    body = {
        "status": "PROCESSING",
        "requestedAt": "2026-01-01T00:00:00Z",
        "startedAt": "2026-01-01T00:00:01Z",
        "errors": [{"message": "x"}],
    }
    assert parse_status(body, "7", for_wait=True) == ExportStatus(export_task_id="7", status="PROCESSING")
    full = parse_status(body, "7")
    assert full.requested_at is not None and full.errors == ["x"]
    # Final: everything the event carries, but never the signed URL.
    done = {**body, "status": "COMPLETE", "result": "https://files.example/x.csv?Signature=s"}
    status = parse_status(done, "7", for_wait=True)
    assert status.result_url is None and status.to_dict() == parse_status(done, "7").to_dict()
    with pytest.raises(HubSpotExportError, match="without a 'result'"):
        parse_status({"status": "COMPLETE"}, "7", for_wait=True)


def test_token_response():
    token = parse_token_response({"access_token": "tok-SECRET", "expires_in": 1800})
    assert token.fresh() and "tok-SECRET" not in repr(token)
    assert not parse_token_response({"access_token": "a", "expires_in": 30}).fresh(margin=60)


def test_token_refresh_request_repr_hides_its_secrets():
    from airflow_provider_hubexport.api import token_refresh_request

    request = token_refresh_request("client", "SECRET-CLIENT-SECRET", "SECRET-REFRESH")
    assert request.form["client_secret"] == "SECRET-CLIENT-SECRET"
    assert "SECRET-CLIENT-SECRET" not in repr(request) and "SECRET-REFRESH" not in repr(request)


@pytest.mark.parametrize(
    "body",
    [
        '{"status": "PROCESSING", "exportName": "Kontakte für Bücher"}'.encode(),
        b"\xef\xbb\xbf" + '{"status": "PROCESSING", "exportName": "Kontakte für Bücher"}'.encode(),
        '{"status": "PROCESSING", "exportName": "Kontakte für Bücher"}'.encode("utf-16"),
        '{"status": "PROCESSING", "exportName": "Kontakte für Bücher"}'.encode("utf-16-le"),
        '{"status": "PROCESSING", "exportName": "Kontakte für Bücher"}'.encode("utf-32-be"),
        '{"status": "PROCESSING", "exportName": "Kontakte für Bücher"}',
    ],
    ids=["utf-8", "utf-8 BOM", "utf-16 BOM", "utf-16-le", "utf-32-be", "str"],
)
def test_a_json_body_reads_alike_in_every_encoding_json_allows(body):
    # UTF-8 is decoded on the fast path; the others are left to json's own sniffing.
    assert decode_json(body, "status") == {"status": "PROCESSING", "exportName": "Kontakte für Bücher"}


@pytest.mark.parametrize("body", [b"<html>502 Bad Gateway</html>", b"\xff\xff{", b""])
def test_a_body_that_is_not_json_is_a_malformed_answer(body):
    with pytest.raises(HubSpotExportError, match="malformed status response: the body is not JSON"):
        decode_json(body, "status")
