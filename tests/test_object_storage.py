"""Landing on S3 through a destination connection, against a real S3 API on loopback: moto's
server (in this process, on 127.0.0.1), reached through an Airflow ``aws`` connection whose
``endpoint_url`` points at it, so the amazon provider's own S3 filesystem (s3fs) does the talking.

What is checked: the file at its key and nowhere else, unzipped members, the connection given as a
parameter or in the URI, a wrong id refused before anything is downloaded (or, for the all-in-one
operator, before the export starts), and a try killed mid-download or mid-upload leaving no object
and no incomplete multipart upload once it is over or retried.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import zipfile
from datetime import timedelta

import pytest
from conftest import CONTACTS
from dagrun import assert_failed_with, run_dag

from airflow_provider_hubexport.exceptions import HubSpotExportRequestError
from airflow_provider_hubexport.sandbox import Packaging

CONN_ID = "aws_hubexport"
KEYS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}
HEADER = """
import pendulum
from airflow.sdk import DAG
from airflow_provider_hubexport.operators.export import HubSpotDownloadExportOperator, HubSpotExportOperator
"""


@pytest.fixture(scope="session")
def moto_endpoint():
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"  # never ask a cloud's metadata service
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3(moto_endpoint, monkeypatch, request):
    """A fresh bucket, the ``aws_hubexport`` connection to the server, and a boto3 client to look."""
    import boto3

    client = boto3.client("s3", endpoint_url=moto_endpoint, **KEYS)
    bucket = "hubexport-" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:12]
    client.create_bucket(Bucket=bucket)
    conn = {
        "conn_type": "aws",
        "login": KEYS["aws_access_key_id"],
        "password": KEYS["aws_secret_access_key"],
        "extra": {"endpoint_url": moto_endpoint, "region_name": KEYS["region_name"]},
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
    client.bucket = bucket
    return client


def objects(s3, prefix=""):
    listing = s3.list_objects_v2(Bucket=s3.bucket, Prefix=prefix)
    return {o["Key"]: o["Size"] for o in listing.get("Contents", [])}


def uploads(s3):
    return [u["Key"] for u in s3.list_multipart_uploads(Bucket=s3.bucket).get("Uploads", [])]


def _parts(s3):
    listing = s3.list_multipart_uploads(Bucket=s3.bucket).get("Uploads", [])
    return sum(
        len(s3.list_parts(Bucket=s3.bucket, Key=u["Key"], UploadId=u["UploadId"]).get("Parts", []))
        for u in listing
    )


def body(s3, key):
    return s3.get_object(Bucket=s3.bucket, Key=key)["Body"].read()


def sha(data):
    return hashlib.sha256(data).hexdigest()


# -- the hook --------------------------------------------------------------------------------------
def test_csv_lands_at_its_key_with_the_connection_in_either_form(sandbox, hook, complete, s3):
    sandbox.packaging = Packaging(zip_over_bytes=10**12, rows_per_file=10**9)  # one plain CSV
    task_id = complete(row_count=300)
    with open(sandbox.served_file(task_id), "rb") as fh:
        served = fh.read()
    (by_param,) = hook.download_export(
        task_id,
        f"s3://{s3.bucket}/param/",
        destination_conn_id=CONN_ID,
        filename="contacts",
        checksum="sha256",
    )
    (by_uri,) = hook.download_export(task_id, f"s3://{CONN_ID}@{s3.bucket}/uri/", filename="contacts")
    assert by_param["path"] == f"s3://{CONN_ID}@{s3.bucket}/param/contacts.csv"
    assert by_uri["path"] == f"s3://{CONN_ID}@{s3.bucket}/uri/contacts.csv"
    assert objects(s3) == {"param/contacts.csv": len(served), "uri/contacts.csv": len(served)}
    assert body(s3, "param/contacts.csv") == served and by_param["sha256"] == sha(served)
    assert uploads(s3) == []


def test_big_file_goes_up_in_parts_and_leaves_no_upload(sandbox, hook, complete, s3):
    from airflow_provider_hubexport.object_store import UPLOAD_PART_BYTES

    sandbox.packaging = Packaging(zip_over_bytes=10**12, rows_per_file=10**9)
    task_id = complete(row_count=1_000_000)  # about 40 MB: more than two parts, so a multipart upload
    size = os.path.getsize(sandbox.served_file(task_id))
    assert size > 2 * UPLOAD_PART_BYTES
    (landed,) = hook.download_export(task_id, f"s3://{s3.bucket}/big", destination_conn_id=CONN_ID)
    key = landed["path"].split(f"{s3.bucket}/", 1)[1]
    head = s3.head_object(Bucket=s3.bucket, Key=key)
    assert head["ContentLength"] == size and head["ETag"].strip('"').endswith(
        f"-{-(-size // UPLOAD_PART_BYTES)}"
    )
    assert uploads(s3) == []


def test_unzipped_members_land_as_objects(sandbox, hook, complete, s3):
    sandbox.packaging = Packaging(zip_over_bytes=10_000, rows_per_file=400)
    task_id = complete(row_count=1000)
    with zipfile.ZipFile(sandbox.served_file(task_id)) as zf:
        expected = {name: zf.read(name) for name in zf.namelist()}
    landed = hook.download_export(
        task_id, f"s3://{s3.bucket}/unzipped", unzip=True, destination_conn_id=CONN_ID, checksum="sha256"
    )
    assert len(expected) == 3 and len(landed) == 3
    assert {k.rsplit("/", 1)[-1]: body(s3, k) for k in objects(s3, "unzipped/")} == expected
    assert {item["sha256"] for item in landed} == {sha(data) for data in expected.values()}
    assert uploads(s3) == []


def test_wrong_or_misplaced_connection_is_refused_before_any_download(sandbox, hook, complete, s3, tmp_path):
    task_id = complete()
    with pytest.raises(
        HubSpotExportRequestError, match="destination_conn_id 'aws_nope' .* not a connection Airflow"
    ):
        hook.download_export(task_id, f"s3://{s3.bucket}/x", destination_conn_id="aws_nope")
    with pytest.raises(
        HubSpotExportRequestError, match="destination_conn_id 'aws_nope' .* not a connection Airflow"
    ):
        hook.download_export(task_id, f"s3://aws_nope@{s3.bucket}/x")
    with pytest.raises(HubSpotExportRequestError, match="differs from the connection 'aws_nope'.*one place"):
        hook.download_export(task_id, f"s3://aws_nope@{s3.bucket}/x", destination_conn_id=CONN_ID)
    with pytest.raises(HubSpotExportRequestError, match="is for object storage.*local directory"):
        hook.download_export(task_id, str(tmp_path), destination_conn_id=CONN_ID)
    assert sandbox.file_requests == [] and len(sandbox.api_requests("/status")) == 1  # complete()'s own
    assert objects(s3) == {} and os.listdir(tmp_path) == []


# -- a try that dies -------------------------------------------------------------------------------
CHILD = textwrap.dedent(
    """
    import signal, sys
    # As Airflow's task runner does: SIGTERM raises in the task (SystemExit here), it does not just end it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))
    from airflow_provider_hubexport.hooks.hubspot import HubSpotHook
    HubSpotHook().download_export(sys.argv[1], sys.argv[2], destination_conn_id=sys.argv[3])
    """
)


def _child(task_id, destination, tmp_path):
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # where the staged download can be watched
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, task_id, destination, CONN_ID],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _until(condition, what, proc, seconds=120):
    """Bounded: wait for ``condition`` while the child runs (a loaded machine only makes it slower)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if proc.poll() is not None:
            pytest.fail(
                f"the child ended ({proc.returncode}) before {what}: {proc.stderr.read().decode()[-2000:]}"
            )
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no {what} within {seconds} s")
        time.sleep(0.02)


