"""The sandbox speaks HubSpot's wire format: checked with HubSpot's own SDK and with raw HTTP."""

from __future__ import annotations

import ast
import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
import zipfile

import pytest
import requests
from conftest import CONTACTS, SECRET_TOKEN

from airflow_provider_hubexport.sandbox import ExportPlan, Packaging, Sandbox
from airflow_provider_hubexport.sandbox.state import ExportBook, ExportLimitReached, ExportStatus

# The sandbox imports nothing of Airflow: only the Python version matters here.
pytestmark = pytest.mark.no_airflow

AUTH = {"Authorization": f"Bearer {SECRET_TOKEN}"}
# The header row HubSpot writes for CONTACTS' properties without exportInternalValuesOptions NAMES.
CONTACTS_LABELS = ["Email", "First Name", "Last Name", "Notes"]


def _start(sandbox, body=None, prefix="/crm/v3/exports/export", token=SECRET_TOKEN, at=None):
    if at is not None:  # seconds into the sandbox's FakeClock
        sandbox.clock.at(at)
    return requests.post(
        f"{sandbox.api_url}{prefix}/async",
        json=body or CONTACTS,
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )


def _status(sandbox, task_id, prefix="/crm/v3/exports/export"):
    return requests.get(f"{sandbox.api_url}{prefix}/async/tasks/{task_id}/status", headers=AUTH, timeout=10)


def _complete(sandbox, body=None, **plan):
    sandbox.plan_next(pending_polls=0, processing_polls=0, **plan)
    task_id = _start(sandbox, body).json()["id"]
    return task_id, _status(sandbox, task_id).json()


def test_official_sdk_parses_start_and_status(sandbox):
    from hubspot.crm.exports import ApiClient, Configuration, PublicExportsApi
    from hubspot.crm.exports.models import (
        ActionResponseWithSingleResultURI,
        PublicExportViewRequest,
        TaskLocator,
    )

    config = Configuration(host=sandbox.api_url)
    config.access_token = SECRET_TOKEN
    api = PublicExportsApi(ApiClient(config))
    sandbox.plan_next(pending_polls=1, processing_polls=0)
    request = PublicExportViewRequest(
        export_type="VIEW",
        format="CSV",
        export_name="sdk",
        object_properties=["email"],
        object_type="CONTACT",
        language="EN",
        export_internal_values_options=["NAMES"],
        override_associated_objects_per_definition_per_row_limit=False,
    )
    locator = api.start(public_export_request=request)
    assert isinstance(locator, TaskLocator) and locator.id.isdigit() and "status" in locator.links
    pending = api.get_status(task_id=int(locator.id))
    assert isinstance(pending, ActionResponseWithSingleResultURI) and pending.status == "PENDING"
    done = api.get_status(task_id=int(locator.id))
    assert done.status == "COMPLETE" and done.result.startswith(sandbox.files_url)
    assert done.num_errors == 0 and done.completed_at >= done.requested_at
    with pytest.raises(Exception) as err:  # the SDK raises its ApiException on HubSpot's 404 body
        api.get_status(task_id=1)
    assert getattr(err.value, "status", None) == 404


def test_start_returns_202_with_id_and_links(sandbox):
    for prefix in ("/crm/v3/exports/export", "/crm/exports/2026-03/export"):
        response = _start(sandbox, prefix=prefix)
        assert response.status_code == 202
        body = response.json()
        assert body["id"].isdigit() and body["links"]["status"].endswith(
            f"{prefix}/async/tasks/{body['id']}/status"
        )
        assert _status(sandbox, body["id"], prefix).json()["status"] in ("PENDING", "PROCESSING", "COMPLETE")


def test_time_based_lifecycle(sandbox):
    sandbox.plan_next(pending_seconds=100, processing_seconds=100)
    task_id = _start(sandbox).json()["id"]
    start = time.time()
    sandbox.clock = lambda: start
    assert _status(sandbox, task_id).json()["status"] == "PENDING"
    sandbox.clock = lambda: start + 150
    assert _status(sandbox, task_id).json()["status"] == "PROCESSING"
    sandbox.clock = lambda: start + 250
    assert _status(sandbox, task_id).json()["status"] == "COMPLETE"


