"""HubSpotHook.download_export against the sandbox's file host: formats, destinations, faults."""

from __future__ import annotations

import hashlib
import io
import os
import re
import subprocess
import sys
import textwrap
import zipfile

import pytest
from conftest import CONTACTS, SECRET_TOKEN

from airflow_provider_hubexport.exceptions import HubSpotExportError, HubSpotExportRequestError
from airflow_provider_hubexport.sandbox import Packaging


def _sha(path):
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def _listing(directory):
    return sorted(os.listdir(directory))


@pytest.mark.parametrize("fmt,ext", [("CSV", ".csv"), ("XLSX", ".xlsx"), ("XLS", ".xls")])
def test_formats_land_byte_identical(sandbox, hook, complete, tmp_path, fmt, ext):
    task_id = complete({**CONTACTS, "format": fmt}, row_count=300)
    (landed,) = hook.download_export(task_id, str(tmp_path / "out"), checksum="sha256")
    served = sandbox.served_file(task_id)
    assert landed["path"] == str(tmp_path / "out" / os.path.basename(served)) and landed["path"].endswith(ext)
    assert landed["size"] == os.path.getsize(served) and landed["sha256"] == _sha(served) == _sha(
        landed["path"]
    )
    assert _listing(tmp_path / "out") == [os.path.basename(served)]  # nothing else left behind


def test_file_is_asked_for_as_stored(sandbox, hook, complete, tmp_path):
    # No content coding: the bytes counted against Content-Length are the file's own.
    hook.download_export(complete(), str(tmp_path / "out"))
    assert [r.headers.get("Accept-Encoding") for r in sandbox.file_requests] == ["identity"]


def test_file_sent_gzip_encoded_anyway_lands_decoded(sandbox, hook, complete, tmp_path):
    # A host that encodes the file whatever we asked (S3, for an object stored gzipped): the file
    # lands as it was exported, and the length check counts the bytes as sent.
    task_id = complete(row_count=3000, content_encoding="gzip")
    (landed,) = hook.download_export(task_id, str(tmp_path / "out"), checksum="sha256")
    served = sandbox.served_file(task_id)
    with open(served, "rb") as fh:
        original = fh.read()
    assert open(landed["path"], "rb").read() == original and landed["size"] == len(original)
    assert landed["sha256"] == hashlib.sha256(original).hexdigest()


def test_multi_file_zip_with_and_without_unzip(sandbox, hook, complete, tmp_path):
    sandbox.packaging = Packaging(zip_over_bytes=10_000, rows_per_file=400)
    task_id = complete(row_count=1000)
    served = sandbox.served_file(task_id)
    (as_zip,) = hook.download_export(task_id, tmp_path / "zipped", checksum="sha256")
    assert as_zip["sha256"] == _sha(served) and as_zip["path"].endswith(".zip")
    extracted = hook.download_export(task_id, tmp_path / "unzipped", unzip=True, checksum="sha256")
    with zipfile.ZipFile(served) as zf:
        expected = {name: hashlib.sha256(zf.read(name)).hexdigest() for name in zf.namelist()}
    assert {os.path.basename(f["path"]): f["sha256"] for f in extracted} == expected
    assert len(expected) == 3 and _listing(tmp_path / "unzipped") == sorted(expected)


def test_file_uri_and_object_storage_destinations(sandbox, hook, complete, tmp_path):
    from airflow.sdk import ObjectStoragePath

    task_id = complete()
    served = sandbox.served_file(task_id)
    (via_uri,) = hook.download_export(task_id, f"file://{tmp_path}/uri")
    (via_path,) = hook.download_export(task_id, ObjectStoragePath(f"file://{tmp_path}/osp"))
    assert _sha(via_uri["path"]) == _sha(via_path["path"].removeprefix("file://")) == _sha(served)