def _staged_bytes(tmp_path):
    return sum(p.stat().st_size for p in tmp_path.glob(".hubspot-*/*.part") if p.exists())


def test_download_killed_halfway_leaves_nothing_and_the_retry_lands_it(sandbox, hook, complete, s3, tmp_path):
    sandbox.packaging = Packaging(zip_over_bytes=10**12, rows_per_file=10**9)
    task_id = complete(row_count=100_000, download_rate=1_000_000)  # about 4 MB at 1 MB/s
    size = os.path.getsize(sandbox.served_file(task_id))
    proc = _child(task_id, f"s3://{s3.bucket}/killed", tmp_path)
    _until(lambda: _staged_bytes(tmp_path) > 0, "a byte of the download staged", proc)
    proc.kill()
    proc.wait(30)
    assert 0 < _staged_bytes(tmp_path) < size  # killed halfway
    assert objects(s3) == {} and uploads(s3) == []
    sandbox.exports[task_id].plan.download_rate = None
    proc = _child(task_id, f"s3://{s3.bucket}/killed", tmp_path)
    assert proc.wait(120) == 0, proc.stderr.read().decode()[-2000:]
    assert list(objects(s3).values()) == [size] and uploads(s3) == []
    assert list(tmp_path.glob(".hubspot-*")) == []  # the killed try's staging went with the retry


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_upload_stopped_midway_leaves_no_object_and_no_incomplete_upload(
    sig, sandbox, hook, complete, s3, tmp_path, monkeypatch
):
    sandbox.packaging = Packaging(zip_over_bytes=10**12, rows_per_file=10**9)
    task_id = complete(row_count=2_500_000)  # about 100 MB: six parts
    size = os.path.getsize(sandbox.served_file(task_id))
    destination = f"s3://{s3.bucket}/stopped"
    proc = _child(task_id, destination, tmp_path)
    # With a part sent the upload shows a sign of life (moto reports every upload as initiated in
    # 2010, so one without a part would look abandoned by age alone): only its record in the killed
    # try's staging folder says it is ours to abort.
    _until(lambda: _parts(s3) > 0, "a part of the multipart upload sent", proc)
    proc.send_signal(sig)
    code = proc.wait(60)
    assert code != 0 and objects(s3) == {}
    if sig == signal.SIGTERM:  # the task's own handler aborted its upload
        assert uploads(s3) == [], "SIGTERM left an incomplete multipart upload"
    else:  # nothing runs in a SIGKILLed process: the next try on this machine aborts what it left
        assert len(uploads(s3)) == 1
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the machine's temp dir, as the child's
        (landed,) = hook.download_export(task_id, destination, destination_conn_id=CONN_ID)
        assert landed["size"] == size and list(objects(s3).values()) == [size]
        assert uploads(s3) == []


