"""Putting finished files on object storage so that nothing stands at a key until all of it is
there, several files all or none, and nothing of ours is left behind when it is not, without
touching another writer's upload; and the destination's connection checked before anything is
downloaded.

S3 shows an object only once its PutObject or its multipart upload completes, so the key is never
partial. What a failed put can leave is an *incomplete multipart upload*: invisible, billed, listed
by ListMultipartUploads until aborted. s3fs aborts its own upload on an ``Exception`` only; a task
that Airflow stops (SIGTERM raises a ``BaseException`` in it) or a process that dies (SIGKILL) would
leave one. So the multipart upload is driven here, where its id is known: any ``BaseException``
aborts it, and its id is recorded in the download's staging folder (``journal``), which the
download holds locked for its life.

Another writer may be uploading the same key right now (a second DAG, another worker's try of the
same export): aborting its upload would fail it. So a put aborts only uploads that are provably
dead: its own; those recorded by a try whose staging folder's lock is free (the kernel drops it
when the process dies, however it dies, so the try is over: see ``landing``); and those that have
shown no sign of life, neither their start nor a part, for ``ABANDONED_AFTER`` by the store's own
clock (a killed try on another machine). The last is a bound, not a proof of death: one of our
parts is 16 MiB, and a live writer sending nothing for a day would have to be stuck. If the bound
is ever wrong, that writer's next call fails and it tries again; no object is ever partial or
wrong, since an aborted upload never becomes one. GCS's resumable uploads and Azure's uncommitted
blocks expire by themselves and need nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Any

from airflow_provider_hubexport.exceptions import HubSpotExportError, HubSpotExportRequestError

# One part of a multipart upload. s3fs reads a file smaller than two parts whole into memory for a
# single PutObject; this keeps that, and each part's buffer, at 16-32 MiB whatever the export's size.
UPLOAD_PART_BYTES = 16 * 1024 * 1024
S3_PROTOCOLS = frozenset({"s3", "s3a"})
# Stores with flat keys: a "directory" needs no creating (and s3fs's mkdir would create a bucket).
FLAT_STORES = S3_PROTOCOLS | {"gs", "gcs", "abfs", "abfss", "az", "adl", "oci", "oss", "r2"}
# An upload on our key with no sign of life (its start, its newest part) for this long is abandoned.
ABANDONED_AFTER = timedelta(days=1)


def protocols(fs: Any) -> set[str]:
    names = getattr(fs, "protocol", ()) or ()
    return {names} if isinstance(names, str) else set(names)


def store_conn_id(path: Any) -> str | None:
    """An ``ObjectStoragePath``'s connection id: a property from Airflow 3.2, a storage option before."""
    try:
        return path.conn_id
    except AttributeError:
        return path.storage_options.get("conn_id")


def is_flat_store(fs: Any) -> bool:
    return bool(protocols(fs) & FLAT_STORES)


def check_connection(conn_id: str | None, destination: str) -> None:
    """Refuse a destination connection Airflow does not know, before any download.

    Airflow itself would not: ``ObjectStoragePath`` logs the missing connection and falls back to
    the store's default credentials (for S3, boto's chain: environment, instance role), which
    writes with the wrong identity or fails only after the whole file was downloaded.
    """
    if not conn_id:
        return
    from airflow_provider_hubexport.compat import base_hook_class

    try:
        base_hook_class().get_connection(conn_id)
    except Exception as err:
        if "NotFound" not in type(err).__name__:  # AirflowNotFoundException, whichever module
            raise
        raise HubSpotExportRequestError(
            f"destination_conn_id {conn_id!r} (for {destination}) is not a connection Airflow knows: "
            "create it (an 'aws' connection for s3://, 'google_cloud_platform' for gs://) or fix the id."
        ) from None