def test_requests_without_the_token_get_hubspots_401(sandbox):
    response = _start(sandbox, token="nope")
    assert response.status_code == 401
    body = response.json()
    assert (
        body["category"] == "INVALID_AUTHENTICATION" and body["correlationId"] and body["status"] == "error"
    )
    assert requests.get(f"{sandbox.api_url}/crm/v3/exports/export/1", timeout=5).status_code == 401


def test_csv_content_is_deterministic_and_tricky(sandbox):
    props = ["email", "firstname", "lastname", "company", "notes"]
    _, status = _complete(sandbox, {**CONTACTS, "objectProperties": props}, row_count=200)
    first = requests.get(status["result"], timeout=10)
    assert first.status_code == 200 and 'filename="contacts-' in first.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(first.content.decode("utf-8"))))
    assert rows[0] == ["Email", "First Name", "Last Name", "Company Name", "Notes"] and len(rows) == 201
    text = first.content.decode("utf-8")
    assert any(ch in text for ch in "ëéøå李") and '""' in text and "\n" in "".join(r[4] for r in rows[1:])
    assert any("," in r[2] or "," in r[3] for r in rows[1:])
    assert [r[0] for r in rows[1:4]] == ["user1@example.com", "user2@example.com", "user3@example.com"]
    # A record's values are a function of (object type, id): another sandbox's export is the same.
    with Sandbox(token=SECRET_TOKEN) as other:
        _, again = _complete(other, {**CONTACTS, "objectProperties": props}, row_count=200)
        assert requests.get(again["result"], timeout=10).content == first.content