# -- the operators in dag.test() -------------------------------------------------------------------
@pytest.fixture
def env(sandbox, connect, airflow_db):
    connect()
    return sandbox


def test_all_in_one_unzips_to_s3_through_its_connection(env, s3):
    env.packaging = Packaging(zip_over_bytes=10_000, rows_per_file=400)
    env.plan_next(pending_polls=1, processing_polls=1, row_count=1000)
    source = (
        HEADER
        + """
with DAG({dag_id}, schedule=None, start_date=pendulum.datetime(2026, 1, 1)) as dag:
    HubSpotExportOperator(
        task_id="export", object_type="CONTACT", object_properties=["email"], poke_interval=0.1,
        destination="s3://" + {bucket} + "/hubspot/{{{{ ds }}}}/", destination_conn_id="{{{{ params.conn }}}}",
        unzip=True, filename="contacts", params={{"conn": {conn}}},
    )
"""
    )
    result = run_dag("s3_all_in_one", source, bucket=s3.bucket, conn=CONN_ID)
    assert result.tasks == {"export": "success"}
    (task_id,) = env.exports
    with zipfile.ZipFile(env.served_file(task_id)) as zf:
        expected = sorted(sha(zf.read(n)) for n in zf.namelist())
    keys = objects(s3, "hubspot/")
    assert len(keys) == 3 and all(k.startswith("hubspot/20") and "/contacts-" in k for k in keys)
    assert sorted(sha(body(s3, k)) for k in keys) == expected
    assert sorted(f["path"] for f in result.xcom["export"]) == sorted(
        f"s3://{CONN_ID}@{s3.bucket}/{k}" for k in keys
    )


def test_download_operator_with_a_wrong_connection_fails_naming_it(env, s3, hook):
    env.plan_next(pending_polls=0, processing_polls=0)
    task_id = hook.start_export(CONTACTS)
    source = (
        HEADER
        + """
with DAG({dag_id}, schedule=None, start_date=pendulum.datetime(2026, 1, 1)) as dag:
    HubSpotDownloadExportOperator(
        task_id="download", export_task_id={task_id}, destination="s3://" + {bucket} + "/x/",
        destination_conn_id="aws_typo",
    )
"""
    )
    result = run_dag("s3_wrong_conn", source, task_id=task_id, bucket=s3.bucket)
    assert_failed_with(
        result, "download", HubSpotExportRequestError, "destination_conn_id 'aws_typo'.*create it"
    )
    assert env.file_requests == [] and env.api_requests("/status") == [] and objects(s3) == {}