def test_remote_store_gets_the_file_put_whole(sandbox, hook, complete):
    from airflow.sdk import ObjectStoragePath
    from airflow.sdk.io import attach
    from fsspec.implementations.memory import MemoryFileSystem

    memory = MemoryFileSystem()
    attach("memory", fs=memory)
    task_id = complete(row_count=2000)
    (landed,) = hook.download_export(task_id, "memory://bucket/hubspot/2026-11-28", checksum="sha256")
    # universal-pathlib < 0.3 (Airflow 3.0, 3.1) renders the memory filesystem's root as "memory:///".
    assert landed["path"].replace("memory:///", "memory://").startswith("memory://bucket/hubspot/2026-11-28/")
    data = ObjectStoragePath(landed["path"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == _sha(sandbox.served_file(task_id)) == landed["sha256"]
    assert [p for p in memory.find("/bucket") if ".part" in p or ".hubspot-" in p] == []


def test_expired_url_gets_a_fresh_one(sandbox, hook, complete, tmp_path):
    task_id = complete(expired_urls=2)  # the fixture's URL and the first download's have expired
    (landed,) = hook.download_export(task_id, tmp_path)
    assert _sha(landed["path"]) == _sha(sandbox.served_file(task_id))
    assert len(sandbox.api_requests(f"/tasks/{task_id}/status")) == 3  # the fixture's, then one per try
    assert len(sandbox.file_requests) == 2


def test_cut_short_download_is_retried_and_never_left_partial(sandbox, hook, complete, tmp_path):
    task_id = complete(row_count=20_000, cut_downloads=2)
    (landed,) = hook.download_export(task_id, tmp_path)
    assert _sha(landed["path"]) == _sha(sandbox.served_file(task_id))
    assert len(sandbox.file_requests) == 3 and _listing(tmp_path) == [os.path.basename(landed["path"])]


def test_download_that_keeps_failing_leaves_nothing(sandbox, hook, complete, tmp_path):
    task_id = complete(row_count=20_000, cut_downloads=10)
    with pytest.raises(HubSpotExportError, match="cut short.*Gave up after 4 download attempt"):
        hook.download_export(task_id, tmp_path / "out")
    assert _listing(tmp_path / "out") == []


def test_corrupt_zip_is_not_counted_as_done(sandbox, hook, complete, tmp_path):
    sandbox.packaging = Packaging(zip_over_bytes=1000)
    task_id = complete(row_count=500, corrupt="directory")
    with pytest.raises(HubSpotExportError, match="corrupt"):
        hook.download_export(task_id, tmp_path / "out")
    assert _listing(tmp_path / "out") == []
    # Damage inside a member's data shows when it is inflated: on extraction.
    task_id = complete(row_count=500, corrupt="data")
    with pytest.raises(HubSpotExportError, match="ZIP is corrupt: member .*CRC"):
        hook.download_export(task_id, tmp_path / "unzipped", unzip=True)
    assert _listing(tmp_path / "unzipped") == []


def test_unsafe_zip_members_refused_with_nothing_written(sandbox, hook, complete, tmp_path):
    task_id = complete(unsafe_zip=True)
    target = tmp_path / "deep" / "out"
    with pytest.raises(HubSpotExportError) as err:
        hook.download_export(task_id, target, unzip=True)
    assert "'../escaped.csv'" in str(err.value) and "'/tmp/absolute.csv'" in str(err.value)
    assert _listing(target) == [] and not (tmp_path / "deep" / "escaped.csv").exists()
    assert not os.path.exists("/tmp/absolute.csv")


def test_file_host_never_sees_the_token(sandbox, hook, complete, tmp_path):
    task_id = complete(expired_urls=2, cut_downloads=1)
    hook.download_export(task_id, tmp_path)
    assert len(sandbox.file_requests) == 3
    for request in sandbox.file_requests:
        assert "Authorization" not in request.headers and SECRET_TOKEN not in repr(request.headers)


def test_not_complete_or_canceled_is_refused(sandbox, hook, tmp_path):
    sandbox.plan_next(pending_polls=5)
    pending = hook.start_export(CONTACTS)
    with pytest.raises(HubSpotExportError, match="is PENDING, not COMPLETE"):
        hook.download_export(pending, tmp_path)
    sandbox.plan_next(pending_polls=0, processing_polls=0, cancel=True)
    canceled = hook.start_export(CONTACTS)
    with pytest.raises(HubSpotExportError, match="canceled"):
        hook.download_export(canceled, tmp_path)
    assert sandbox.file_requests == []


def test_overwrite_false_refuses_to_replace(sandbox, hook, complete, tmp_path):
    task_id = complete()
    hook.download_export(task_id, tmp_path)
    with pytest.raises(HubSpotExportRequestError, match="overwrite=False"):
        hook.download_export(task_id, tmp_path, overwrite=False)
    assert len(os.listdir(tmp_path)) == 1


def test_unwritable_destination_refused_before_download(sandbox, hook, complete):
    # /sys refuses new directories to everyone, root included (a chmod would not stop root).
    task_id = complete()
    with pytest.raises(HubSpotExportRequestError, match="cannot be created.*choose a writable directory"):
        hook.download_export(task_id, "/sys/hubspot-export-test")
    assert sandbox.file_requests == []


def test_destination_that_is_a_file_refused_before_download(sandbox, hook, complete, tmp_path):
    task_id = complete()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(HubSpotExportRequestError, match="destination"):
        hook.download_export(task_id, blocker)
    assert sandbox.file_requests == []


def test_plain_http_result_url_refused_off_loopback(sandbox, hook, complete, tmp_path, monkeypatch):
    from airflow_provider_hubexport.hooks import download

    with pytest.raises(HubSpotExportRequestError, match="plain http"):
        download.fetch(
            download.file_session(),
            "http://files.example.com/x.csv?sig=1",
            str(tmp_path / "x"),
            "1",
            timeout=(1, 1),
            log=hook.log,
        )


@pytest.mark.no_airflow  # requests' streaming and our hashing thread: no Airflow code on the path
@pytest.mark.repetition  # a measurement, on the main leg: streaming memory is not a Python-version matter
def test_memory_stays_flat_for_a_file_larger_than_the_budget(sandbox, connect, tmp_path):
    """Measured in a fresh process: peak RSS grows far less than the file is large."""
    from airflow_provider_hubexport.hooks.hubspot import HubSpotHook

    connect()
    sandbox.packaging = Packaging(zip_over_bytes=10**12, rows_per_file=10**9)  # one plain CSV
    sandbox.plan_next(pending_polls=0, processing_polls=0, row_count=1_500_000)
    task_id = HubSpotHook().start_export(
        {**CONTACTS, "objectProperties": ["email", "firstname", "hs_object_id", "notes"]}
    )
    HubSpotHook().get_export_status(task_id)  # the sandbox writes the file now, outside the measurement
    size = os.path.getsize(sandbox.served_file(task_id))
    code = textwrap.dedent(f"""
        from airflow_provider_hubexport.hooks.hubspot import HubSpotHook

        def kib(field):
            with open("/proc/self/status") as fh:
                return next(int(line.split()[1]) for line in fh if line.startswith(field))

        hook = HubSpotHook()
        hook.get_export_status({task_id!r})
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset the peak (VmHWM) to the current RSS
        before = kib("VmRSS:")
        hook.download_export({task_id!r}, {str(tmp_path)!r})
        print((kib("VmHWM:") - before) * 1024)
    """)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=os.environ.copy()
    )
    assert out.returncode == 0, out.stderr[-3000:]
    growth = int(out.stdout.strip().splitlines()[-1])
    budget = 16 * 1024 * 1024
    print(
        f"\ndownloaded {size / 1e6:.0f} MB; peak RSS grew {growth / 1e6:.1f} MB (budget {budget / 1e6:.0f} MB)"
    )
    assert size > 4 * budget  # the file is several times the budget ...
    assert growth < budget  # ... and memory stayed within it


def test_fixed_filename_makes_reruns_replace(sandbox, hook, tmp_path):
    sandbox.packaging = Packaging(zip_over_bytes=10_000, rows_per_file=400)
    for _ in range(2):  # two exports of the same data: same names, no pile-up
        sandbox.plan_next(pending_polls=0, processing_polls=0, row_count=1000)
        task_id = hook.start_export(CONTACTS)
        landed = hook.download_export(task_id, tmp_path / "z", unzip=True, filename="contacts.csv")
        (single,) = hook.download_export(task_id, tmp_path / "s", filename="contacts")
    assert [os.path.basename(f["path"]) for f in landed] == [
        "contacts-1.csv",
        "contacts-2.csv",
        "contacts-3.csv",
    ]
    assert _listing(tmp_path / "z") == ["contacts-1.csv", "contacts-2.csv", "contacts-3.csv"]
    assert _listing(tmp_path / "s") == ["contacts.zip"] and single["path"].endswith("contacts.zip")


class _ShortResponse:
    """A 200 whose body is shorter than its Content-Length, delivered without a transport error
    (as when a proxy or a decoding layer gets the length wrong)."""

    status_code = 200
    headers = {"Content-Length": "100", "Content-Type": "text/csv"}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def __init__(self):
        self.raw = io.BytesIO(b"x" * 50)


class _ShortSession:
    def get(self, url, **kwargs):
        return _ShortResponse()


def _hash_threads():
    import threading

    return [t for t in threading.enumerate() if t.name == "hubspot-sha256" and t.is_alive()]


def _settle(count, seconds=5.0):
    import time

    deadline = time.monotonic() + seconds
    while len(_hash_threads()) > count and time.monotonic() < deadline:
        time.sleep(0.05)
    return len(_hash_threads())


def test_length_mismatch_ends_the_hashing_thread(hook, tmp_path):
    from airflow_provider_hubexport.hooks import download

    before = len(_hash_threads())
    for _ in range(3):
        with pytest.raises(HubSpotExportError, match="cut short: 50 of 100 bytes"):
            download.fetch(
                _ShortSession(),
                "http://127.0.0.1:1/hubspot-exports/1/x.csv?Expires=1&Signature=abc",
                str(tmp_path / "x"),
                "1",
                timeout=(1, 1),
                log=hook.log,
                checksum="sha256",
            )
    assert _settle(before) == before  # no thread left blocked on its queue


def test_failed_downloads_leave_no_hashing_thread(sandbox, hook, complete, tmp_path):
    before = len(_hash_threads())
    task_id = complete(row_count=20_000, cut_downloads=10)
    with pytest.raises(HubSpotExportError, match="cut short"):
        hook.download_export(task_id, tmp_path / "out", checksum="sha256")
    assert _settle(before) == before


def test_no_checksum_by_default_and_no_hashing(sandbox, hook, complete, tmp_path, monkeypatch, capsys):
    # The digest is opt-in: by default nothing is hashed (no thread, no hashlib object), the XCom
    # value says sha256 None and the log line gives no digest.
    import hashlib as real_hashlib

    from airflow_provider_hubexport import landing
    from airflow_provider_hubexport.hooks import download

    made = []

    class CountingHashlib:
        @staticmethod
        def sha256(*args):
            made.append(1)
            return real_hashlib.sha256(*args)

    monkeypatch.setattr(download, "hashlib", CountingHashlib)
    monkeypatch.setattr(landing, "hashlib", CountingHashlib)
    sandbox.packaging = Packaging(zip_over_bytes=10_000, rows_per_file=400)
    task_id = complete(row_count=1000)
    before = len(_hash_threads())
    capsys.readouterr()
    (as_zip,) = hook.download_export(task_id, tmp_path / "zipped")
    extracted = hook.download_export(task_id, tmp_path / "unzipped", unzip=True)
    out = capsys.readouterr()
    assert as_zip["sha256"] is None and [f["sha256"] for f in extracted] == [None] * 3
    assert _sha(as_zip["path"]) == _sha(sandbox.served_file(task_id))
    assert made == [] and len(_hash_threads()) == before
    landed_lines = [line for line in (out.out + out.err).splitlines() if "Landed " in line]
    assert len(landed_lines) == 4 and not any("sha256" in line for line in landed_lines)


@pytest.mark.parametrize("cpus", [1, 2])
def test_checksum_on_one_cpu_hashes_inline(sandbox, hook, complete, tmp_path, monkeypatch, cpus):
    # With one CPU a hashing thread would only take turns with the copy loop: the loop hashes.
    from airflow_provider_hubexport.hooks import download

    monkeypatch.setattr(download, "usable_cpus", lambda: cpus)
    made = []
    real = download.buffers_for

    def spy(checksum):
        made.append(real(checksum))
        return made[-1]

    monkeypatch.setattr(download, "buffers_for", spy)
    task_id = complete(row_count=20_000)
    (landed,) = hook.download_export(task_id, tmp_path, checksum="sha256")
    assert landed["sha256"] == _sha(sandbox.served_file(task_id)) == _sha(landed["path"])
    assert [type(b) for b in made] == [download._InlineHash if cpus == 1 else download._HashingBuffers]


@pytest.mark.parametrize(
    ("cpu_max", "v1", "expected"),
    [
        ("max 100000", None, None),  # cgroup v2, no quota
        ("150000 100000", None, 1.5),  # v2, limits.cpu: 1500m
        (None, ("-1", "100000"), None),  # v1, no quota
        (None, ("50000", "100000"), 0.5),  # v1, half a CPU
        (None, None, None),  # no cgroup files: no quota known
    ],
)
def test_cpu_quota_of_the_cgroup(tmp_path, monkeypatch, cpu_max, v1, expected):
    from airflow_provider_hubexport.hooks import download

    for name, text in (("cpu.max", cpu_max), ("quota", v1 and v1[0]), ("period", v1 and v1[1])):
        if text is not None:
            (tmp_path / name).write_text(text + "\n")
    monkeypatch.setattr(download, "CGROUP_CPU_MAX", str(tmp_path / "cpu.max"))
    monkeypatch.setattr(download, "CGROUP_V1_QUOTA", str(tmp_path / "quota"))
    monkeypatch.setattr(download, "CGROUP_V1_PERIOD", str(tmp_path / "period"))
    assert download.cgroup_cpu_quota() == expected
    monkeypatch.setattr(download.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert download.usable_cpus() == (4 if expected is None else max(1, -(-expected // 1)))


def test_checksum_with_unzip_hashes_what_lands_once(sandbox, hook, complete, tmp_path, monkeypatch):
    # Unzipping, the members are what lands and what is hashed: the ZIP itself is not hashed on the
    # way in; a file that is not a ZIP after all lands as it is, hashed from disk.
    from airflow_provider_hubexport.hooks import download

    asked = []
    real = download.buffers_for
    monkeypatch.setattr(download, "buffers_for", lambda checksum: asked.append(checksum) or real(checksum))
    sandbox.packaging = Packaging(zip_over_bytes=10_000, rows_per_file=400)
    zipped = complete(row_count=1000)
    members = hook.download_export(zipped, tmp_path / "members", unzip=True, checksum="sha256")
    assert [m["sha256"] for m in members] == [_sha(m["path"]) for m in members] and len(members) == 3
    sandbox.packaging = Packaging(zip_over_bytes=10**9)
    plain = complete(row_count=100)
    (csv_file,) = hook.download_export(plain, tmp_path / "plain", unzip=True, checksum="sha256")
    assert csv_file["path"].endswith(".csv") and csv_file["sha256"] == _sha(sandbox.served_file(plain))
    assert asked == [None, None]


def test_unknown_checksum_is_refused_before_any_request(sandbox, hook, complete, tmp_path):
    task_id = complete()
    before = len(sandbox.api_requests())
    with pytest.raises(
        HubSpotExportRequestError, match="checksum must be None or one of 'sha256'; got 'md5'"
    ):
        hook.download_export(task_id, tmp_path, checksum="md5")
    assert len(sandbox.api_requests()) == before and os.listdir(tmp_path) == []


def test_importing_the_download_module_leaves_urllib3_logging_alone():
    # Compared with what Airflow's own import installs (3.0 puts its secrets masker on the root logger).
    code = (
        "import logging, requests, airflow.sdk\n"
        "names = ('urllib3.connectionpool', 'urllib3', '')\n"
        "before = [list(logging.getLogger(n).filters) for n in names]\n"
        "import airflow_provider_hubexport.hooks.download\n"
        "print([[f for f in logging.getLogger(n).filters if f not in b] for n, b in zip(names, before)])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[[], [], []]"


def test_signed_query_is_hidden_from_urllib3_debug_only_while_downloading(sandbox, hook, tmp_path, caplog):
    import logging

    import requests

    from airflow_provider_hubexport.hooks import download

    sandbox.plan_next(pending_polls=0, processing_polls=0, row_count=10)
    auth = {"Authorization": f"Bearer {SECRET_TOKEN}"}
    base = f"{sandbox.api_url}/crm/v3/exports/export/async"
    task_id = requests.post(base, json=CONTACTS, headers=auth, timeout=10).json()["id"]
    # Asked for without the hook, so that no secrets masker knows this URL: only the filter can hide it.
    url = requests.get(f"{base}/tasks/{task_id}/status", headers=auth, timeout=10).json()["result"]
    query = url.split("?", 1)[1]
    urllib3_log = logging.getLogger(download.URLLIB3_LOGGER)
    caplog.set_level(logging.DEBUG, logger="urllib3")
    download.fetch(download.file_session(), url, str(tmp_path / "x"), task_id, timeout=(5, 5), log=hook.log)
    lines = [r.getMessage() for r in caplog.records if r.name == download.URLLIB3_LOGGER]
    assert any("/hubspot-exports/" in line and "***" in line for line in lines), lines
    assert query not in caplog.text
    assert download._hide_queries not in urllib3_log.filters  # gone once the download is over
    # and other requests' logs are left as they are
    caplog.clear()
    requests.get(f"{sandbox.files_url}/hubspot-exports/1/x.csv?plain=1", timeout=5)
    assert any("plain=1" in r.getMessage() for r in caplog.records)


def test_unzip_with_a_corrupt_member_lands_nothing(sandbox, hook, complete, tmp_path):
    """All or nothing: the members before the damaged one are not left at their final names."""
    sandbox.packaging = Packaging(zip_over_bytes=10_000, rows_per_file=400)
    task_id = complete(row_count=1200, corrupt="data")  # 3 members; the damage is in the second
    with zipfile.ZipFile(sandbox.served_file(task_id)) as zf:
        assert len(zf.namelist()) == 3 and zf.testzip() == zf.namelist()[1]
    with pytest.raises(HubSpotExportError, match="ZIP is corrupt: member .*-2.csv.*Nothing was extracted"):
        hook.download_export(task_id, tmp_path / "out", unzip=True, max_attempts=1)
    assert _listing(tmp_path / "out") == []  # no member, no staging folder, no staged download


def test_failed_unzip_leaves_the_previous_files_untouched(sandbox, hook, complete, tmp_path):
    sandbox.packaging = Packaging(zip_over_bytes=10_000, rows_per_file=400)
    good = hook.download_export(complete(row_count=1200), tmp_path, unzip=True, filename="contacts")
    before = {f["path"]: _sha(f["path"]) for f in good}
    task_id = complete(row_count=1200, corrupt="data")
    with pytest.raises(HubSpotExportError, match="corrupt"):
        hook.download_export(task_id, tmp_path, unzip=True, filename="contacts", max_attempts=1)
    assert {p: _sha(p) for p in before} == before
    assert _listing(tmp_path) == ["contacts-1.csv", "contacts-2.csv", "contacts-3.csv"]


def test_stale_unzip_staging_folder_of_a_killed_try_is_removed(sandbox, hook, complete, tmp_path):
    sandbox.packaging = Packaging(zip_over_bytes=10_000, rows_per_file=400)
    task_id = complete(row_count=1200)
    stale = tmp_path / f".hubspot-{task_id}-abc.unzip"
    stale.mkdir()
    (stale / "0.part").write_bytes(b"half")
    landed = hook.download_export(task_id, tmp_path, unzip=True)
    assert _listing(tmp_path) == sorted(os.path.basename(f["path"]) for f in landed)


class _Log:
    """The lines a Progress writes, as the task log shows them."""

    def __init__(self):
        self.lines = []

    def info(self, message, *args):
        self.lines.append(message % args)


@pytest.mark.parametrize(
    "size,shown",
    [(512, "512 bytes"), (34_327, "34.3 KB"), (5_300_000, "5.3 MB"), (2_100_000_000, "2.1 GB")],
)
def test_progress_reads_in_units_that_fit_and_a_finished_download_has_no_eta(size, shown):
    from airflow_provider_hubexport.hooks.download import Progress

    log = _Log()
    Progress(log, "contacts.csv", size).update(size, final=True)
    (line,) = log.lines
    assert line.startswith(f"contacts.csv: {shown} of {shown} (100%) at ")
    assert re.search(r" at \d+(\.\d)? (bytes|KB|MB|GB)/s$", line) and "ETA" not in line


def test_progress_of_a_running_download_has_an_eta_and_of_an_unknown_size_none():
    from airflow_provider_hubexport.hooks.download import Progress

    log = _Log()
    Progress(log, "deals.xlsx", 10_000_000, every=0).update(2_500_000)
    Progress(log, "deals.csv", None, every=0).update(2048)
    running, unknown = log.lines
    assert running.startswith("deals.xlsx: 2.5 MB of 10.0 MB (25%) at ") and re.search(
        r", ETA \d+ s$", running
    )
    assert unknown.startswith("deals.csv: 2.0 KB at ") and "ETA" not in unknown and "%" not in unknown