def put_whole(fs: Any, local_path: str, remote_path: str, *, journal: str | None = None) -> None:
    """Put a finished local file at ``remote_path``; on S3 leave no incomplete upload of ours
    behind, and abort no one else's that is alive."""
    if not protocols(fs) & S3_PROTOCOLS:
        fs.put_file(local_path, remote_path)
        return
    bucket, key, _ = fs.split_path(remote_path)
    abort_abandoned_uploads(fs, remote_path)  # e.g. a try killed mid-upload on another machine
    if os.path.getsize(local_path) < 2 * UPLOAD_PART_BYTES:
        with open(local_path, "rb") as fh:
            fs.call_s3("put_object", Bucket=bucket, Key=key, Body=fh.read())
    else:
        _put_in_parts(fs, local_path, bucket, key, journal)
    fs.invalidate_cache(remote_path)


def _put_in_parts(fs: Any, local_path: str, bucket: str, key: str, journal: str | None) -> None:
    upload_id = fs.call_s3("create_multipart_upload", Bucket=bucket, Key=key)["UploadId"]
    try:
        record(journal, fs, {"upload": [bucket, key, upload_id]})
        parts: list[dict[str, Any]] = []
        with open(local_path, "rb") as fh:
            while chunk := fh.read(UPLOAD_PART_BYTES):
                number = len(parts) + 1
                sent = fs.call_s3(
                    "upload_part", Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=chunk
                )
                parts.append({"PartNumber": number, "ETag": sent["ETag"]})
        fs.call_s3(
            "complete_multipart_upload",
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": parts},
        )
    except BaseException:
        with contextlib.suppress(Exception):
            fs.call_s3("abort_multipart_upload", Bucket=bucket, Key=key, UploadId=upload_id)
        raise


def _store_now(response: dict[str, Any]) -> datetime:
    """The store's time, from its answer's Date header: upload and part times are on its clock."""
    date = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    try:
        now = parsedate_to_datetime(date)
    except (TypeError, ValueError):
        return datetime.now(timezone.utc)
    return now if now.tzinfo is not None else now.replace(tzinfo=timezone.utc)


def abort_abandoned_uploads(fs: Any, remote_path: str) -> int:
    """Abort the multipart uploads on exactly this key that showed no sign of life (started, or sent
    a part) for ``ABANDONED_AFTER``; return how many.

    Best effort: a role allowed to put objects but not to list uploads
    (``s3:ListBucketMultipartUploads``) still gets its file landed.
    """
    bucket, key, _ = fs.split_path(remote_path)
    aborted = 0
    with contextlib.suppress(Exception):
        listing = fs.call_s3("list_multipart_uploads", Bucket=bucket, Prefix=key)
        now = _store_now(listing)
        for upload in listing.get("Uploads", []):
            if upload.get("Key") != key or now - upload["Initiated"] <= ABANDONED_AFTER:
                continue
            if (
                now - _last_part_sent(fs, bucket, key, upload["UploadId"], upload["Initiated"])
                > ABANDONED_AFTER
            ):
                fs.call_s3("abort_multipart_upload", Bucket=bucket, Key=key, UploadId=upload["UploadId"])
                aborted += 1
    return aborted


def _last_part_sent(fs: Any, bucket: str, key: str, upload_id: str, initiated: datetime) -> datetime:
    latest, marker = initiated, 0
    while True:
        page = fs.call_s3("list_parts", Bucket=bucket, Key=key, UploadId=upload_id, PartNumberMarker=marker)
        for part in page.get("Parts", []):
            latest = max(latest, part["LastModified"])
        if not page.get("IsTruncated"):
            return latest
        marker = page["NextPartNumberMarker"]


def record(journal: str | None, fs: Any, entry: dict[str, Any]) -> None:
    """Note, in the download's locked staging folder, something on the store that a try killed
    now would leave (an upload, a staging prefix): the next try on this machine undoes it."""
    if journal is None:
        return
    with open(journal, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"protocols": sorted(protocols(fs)), **entry}) + "\n")