def test_all_in_one_with_a_wrong_connection_starts_no_export(env, s3):
    source = (
        HEADER
        + """
with DAG({dag_id}, schedule=None, start_date=pendulum.datetime(2026, 1, 1)) as dag:
    HubSpotExportOperator(
        task_id="export", object_type="CONTACT", object_properties=["email"],
        destination="s3://aws_typo@" + {bucket} + "/x/",
    )
"""
    )
    result = run_dag("s3_wrong_conn_all_in_one", source, bucket=s3.bucket)
    assert_failed_with(result, "export", HubSpotExportRequestError, "destination_conn_id 'aws_typo'")
    assert env.api_requests("/async", method="POST") == [] and env.exports == {}


def test_a_staging_folder_in_use_is_kept_and_an_abandoned_one_removed(s3, tmp_path, monkeypatch):
    import tempfile

    from airflow_provider_hubexport.landing import Destination

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    busy, later = (Destination(f"s3://{s3.bucket}/x", CONN_ID) for _ in range(2))
    busy_root = busy.prepare("123")  # another try of the same export, downloading right now
    abandoned = tmp_path / ".hubspot-123-killed"
    abandoned.mkdir()
    (abandoned / ".lock").touch()  # its owner is gone: nobody holds the lock
    later.prepare("123")
    assert os.path.isdir(busy_root) and not abandoned.exists()
    busy.cleanup()
    later.cleanup()
    assert list(tmp_path.iterdir()) == []


# -- unzip on object storage: all members or none ------------------------------------------------
ZIPPED = Packaging(zip_over_bytes=10_000, rows_per_file=400)  # 1000 rows: a ZIP of 3 CSVs
BEFORE = {"all/contacts-1.csv": b"the day before, 1\n", "all/contacts-2.csv": b"the day before, 2\n"}
WRITES = {"put_object", "complete_multipart_upload", "copy_object"}  # the calls that make an object


def _fail_write(monkeypatch, nth, *, final_keys_only, after_it_happened=False):
    """Make the ``nth`` call that writes an object (to a final key only, or to any key) fail: before
    it reaches S3, or after S3 did it (a reply lost on the way back)."""
    from s3fs import S3FileSystem

    call_s3 = S3FileSystem._call_s3
    counted = []

    async def failing(self, method, *args, **kwargs):
        key = kwargs.get("Key", "")
        fails = False
        if method in WRITES and not (final_keys_only and "/.hubspot-" in key):
            counted.append(key)
            fails = len(counted) == nth
        if fails and not after_it_happened:
            raise OSError(f"injected: {method} {key}")
        result = await call_s3(self, method, *args, **kwargs)
        if fails:
            raise OSError(f"injected after it happened: {method} {key}")
        return result

    _patch_calls(monkeypatch, failing)
    return counted


def _patch_calls(monkeypatch, call):
    """Route every S3 call through ``call``: s3fs's own (``_call_s3``) and ours (``call_s3``, its
    blocking twin, which wraps the original function and would bypass a patch of the first)."""
    from fsspec.asyn import sync_wrapper
    from s3fs import S3FileSystem

    monkeypatch.setattr(S3FileSystem, "_call_s3", call)
    monkeypatch.setattr(S3FileSystem, "call_s3", sync_wrapper(call))


def _yesterday(s3):
    for key, data in BEFORE.items():
        s3.put_object(Bucket=s3.bucket, Key=key, Body=data)


def _as_before(s3):
    assert objects(s3) == {key: len(data) for key, data in BEFORE.items()}  # contacts-3.csv never appears
    assert {key: body(s3, key) for key in BEFORE} == BEFORE
    assert uploads(s3) == []


def test_unzip_whose_upload_fails_midway_leaves_the_final_keys_as_they_were(
    sandbox, hook, complete, s3, monkeypatch
):
    sandbox.packaging = ZIPPED
    task_id = complete(row_count=1000)
    _yesterday(s3)
    written = _fail_write(monkeypatch, 2, final_keys_only=False)  # the second member's upload
    with pytest.raises(OSError, match="injected"):
        hook.download_export(
            task_id,
            f"s3://{s3.bucket}/all",
            unzip=True,
            filename="contacts",
            destination_conn_id=CONN_ID,
            max_attempts=1,
        )
    assert len(written) == 2
    _as_before(s3)


