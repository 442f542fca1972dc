"""Putting a finished file on object storage so that nothing stands at its key until all of it is
there, and nothing is left behind when it is not; and the destination's connection checked before
anything is downloaded.

S3 shows an object only once its PutObject or its multipart upload completes, so the key is never
partial. What a failed put can leave is an *incomplete multipart upload*: invisible, billed, listed
by ListMultipartUploads until aborted. s3fs aborts its own upload on an ``Exception`` only; a task
that Airflow stops (SIGTERM raises a ``BaseException`` in it) or a process that dies (SIGKILL) would
leave one. So here any ``BaseException`` aborts the upload, and uploads to the same key that an
earlier, killed try left are aborted before the next put (a retry lands on the same key). GCS's
resumable uploads and Azure's uncommitted blocks expire by themselves and need nothing.
"""

from __future__ import annotations

import contextlib
from typing import Any

from airflow_provider_hubexport.exceptions import HubSpotExportRequestError

# One part of a multipart upload. s3fs reads a file smaller than two parts whole into memory for a
# single PutObject; this keeps that, and each part's buffer, at 16-32 MiB whatever the export's size.
UPLOAD_PART_BYTES = 16 * 1024 * 1024
S3_PROTOCOLS = frozenset({"s3", "s3a"})
# Stores with flat keys: a "directory" needs no creating (and s3fs's mkdir would create a bucket).
FLAT_STORES = S3_PROTOCOLS | {"gs", "gcs", "abfs", "abfss", "az", "adl", "oci", "oss", "r2"}


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


def put_whole(fs: Any, local_path: str, remote_path: str) -> None:
    """Put a finished local file at ``remote_path``; on S3 leave no incomplete upload behind."""
    if not protocols(fs) & S3_PROTOCOLS:
        fs.put_file(local_path, remote_path)
        return
    abort_incomplete_uploads(fs, remote_path)  # an earlier try's, killed mid-upload
    try:
        fs.put_file(local_path, remote_path, chunksize=UPLOAD_PART_BYTES)
    except BaseException:
        abort_incomplete_uploads(fs, remote_path)
        raise


def abort_incomplete_uploads(fs: Any, remote_path: str) -> int:
    """Abort the multipart uploads in progress for exactly this key; return how many.

    Best effort: a role allowed to put objects but not to list uploads
    (``s3:ListBucketMultipartUploads``) still gets its file landed.
    """
    bucket, key, _ = fs.split_path(remote_path)
    aborted = 0
    with contextlib.suppress(Exception):
        listing = fs.call_s3("list_multipart_uploads", Bucket=bucket, Prefix=key)
        for upload in listing.get("Uploads", []):
            if upload.get("Key") == key:
                fs.call_s3("abort_multipart_upload", Bucket=bucket, Key=key, UploadId=upload["UploadId"])
                aborted += 1
    return aborted