def undo_journal(fs: Any, journal: str) -> None:
    """Undo what a dead try recorded: abort its uploads, remove its staging prefixes. Best effort:
    what stays is invisible (an upload) or under a hidden ``.hubspot-`` name. Its final keys are
    left as they are: by now another run may have landed newer objects there, and this try lands
    them all anyway. Entries for another kind of store are skipped."""
    try:
        with open(journal, encoding="utf-8") as fh:
            entries = [json.loads(line) for line in fh if line.strip()]
    except (OSError, ValueError):
        return
    for entry in entries:
        if entry.get("protocols") != sorted(protocols(fs)):
            continue
        with contextlib.suppress(Exception):
            if "upload" in entry:
                bucket, key, upload_id = entry["upload"]
                fs.call_s3("abort_multipart_upload", Bucket=bucket, Key=key, UploadId=upload_id)
            elif "staging" in entry:
                fs.rm(entry["staging"], recursive=True)


def put_all(fs: Any, files: list[tuple[str, str]], staging: str, *, journal: str | None = None) -> None:
    """Put several finished local files at their keys, all or none, as far as a store without a
    multi-key rename allows; ``staging`` is a fresh prefix beside them (``.hubspot-...``).

    Every file is first put under ``staging``, and every object already at a final key copied
    aside there: a failure up to then leaves every final key as it was. Only then is each staged
    object copied to its final key, inside the store (no bytes through the worker): that step is
    not atomic, and while it runs a reader may see some keys new and some old. If it fails, each
    key written so far is put back (the one being written too, whose reply may be all that was
    lost): the previous object copied back (same bytes and metadata, a new Last-Modified), a key
    that had none removed. If putting back fails as well (the store unreachable), the error names
    those keys and where their previous objects are kept. A try killed outright (SIGKILL) during
    the copies cannot put anything back: its keys stay as it left them, some new and some old,
    until a try lands them all; the next try on the same machine removes its staging prefix
    (recorded in ``journal``), one elsewhere leaves it.
    """
    record(journal, fs, {"staging": staging})
    keep = False
    try:
        staged = [f"{staging}/{n}" for n in range(len(files))]
        for (local, _), key in zip(files, staged, strict=True):
            put_whole(fs, local, key, journal=journal)
        previous: dict[int, str] = {}
        for n, (_, final) in enumerate(files):
            fs.invalidate_cache(final)  # a listing cached earlier must not hide what is there
            with contextlib.suppress(FileNotFoundError):
                fs.cp_file(final, f"{staging}/previous/{n}")
                previous[n] = f"{staging}/previous/{n}"
        written: list[tuple[str, str | None]] = []
        try:
            for n, (_, final) in enumerate(files):
                written.append((final, previous.get(n)))  # before the copy: it may happen, its reply lost
                fs.cp_file(staged[n], final)
        except BaseException as err:
            keep = True  # the previous objects, until they are back
            failed = _put_back(fs, written)
            if failed:
                raise HubSpotExportError(
                    f"Landing the export's files failed midway ({type(err).__name__}: {err}), and putting "
                    f"back what was there failed too: {', '.join(failed[:5])} may hold this export's file "
                    f"(or nothing, if it was new). Their previous objects are kept under {staging}/previous/ "
                    "(numbered in the order the files were listed); download again to land them all."
                ) from err
            keep = False
            raise
    finally:
        if not keep:
            with contextlib.suppress(Exception):
                fs.rm(staging, recursive=True)


def _put_back(fs: Any, written: list[tuple[str, str | None]]) -> list[str]:
    """Put back the objects that were at these keys (or remove a key that had none); return the
    keys that could not be."""
    failed = []
    for final, previous in written:
        try:
            if previous is not None:
                fs.cp_file(previous, final)
            else:
                with contextlib.suppress(FileNotFoundError):
                    fs.rm_file(final)
        except Exception:
            failed.append(final)
    return failed