def test_unzip_whose_last_step_fails_midway_puts_back_what_was_there(
    sandbox, hook, complete, s3, monkeypatch
):
    sandbox.packaging = ZIPPED
    task_id = complete(row_count=1000)
    _yesterday(s3)
    # The third final key is written, but its reply is lost: two keys replaced and one new, by then.
    written = _fail_write(monkeypatch, 3, final_keys_only=True, after_it_happened=True)
    with pytest.raises(OSError, match="injected"):
        hook.download_export(
            task_id,
            f"s3://{s3.bucket}/all",
            unzip=True,
            filename="contacts",
            destination_conn_id=CONN_ID,
            max_attempts=1,
        )
    assert written[:3] == ["all/contacts-1.csv", "all/contacts-2.csv", "all/contacts-3.csv"]
    _as_before(s3)


# -- uploads of other writers on the same key -----------------------------------------------------
def _other_writer(s3, key):
    """Another task's multipart upload of ``key``, alive: it has just sent a part."""
    upload_id = s3.create_multipart_upload(Bucket=s3.bucket, Key=key)["UploadId"]
    part = s3.upload_part(Bucket=s3.bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=b"theirs")
    return upload_id, part["ETag"]


def _finish(s3, key, upload_id, etag):
    parts = {"Parts": [{"PartNumber": 1, "ETag": etag}]}
    s3.complete_multipart_upload(Bucket=s3.bucket, Key=key, UploadId=upload_id, MultipartUpload=parts)


def _store(s3):
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(f"s3://{s3.bucket}/", conn_id=CONN_ID).fs


def test_our_put_leaves_another_writers_live_upload_on_the_key_alone(sandbox, hook, complete, s3):
    sandbox.packaging = Packaging(zip_over_bytes=10**12, rows_per_file=10**9)
    task_id = complete(row_count=300)
    key = "live/contacts.csv"
    upload_id, etag = _other_writer(s3, key)
    (landed,) = hook.download_export(
        task_id, f"s3://{s3.bucket}/live", destination_conn_id=CONN_ID, filename="contacts"
    )
    assert landed["path"].endswith(key) and uploads(s3) == [key]
    _finish(s3, key, upload_id, etag)  # the other writer can still finish: the last to finish wins
    assert body(s3, key) == b"theirs"


def test_our_failed_put_aborts_our_upload_only(s3, tmp_path, monkeypatch):
    from airflow_provider_hubexport import object_store

    monkeypatch.setattr(object_store, "UPLOAD_PART_BYTES", 5 * 1024 * 1024)  # S3's smallest part
    local = tmp_path / "export.csv"
    local.write_bytes(os.urandom(11 * 1024 * 1024))  # three parts
    key = "failed/contacts.csv"
    upload_id, etag = _other_writer(s3, key)
    from s3fs import S3FileSystem

    call_s3 = S3FileSystem._call_s3
    ours = []

    async def failing(self, method, *args, **kwargs):
        if method == "upload_part" and kwargs.get("UploadId") != upload_id:
            ours.append(kwargs["PartNumber"])
            if len(ours) == 2:
                raise OSError("injected: the network went away")
        return await call_s3(self, method, *args, **kwargs)

    _patch_calls(monkeypatch, failing)
    with pytest.raises(OSError, match="injected"):
        object_store.put_whole(_store(s3), str(local), f"{s3.bucket}/{key}")
    listing = s3.list_multipart_uploads(Bucket=s3.bucket).get("Uploads", [])
    assert [u["UploadId"] for u in listing] == [upload_id]  # ours aborted, theirs alive
    _finish(s3, key, upload_id, etag)
    assert body(s3, key) == b"theirs" and objects(s3) == {key: 6}


def test_an_upload_without_a_sign_of_life_for_the_bound_is_aborted(s3, tmp_path, monkeypatch):
    from airflow_provider_hubexport import object_store

    key = "stale/contacts.csv"
    upload_id, _ = _other_writer(s3, key)
    store_now = object_store._store_now
    # The same listing read a day later: the upload's last part is older than the bound.
    monkeypatch.setattr(
        object_store,
        "_store_now",
        lambda response: store_now(response) + object_store.ABANDONED_AFTER + timedelta(minutes=1),
    )
    local = tmp_path / "export.csv"
    local.write_bytes(b"email\nann@example.com\n")
    object_store.put_whole(_store(s3), str(local), f"{s3.bucket}/{key}")
    assert uploads(s3) == [] and body(s3, key) == local.read_bytes()
