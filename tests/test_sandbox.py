"""The sandbox speaks HubSpot's wire format: checked with HubSpot's own SDK and with raw HTTP."""

from __future__ import annotations

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

from airflow_provider_hubexport.sandbox import Packaging, Sandbox

# The sandbox imports nothing of Airflow: only the Python version matters here.
pytestmark = pytest.mark.no_airflow

AUTH = {"Authorization": f"Bearer {SECRET_TOKEN}"}


def _start(sandbox, body=None, prefix="/crm/v3/exports/export", token=SECRET_TOKEN):
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
    assert rows[0] == props and len(rows) == 201
    text = first.content.decode("utf-8")
    assert any(ch in text for ch in "ëéøå李") and '""' in text and "\n" in "".join(r[4] for r in rows[1:])
    assert any("," in r[2] or "," in r[3] for r in rows[1:])
    # The same export id gives the same bytes: a new sandbox issues the same first id.
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
        total = sum(len(list(csv.reader(io.StringIO(zf.read(n).decode())))) - 1 for n in names)
    assert total == 1000


def test_single_big_csv_zipped(sandbox):
    sandbox.packaging = Packaging(zip_over_bytes=5_000)
    _, status = _complete(sandbox, row_count=500)
    with zipfile.ZipFile(io.BytesIO(requests.get(status["result"], timeout=10).content)) as zf:
        assert len(zf.namelist()) == 1


def test_xlsx_and_xls(sandbox):
    import openpyxl
    import xlrd

    _, status = _complete(sandbox, {**CONTACTS, "format": "XLSX"}, row_count=30)
    book = openpyxl.load_workbook(io.BytesIO(requests.get(status["result"], timeout=10).content))
    rows = list(book.active.iter_rows(values_only=True))
    assert list(rows[0]) == CONTACTS["objectProperties"] and len(rows) == 31
    _, status = _complete(sandbox, {**CONTACTS, "format": "XLS"}, row_count=30)
    sheet = xlrd.open_workbook(
        file_contents=requests.get(status["result"], timeout=10).content
    ).sheet_by_index(0)
    assert sheet.nrows == 31 and sheet.row_values(0) == CONTACTS["objectProperties"]


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


def test_daily_export_limit(sandbox):
    sandbox.daily_export_limit = 2
    assert [_start(sandbox).status_code for _ in range(3)] == [202, 202, 429]


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