def test_big_csv_arrives_zipped_and_split(sandbox):
    sandbox.packaging = Packaging(zip_over_bytes=10_000, rows_per_file=300)
    _, status = _complete(sandbox, row_count=1000)
    response = requests.get(status["result"], timeout=10)
    assert response.headers["Content-Type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.content)) as zf:
        names = zf.namelist()
        assert len(names) == 4 and all(n.endswith(".csv") for n in names)
        assert zf.testzip() is None  # every member's CRC holds
        total = sum(len(list(csv.reader(io.StringIO(zf.read(n).decode())))) - 1 for n in names)
    assert total == 1000


def test_single_big_csv_zipped(sandbox):
    sandbox.packaging = Packaging(zip_over_bytes=5_000)
    _, status = _complete(sandbox, row_count=500)
    with zipfile.ZipFile(io.BytesIO(requests.get(status["result"], timeout=10).content)) as zf:
        assert len(zf.namelist()) == 1


def _row_source(population, properties, associated=(), genesis_ms=1_796_403_600_123):
    from airflow_provider_hubexport.sandbox.crm import Crm
    from airflow_provider_hubexport.sandbox.rows import ExportRows

    crm = Crm(genesis_ms=genesis_ms)
    body = {"exportType": "VIEW", "format": "CSV", "objectType": "CONTACT", "objectProperties": properties}
    crm.start_export("1", crm.read_query({**body, "associatedObjectType": list(associated)}), population)
    return ExportRows(crm.selection("1")).source, crm


@pytest.mark.no_airflow
@pytest.mark.parametrize("start,count", [(1, 2500), (999, 2502), (1000, 1000), (123_456, 3001)])
@pytest.mark.parametrize("population", [3_000_000_000, 50_000_000, 2_000_000, 200_000])
def test_rows_rendered_a_block_at_a_time_are_the_rows(start, count, population):
    # The fast path (a block's fragments with its numbers and seconds put in) against the row-by-row
    # definition, across block edges and past the first block, for timelines whose blocks span one
    # second (3 billion records share a time), a few seconds, and many.
    from airflow_provider_hubexport.sandbox.rows import cell

    props = [
        "hs_object_id", "email", "firstname", "lastname", "company", "notes", "createdate",
        "lastmodifieddate", "lifecyclestage", "amount", "phone",
    ]  # fmt: skip
    source, crm = _row_source(population, props, ["COMPANY", "DEAL"])
    text = b"".join(source.csv_chunks(start, count)).decode()
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows == [source.row(i) for i in range(start, start + count)]
    assert [r[0] for r in rows] == [str(i) for i in range(start, start + count)]  # the ids, in order
    # ... and a row is the record's values as an export shows them.
    generated = crm.selection("1").generated
    for i in (start, start + count - 1):
        values = [cell(p, generated.raw(p, i), False) for p in crm.selection("1").query.columns]
        assert source.row(i)[: len(props)] == values
    timeline = generated.timeline
    assert source.row(start)[7] == f"{_iso(timeline.at(start))}"  # lastmodifieddate
    assert source.row(start)[6] == f"{_iso(timeline.at(start) - 86_400_000)}"  # a day earlier


def _iso(ms):
    from datetime import datetime, timezone

    return (
        datetime.fromtimestamp(ms // 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        + f".{ms % 1000:03d}Z"
    )


@pytest.mark.no_airflow
def test_rows_without_numbered_cells_keep_a_percent_sign():
    source, _ = _row_source(3000, ["firstname", "notes"])
    source.plans[1] = ["100% %d %s" if j % 2 else "" for j in range(1000)]  # a "%" in a value
    text = b"".join(source.csv_chunks(1, 2500)).decode()
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows == [source.row(i) for i in range(1, 2501)] and rows[0][1] == "100% %d %s"
    source, _ = _row_source(3000, ["email", "notes"])
    source.plans[1] = ["100% %d %s" if j % 2 else "" for j in range(1000)]  # and beside a numbered cell
    text = b"".join(source.csv_chunks(1, 2500)).decode()
    assert list(csv.reader(io.StringIO(text, newline=""))) == [source.row(i) for i in range(1, 2501)]


def test_csv_just_over_the_zip_threshold_is_zipped_from_its_file(sandbox):
    # Near the threshold the sandbox writes the CSV first and zips it only if it is over: the
    # archive holds the same CSV a small export would have served.
    _, plain = _complete(sandbox, row_count=400)
    csv_bytes = requests.get(plain["result"], timeout=10).content
    sandbox.packaging = Packaging(zip_over_bytes=int(len(csv_bytes) * 0.7))
    _, status = _complete(sandbox, row_count=400)
    with zipfile.ZipFile(io.BytesIO(requests.get(status["result"], timeout=10).content)) as zf:
        assert zf.testzip() is None
        (name,) = zf.namelist()
        rows = list(csv.reader(io.StringIO(zf.read(name).decode(), newline="")))
    assert len(rows) == 401 and rows[0] == CONTACTS_LABELS


def test_xlsx_and_xls(sandbox):
    import openpyxl
    import xlrd

    _, status = _complete(sandbox, {**CONTACTS, "format": "XLSX"}, row_count=30)
    book = openpyxl.load_workbook(io.BytesIO(requests.get(status["result"], timeout=10).content))
    rows = list(book.active.iter_rows(values_only=True))
    assert list(rows[0]) == CONTACTS_LABELS and len(rows) == 31
    _, status = _complete(sandbox, {**CONTACTS, "format": "XLS"}, row_count=30)
    sheet = xlrd.open_workbook(
        file_contents=requests.get(status["result"], timeout=10).content
    ).sheet_by_index(0)
    assert sheet.nrows == 31 and sheet.row_values(0) == CONTACTS_LABELS


def test_xls_split_at_row_limit(sandbox):
    sandbox.packaging = Packaging(rows_per_xls_file=10)
    _, status = _complete(sandbox, {**CONTACTS, "format": "XLS"}, row_count=25)
    with zipfile.ZipFile(io.BytesIO(requests.get(status["result"], timeout=10).content)) as zf:
        assert sorted(n.rsplit(".", 1)[1] for n in zf.namelist()) == ["xls", "xls", "xls"]


def test_signed_urls_expire_and_status_hands_out_a_fresh_one(sandbox):
    task_id, status = _complete(sandbox, url_ttl=60)
    url = status["result"]
    assert requests.get(url, timeout=10).status_code == 200
    assert requests.get(url.replace("Signature=", "Signature=0"), timeout=10).status_code == 403
    now = time.time()
    sandbox.clock = lambda: now + 120
    expired = requests.get(url, timeout=10)
    assert expired.status_code == 403 and "expired" in expired.text
    fresh = _status(sandbox, task_id).json()["result"]
    assert fresh != url and requests.get(fresh, timeout=10).status_code == 200


def test_file_host_is_separate_and_needs_no_token(sandbox):
    _, status = _complete(sandbox)
    assert status["result"].startswith(sandbox.files_url) and sandbox.files_url != sandbox.api_url
    assert requests.get(status["result"], timeout=10).status_code == 200
    assert all("Authorization" not in r.headers for r in sandbox.file_requests)


def test_download_cut_short(sandbox):
    _, status = _complete(sandbox, row_count=5000, cut_downloads=1)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(status["result"], timeout=10).content  # noqa: B018
    assert len(requests.get(status["result"], timeout=10).content) == os.path.getsize(
        sandbox.served_file(status["result"].split("/")[-2])
    )


def test_canceled_export_has_errors(sandbox):
    _, status = _complete(
        sandbox, cancel=True, errors=[{"message": "Too many rows", "category": "VALIDATION_ERROR"}]
    )
    assert status["status"] == "CANCELED" and status["numErrors"] == 1 and "result" not in status
    assert status["errors"][0]["message"] == "Too many rows"


def test_missing_scope_body(sandbox):
    sandbox.add_token("narrow", scopes=("crm.objects.contacts.read",))
    body = _start(sandbox, token="narrow").json()
    assert body["category"] == "MISSING_SCOPES"
    assert body["errors"][0]["context"]["requiredGranularScopes"] == ["crm.export"]


def test_rate_limit_budget(sandbox):
    sandbox.rate_limit = (2, 5.0)
    codes = [_status(sandbox, 1).status_code for _ in range(3)]
    assert codes == [404, 404, 429]
    limited = _status(sandbox, 1)
    assert limited.headers["X-HubSpot-RateLimit-Max"] == "2" and float(limited.headers["Retry-After"]) > 0
    assert limited.json()["errorType"] == "RATE_LIMIT"


class FakeClock:
    """The sandbox's clock, moved by hand."""

    def __init__(self, now: float = 1_780_000_000.0) -> None:
        self.start = self.now = now

    def __call__(self) -> float:
        return self.now

    def at(self, offset: float) -> None:
        self.now = self.start + offset


def _state(sandbox, task_id, at=None):
    if at is not None:
        sandbox.clock.at(at)
    return _status(sandbox, task_id).json()["status"]


def test_daily_export_limit(sandbox):
    assert sandbox.export_limit is None and not sandbox.one_at_a_time  # off unless a test asks
    sandbox.daily_export_limit = 2  # the older spelling of (2, 86400)
    assert sandbox.export_limit == (2, 86400.0) and sandbox.daily_export_limit == 2
    assert [_start(sandbox).status_code for _ in range(3)] == [202, 202, 429]
    sandbox.export_limit = (2, 60)
    assert sandbox.daily_export_limit is None
    with pytest.raises(ValueError):
        sandbox.export_limit = (2, 0)
    with pytest.raises(ValueError):
        Sandbox(export_limit=(-1, 60))


def test_export_limit_is_a_rolling_window_that_counts_accepted_starts_only(sandbox):
    clock = sandbox.clock = FakeClock()
    sandbox.export_limit = (2, 60)
    codes = {}
    for offset in (0, 10, 20, 59, 60, 65, 70, 125, 129, 130):
        codes[offset] = _start(sandbox, at=offset).status_code
    # Refused at 20 and 59; at 60 the start at 0 has left the window. Had the refusals counted,
    # the one at 59 would still fill it at 60 and 65.
    assert codes == {
        **{0: 202, 10: 202, 20: 429, 59: 429, 60: 202},
        **{65: 429, 70: 202, 125: 202, 129: 429, 130: 202},
    }
    assert sandbox.export_starts() == [clock.start + t for t in (0, 10, 60, 70, 125, 130)]
    assert sandbox.refused_starts() == [clock.start + t for t in (20, 59, 65, 129)]
    assert len(sandbox.exports) == 6 and len(sandbox.api_requests("/async", method="POST")) == 10
    assert sandbox.most_starts_in_window() == 2 and sandbox.most_starts_in_window(120) == 4


def test_export_limit_answer_is_hubspots_daily_limit_to_the_provider(sandbox):
    # The provider's own error mapping (it imports Airflow's exception base; the mapping itself
    # does not vary with Airflow's version).
    from airflow_provider_hubexport.errors import error_from_response

    sandbox.export_limit = (1, 60)
    assert _start(sandbox).status_code == 202
    refused = _start(sandbox)
    assert refused.status_code == 429 and "Retry-After" not in refused.headers  # as HubSpot
    body = refused.json()
    assert body["category"] == "RATE_LIMITS" and body["subCategory"] == "ExportLimitError.DAILY_EXPORT_LIMIT"
    assert body["message"] == "You have reached the limit of 1 exports in a rolling 60 second period."
    err = error_from_response(429, dict(refused.headers), refused.content, "start export")
    assert "daily export limit" in str(err) and not err.retryable and err.retry_after is None
    assert err.sub_category == "ExportLimitError.DAILY_EXPORT_LIMIT"
    sandbox.daily_export_limit = 1
    day = _start(sandbox)
    assert day.json()["message"].endswith("exports in a rolling 24 hour period.")
    assert "daily export limit" in str(error_from_response(429, {}, day.content, "start export"))


def test_one_at_a_time_with_timed_plans(sandbox):
    clock = sandbox.clock = FakeClock()
    sandbox.one_at_a_time = True
    sandbox.plan_next(pending_seconds=10, processing_seconds=20)
    first = _start(sandbox, at=0).json()["id"]
    sandbox.plan_next(pending_seconds=10, processing_seconds=20, cancel=True)
    second = _start(sandbox, at=5).json()["id"]
    sandbox.plan_next(pending_seconds=0, processing_seconds=5)
    third = _start(sandbox, at=6).json()["id"]

    def states(offset):
        clock.at(offset)
        return [_state(sandbox, task_id) for task_id in (first, second, third)]

    assert states(15) == ["PROCESSING", "PENDING", "PENDING"]
    export = requests.get(f"{sandbox.api_url}/crm/v3/exports/export/{second}", headers=AUTH, timeout=10)
    assert export.json()["exportState"] == "ENQUEUED"
    assert states(29) == ["PROCESSING", "PENDING", "PENDING"]
    # The second's pending time counts from 30, when the first completed; a CANCELED export frees
    # the line too.
    assert states(30) == ["COMPLETE", "PENDING", "PENDING"]
    assert states(40) == ["COMPLETE", "PROCESSING", "PENDING"]
    assert states(60) == ["COMPLETE", "CANCELED", "PROCESSING"]
    assert states(65) == ["COMPLETE", "CANCELED", "COMPLETE"]
    history = sandbox.export_history()
    times = [(r.started, r.processing_at, r.completed_at) for r in history]
    assert times == [tuple(clock.start + t for t in span) for span in ((0, 10, 30), (5, 40, 60), (6, 60, 65))]
    assert [r.status for r in history] == ["COMPLETE", "CANCELED", "COMPLETE"]
    assert sandbox.most_processing_at_once() == 1
    done = _status(sandbox, third).json()
    assert done["startedAt"] < done["completedAt"] and "result" in done


def test_one_at_a_time_when_the_clock_jumps_past_several_exports(sandbox):
    clock = sandbox.clock = FakeClock()
    sandbox.one_at_a_time = True
    sandbox.plan = ExportPlan(pending_seconds=1, processing_seconds=2)
    ids = [_start(sandbox, at=0).json()["id"] for _ in range(3)]
    assert _state(sandbox, ids[2], at=7.5) == "PROCESSING"  # released at 6, processing at 7
    assert [(r.processing_at, r.completed_at) for r in sandbox.export_history()] == [
        (clock.start + 1, clock.start + 3),
        (clock.start + 4, clock.start + 6),
        (clock.start + 7, None),
    ]


def test_one_at_a_time_with_poll_counted_plans(sandbox):
    sandbox.one_at_a_time = True
    ids = []
    for _ in range(2):
        sandbox.plan_next(pending_polls=1, processing_polls=2)
        ids.append(_start(sandbox).json()["id"])
    first, second = ids
    # The second's polls while the first has not completed do not count.
    assert [_state(sandbox, second) for _ in range(3)] == ["PENDING"] * 3
    assert [_state(sandbox, first) for _ in range(4)] == ["PENDING", "PROCESSING", "PROCESSING", "COMPLETE"]
    assert [_state(sandbox, second) for _ in range(4)] == ["PENDING", "PROCESSING", "PROCESSING", "COMPLETE"]
    assert sandbox.exports[second].polls == 7
    history = sandbox.export_history()
    assert history[0].completed_at <= history[1].processing_at and sandbox.most_processing_at_once() == 1


def test_one_at_a_time_mixes_timed_and_poll_counted_exports(sandbox):
    sandbox.clock = FakeClock()
    sandbox.one_at_a_time = True
    sandbox.plan_next(pending_seconds=0, processing_seconds=10)
    timed = _start(sandbox, at=0).json()["id"]
    sandbox.plan_next(pending_polls=0, processing_polls=1)
    polled = _start(sandbox).json()["id"]
    assert [_state(sandbox, polled, at=5) for _ in range(3)] == ["PENDING"] * 3
    assert _state(sandbox, polled, at=10) == "PROCESSING"  # its first counted poll
    assert _state(sandbox, timed) == "COMPLETE" and _state(sandbox, polled) == "COMPLETE"
    # And a timed export waits for a poll-counted one, which finishes only when polled.
    sandbox.plan_next(pending_polls=0, processing_polls=1)
    polled = _start(sandbox, at=20).json()["id"]
    sandbox.plan_next(pending_seconds=0, processing_seconds=10)
    timed = _start(sandbox).json()["id"]
    assert _state(sandbox, timed, at=100) == "PENDING"
    assert [_state(sandbox, polled) for _ in range(2)] == ["PROCESSING", "COMPLETE"]
    assert _state(sandbox, timed, at=109) == "PROCESSING"  # released at 100
    assert _state(sandbox, timed, at=110) == "COMPLETE"
    assert sandbox.most_processing_at_once() == 1


def test_side_by_side_unless_one_at_a_time(sandbox):
    sandbox.clock = FakeClock()
    ids = [_start(sandbox, at=0).json()["id"] for _ in range(3)]  # 1 s pending, 2 processing
    assert [_state(sandbox, i, at=1.5) for i in ids] == ["PROCESSING"] * 3
    assert sandbox.most_processing_at_once() == 3
    # Switched on while they run: a new export waits for all three.
    sandbox.one_at_a_time = True
    late = _start(sandbox).json()["id"]
    assert _state(sandbox, late, at=2.9) == "PENDING"
    assert _state(sandbox, late, at=3.9) == "PENDING"  # released at 3, 1 s pending
    assert _state(sandbox, late, at=4) == "PROCESSING"
    assert sandbox.most_processing_at_once() == 3


def test_record_summaries():
    from airflow_provider_hubexport.sandbox.state import most_at_once, most_in_window

    assert most_in_window([], 60) == 0
    assert most_in_window([0, 59.9, 60, 119.9, 120], 60) == 2  # t and t + 60 are in different windows
    assert most_in_window([5, 0, 1, 100], 60) == 3
    assert most_at_once([]) == 0
    assert most_at_once([(0, 10), (10, 20), (20, None)]) == 1  # touching spans do not overlap
    assert most_at_once([(0, 10), (5, 20), (6, None), (30, 30)]) == 3


def test_command_line_limits():
    from airflow_provider_hubexport.sandbox.__main__ import parse_args

    args = parse_args(["--export-limit", "2/60", "--one-at-a-time"])
    assert args.export_limit == (2, 60.0) and args.one_at_a_time
    args = parse_args([])  # what `make sandbox` and `make airflow` run: HubSpot's limits
    assert args.export_limit == (30, 86400.0) and args.one_at_a_time
    args = parse_args(["--export-limit", "none", "--no-one-at-a-time"])
    assert args.export_limit is None and not args.one_at_a_time
    for bad in ("3", "x/60", "2/0", "-1/60"):
        with pytest.raises(SystemExit):
            parse_args(["--export-limit", bad])


@pytest.mark.parametrize(
    "kind,check",
    [
        ("non_json", lambda r: r.status_code == 200 and r.headers["Content-Type"].startswith("text/html")),
        ("missing_fields", lambda r: r.json() == {"links": {}}),
        ("unknown_status", lambda r: r.json()["status"] == "EXPLODED"),
    ],
)
def test_faults_once_then_normal(sandbox, kind, check):
    task_id = _start(sandbox).json()["id"]
    sandbox.inject(kind, path="/status")
    assert check(_status(sandbox, task_id))
    assert _status(sandbox, task_id).json()["status"] in ("PENDING", "PROCESSING", "COMPLETE")


def test_reset_fault(sandbox):
    sandbox.inject("reset", path="/status")
    with pytest.raises(requests.ConnectionError):
        _status(sandbox, 1)
    assert _status(sandbox, 1).status_code == 404


def test_bad_request_body_gets_400(sandbox):
    response = _start(sandbox, {"exportType": "VIEW"})
    assert response.status_code == 400 and response.json()["category"] == "VALIDATION_ERROR"


def test_command_line_prints_connection_and_honours_port_and_token(tmp_path):
    ready = tmp_path / "ready"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_provider_hubexport.sandbox",
            "--port",
            "0",
            "--token",
            "cli-token",
            "--ready-file",
            str(ready),
            "--pending-seconds",
            "0",
            "--processing-seconds",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), "the sandbox did not start"
        url = ready.read_text()
        ok = requests.post(
            f"{url}/crm/v3/exports/export/async",
            json=CONTACTS,
            headers={"Authorization": "Bearer cli-token"},
            timeout=10,
        )
        assert ok.status_code == 202
        assert (
            requests.post(
                f"{url}/crm/v3/exports/export/async", json=CONTACTS, headers=AUTH, timeout=10
            ).status_code
            == 401
        )
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    line = next(x for x in out.splitlines() if x.startswith("export AIRFLOW_CONN_HUBSPOT_DEFAULT="))
    conn = json.loads(line.split("=", 1)[1].strip("'"))
    assert conn == {"conn_type": "hubspot", "host": url, "password": "cli-token"}


def test_cli_refuses_non_loopback_host():
    out = subprocess.run(
        [sys.executable, "-m", "airflow_provider_hubexport.sandbox", "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "loopback" in out.stderr


def test_sandbox_imports_nothing_of_the_client_side():
    code = (
        "import sys, airflow_provider_hubexport.sandbox.__main__;"
        "bad = [m for m in sys.modules if m.startswith('airflow_provider_hubexport.') and "
        "not m.startswith('airflow_provider_hubexport.sandbox')]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr


SANDBOX_DIR = os.path.join(os.path.dirname(__file__), os.pardir, "airflow_provider_hubexport", "sandbox")
FRONT_DOORS = ("server.py", "__init__.py", "__main__.py")  # the modules that may name ``Sandbox``


def _reaches_past_a_door(node, module_name: str) -> bool:
    if isinstance(node, (ast.Import, ast.ImportFrom)):  # TYPE_CHECKING imports included
        if module_name in FRONT_DOORS:
            return False
        module = (getattr(node, "module", None) or "").rsplit(".", 1)[-1]
        names = {alias.name.rsplit(".", 1)[-1] for alias in node.names}
        return module == "server" or bool(names & {"server", "Sandbox"})
    if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.endswith("__"):
        return not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
    return False


def test_sandbox_rooms_use_public_interfaces_only():
    # The rooms (api, files, faults, ...) get the export book and their other collaborators passed
    # in and use their public methods: only the front doors import ``server`` or name ``Sandbox``,
    # and no module reads another object's ``_private`` attribute (``x._y``, x not self or cls).
    found = []
    for name in sorted(n for n in os.listdir(SANDBOX_DIR) if n.endswith(".py")):
        with open(os.path.join(SANDBOX_DIR, name)) as fh:
            tree = ast.parse(fh.read(), name)
        found += [
            f"{name}:{n.lineno}: {ast.unparse(n)}" for n in ast.walk(tree) if _reaches_past_a_door(n, name)
        ]
    assert found == []


def test_export_book_starts_finds_polls_and_serves_exports_without_http():
    clock = FakeClock()
    plan = ExportPlan(pending_seconds=1, processing_seconds=2, url_ttl=60, expired_urls=1, cut_downloads=1)
    book = ExportBook(plan, clock=clock, export_limit=(2, 60))
    first = book.start(dict(CONTACTS))
    assert book.get(first.id) is first and book.get("1") is None and first.api_version == "v3"
    clock.at(1.5)
    assert book.poll(first) == ExportStatus("PROCESSING", clock.now, clock.start + 1, None)
    assert first.polls == 1
    book.plan_next(pending_polls=0, processing_polls=0)
    second = book.start(dict(CONTACTS), "2026-03")
    assert second.plan.poll_based and not book.plan.poll_based  # the plan for the next start only
    with pytest.raises(ExportLimitReached) as refused:
        book.start(dict(CONTACTS))
    assert refused.value.limit == (2, 60.0) and list(book.exports) == [first.id, second.id]
    assert book.accepted_starts() == [clock.start, clock.start + 1.5]
    assert book.refused_starts() == [clock.start + 1.5]
    assert book.peek(second).status == "PENDING" and second.polls == 0  # a peek is not a poll
    assert book.poll(second).status == "COMPLETE" and second.completed_at == clock.now
    # Its file: the first URL handed out has already expired, the first download is cut short.
    book.attach_file(second, "/nowhere/contacts.csv")
    assert second.file_path == "/nowhere/contacts.csv"
    assert [book.url_expiry(second), book.url_expiry(second)] == [0, int(clock.now + 60)]
    assert [book.count_download(second), book.count_download(second)] == [True, False]
    assert second.downloads == 2 and first.plan.expired_urls == 1  # each export's own plan
    clock.at(3)
    assert [(r.processing_at, r.completed_at, r.status) for r in book.history()] == [
        (clock.start + 1, clock.start + 3, "COMPLETE"),
        (clock.start + 1.5, clock.start + 1.5, "COMPLETE"),
    ]
    with pytest.raises(ValueError):
        book.export_limit = (1, 0)


def test_sandbox_settings_are_its_export_books():
    sandbox = Sandbox(export_limit=(3, 60))
    try:
        book = sandbox.book
        assert book.export_limit == (3, 60.0) and sandbox.exports is book.exports
        clock = sandbox.clock = FakeClock()
        sandbox.plan = ExportPlan(row_count=3)
        sandbox.one_at_a_time = True
        sandbox.daily_export_limit = 5
        assert book.clock is clock and book.plan.row_count == 3 and book.one_at_a_time
        assert book.export_limit == (5, 86400.0) == sandbox.export_limit
        assert sandbox.plan_next(row_count=7).row_count == 7
        export = book.start(dict(CONTACTS))
        assert export.plan.row_count == 7 and sandbox.exports == {export.id: export}
        assert sandbox.export_starts() == [clock.now] and sandbox.export_history()[0].status == "PENDING"
        with pytest.raises(KeyError):
            sandbox.served_file(export.id)  # no file until a status request saw it complete
    finally:
        sandbox.stop()
