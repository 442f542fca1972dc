"""Downloads a COMPLETE export: a fresh signed URL, the file streamed to a staging name (flat
memory, checked length, progress in the log), a ZIP's structure checked, then landed, and all of it
tried again within the retry budget (:func:`download_export`, behind ``HubSpotHook.download_export``).

The file host is not the API host: no Authorization header ever goes there (this session has
none), and an error never quotes the URL, which is a credential until it expires.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import math
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import requests
import tenacity
import urllib3

from airflow_provider_hubexport.exceptions import HubSpotExportCanceledError, HubSpotExportError
from airflow_provider_hubexport.hooks.connection import USER_AGENT, check_url_scheme
from airflow_provider_hubexport.landing import (
    Destination,
    StagedFile,
    check_zip,
    filename_for,
    is_zip,
    renamed,
)
from airflow_provider_hubexport.validation import validate_checksum, validate_id

if TYPE_CHECKING:
    from airflow_provider_hubexport.api import ExportStatus
    from airflow_provider_hubexport.hooks.connection import HubSpotConnectionSettings

CHUNK_SIZE = 1024 * 1024
PROGRESS_EVERY = 5.0


class _StatusCallFailed(Exception):
    """A download attempt's status call failed after its own retries: not worth another attempt."""

    def __init__(self, error: HubSpotExportError) -> None:
        super().__init__(str(error))
        self.error = error


class StatusSource(Protocol):
    """What a download needs of a hook: ``HubSpotHook`` is one."""

    @property
    def settings(self) -> HubSpotConnectionSettings: ...

    @property
    def log(self) -> Any: ...

    def get_export_status(self, export_task_id: str | int) -> ExportStatus: ...


def download_export(
    hook: StatusSource,
    export_task_id: str | int,
    destination: Any,
    unzip: bool = False,
    *,
    overwrite: bool = True,
    filename: str | None = None,
    max_attempts: int | None = None,
    destination_conn_id: str | None = None,
    checksum: str | None = None,
) -> list[dict[str, Any]]:
    """Download a COMPLETE export's file into ``destination``; return ``[{path, size, sha256}]``
    (``sha256`` None unless ``checksum="sha256"``).

    ``hook.get_export_status`` gives the export's status with its signed URL (with the API call's
    own retries); each attempt asks afresh, as a signed URL lives minutes. The rest is as
    ``HubSpotHook.download_export`` says. A bad id or ``filename`` and an unusable ``destination``
    are refused before any request.
    """
    tid = validate_id(export_task_id, "export_task_id")
    checksum = validate_checksum(checksum)
    renamed(["export.csv"], filename)  # refuse a bad filename before any request
    settings, log = hook.settings, hook.log
    policy = settings.retry if max_attempts is None else replace(settings.retry, max_attempts=max_attempts)
    dest = Destination(destination, destination_conn_id)
    dest.prepare(tid)
    session = file_session()

    def attempt() -> list[dict[str, Any]]:
        try:
            status = hook.get_export_status(tid)
        except HubSpotExportError as err:  # its own retries are spent: not worth another attempt
            raise _StatusCallFailed(err) from None
        if status.status == "CANCELED":
            raise HubSpotExportCanceledError(
                f"Export {tid} was canceled by HubSpot; there is no file to download. "
                + " | ".join(status.errors)
            )
        if status.status != "COMPLETE" or not status.result_url:
            raise HubSpotExportError(
                f"Export {tid} is {status.status}, not COMPLETE: wait for it (HubSpotExportSensor) "
                "before downloading."
            )
        staged_path = dest.staged_name(tid)
        try:
            name, staged = fetch(
                session,
                status.result_url,
                staged_path,
                tid,
                timeout=(settings.connect_timeout, settings.read_timeout),
                log=log,
                checksum=None if unzip else checksum,  # unzipping: the members are what lands
            )
            if is_zip(staged.path):
                check_zip(staged.path)
            elif unzip and checksum:  # not a ZIP after all: it lands as it is, hashed from disk
                staged.sha256 = file_sha256(staged.path)
        except BaseException:
            remove_quietly(staged_path)
            raise
        try:
            if unzip and is_zip(staged.path):
                return dest.extract(
                    staged.path, tid, overwrite=overwrite, filename=filename, checksum=checksum
                )
            return [dest.land(staged, renamed([name], filename), overwrite=overwrite)]
        finally:
            remove_quietly(staged.path)

    try:
        landed = tenacity.Retrying(**policy.download_kwargs(log, f"download of export {tid}"))(attempt)
    except _StatusCallFailed as failed:
        raise failed.error from None
    finally:
        session.close()
        dest.cleanup()
    for item in landed:
        if item["sha256"]:
            log.info("Landed %s (%d bytes, sha256 %s)", item["path"], item["size"], item["sha256"])
        else:
            log.info("Landed %s (%d bytes)", item["path"], item["size"])
    return landed


class _HideSignedQueries(logging.Filter):
    """urllib3 logs each request's path and query at DEBUG; for a signed URL the query is the
    credential. Airflow's secrets masker redacts it in task logs, and this filter does so for any
    other handler a deployment adds. It sits on urllib3's logger only while a download runs
    (``hidden_query``), so importing this module changes no one else's logging."""

    def __init__(self) -> None:
        super().__init__()
        self.queries: list[str] = []  # of the downloads running now

    def filter(self, record: logging.LogRecord) -> bool:
        queries = tuple(self.queries)
        if queries and isinstance(record.args, tuple):
            record.args = tuple(self._clean(arg, queries) for arg in record.args)
        return True

    @staticmethod
    def _clean(arg: Any, queries: tuple[str, ...]) -> Any:
        if isinstance(arg, str):
            for query in queries:
                arg = arg.replace(query, "***")
        return arg


URLLIB3_LOGGER = "urllib3.connectionpool"
_hide_queries = _HideSignedQueries()
_hide_lock = threading.Lock()


@contextlib.contextmanager
def hidden_query(query: str) -> Iterator[None]:
    """While inside, urllib3's DEBUG records show ``***`` for ``query``; the filter is installed on
    urllib3's logger by the first download running and removed by the last."""
    if not query:
        yield
        return
    logger = logging.getLogger(URLLIB3_LOGGER)
    with _hide_lock:
        _hide_queries.queries.append(query)
        logger.addFilter(_hide_queries)
    try:
        yield
    finally:
        with _hide_lock:
            _hide_queries.queries.remove(query)
            if not _hide_queries.queries:
                logger.removeFilter(_hide_queries)


def file_session() -> requests.Session:
    """A session for the file host only: no auth, no API headers, no proxies from the connection.

    ``Accept-Encoding: identity``: the file must arrive as stored. requests asks for gzip by default,
    and a host that took it up would send a body whose decoded size never matches Content-Length.
    """
    session = requests.Session()
    session.headers.update({"User-Agent": f"{USER_AGENT} requests", "Accept-Encoding": "identity"})
    return session


def human_bytes(count: float) -> str:
    """A byte count in the unit that fits it (decimal, as file sizes are shown): ``512 bytes``,
    ``34.3 KB``, ``5.3 MB``, ``2.1 GB``. A small export read in MB was ``0.0 of 0.0 MB``."""
    if count < 1000:
        return f"{count:.0f} bytes"
    for unit in ("KB", "MB"):
        count /= 1000
        if count < 1000:
            return f"{count:.1f} {unit}"
    return f"{count / 1000:.1f} GB"


class Progress:
    """Logs bytes so far and the rate, with percent when the size is known and an ETA while the
    download runs, at most every ``every`` seconds (and once at the end, ``final``)."""

    def __init__(self, log: Any, name: str, total: int | None, every: float = PROGRESS_EVERY) -> None:
        self.log, self.name, self.total, self.every = log, name, total, every
        self.started = self.last = time.monotonic()

    def update(self, done: int, *, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self.last < self.every:
            return
        self.last = now
        elapsed = max(now - self.started, 1e-6)
        rate = f"{human_bytes(done / elapsed)}/s"
        if not self.total:
            self.log.info("%s: %s at %s", self.name, human_bytes(done), rate)
            return
        line = f"{human_bytes(done)} of {human_bytes(self.total)} ({100 * done / self.total:.0f}%) at {rate}"
        if final or done >= self.total or not done:  # finished (an ETA of 0 s says nothing), or no rate yet
            self.log.info("%s: %s", self.name, line)
        else:
            self.log.info("%s: %s, ETA %.0f s", self.name, line, (self.total - done) / (done / elapsed))


def fetch(
    session: requests.Session,
    url: str,
    staged_path: str,
    task_id: str,
    *,
    timeout: tuple[float, float],
    log: Any,
    checksum: str | None = None,
) -> tuple[str, StagedFile]:
    """Download ``url`` into ``staged_path``; return HubSpot's file name and the staged file
    (with its SHA-256 when ``checksum="sha256"``).

    Raises a retryable ``HubSpotExportError`` for an expired URL (403/410), a 5xx, a dropped
    connection or a short read, so the caller can get a fresh URL and try again.
    """
    check_url_scheme(url, "The signed result URL")
    with hidden_query(urlsplit(url).query):
        try:
            response = session.get(url, stream=True, timeout=timeout, allow_redirects=False)
        except requests.RequestException as err:
            raise HubSpotExportError(
                f"Download of export {task_id} failed: {type(err).__name__}.", retryable=True
            )
        with response:
            if response.status_code in (403, 410):
                raise HubSpotExportError(
                    f"The file host refused the signed URL of export {task_id} (HTTP {response.status_code}): it "
                    "has probably expired.",
                    status_code=response.status_code,
                    retryable=True,
                )
            if response.status_code != 200:
                raise HubSpotExportError(
                    f"The file host answered HTTP {response.status_code} for export {task_id}.",
                    status_code=response.status_code,
                    retryable=response.status_code == 429 or response.status_code >= 500,
                )
            name = filename_for(response.headers, url, task_id)
            length = response.headers.get("Content-Length")
            expected = int(length) if length and length.isdigit() else None
            progress = Progress(log, name, expected)
            size = 0
            readinto, sent_bytes = body_reader(response)
            with buffers_for(checksum) as buffers:  # a hashing thread ends however this block does
                # Opened without O_TRUNC: the staging file is new and empty (mkstemp), and ext4
                # takes a truncation to zero for a "replace via truncate" and flushes the whole
                # file on close (auto_da_alloc): 0.3 s per GB, measured.
                with open(os.open(staged_path, os.O_WRONLY | os.O_CREAT, 0o600), "wb", buffering=0) as out:
                    while True:
                        buffer = buffers.take()
                        try:
                            n = readinto(buffer)
                        except (http.client.HTTPException, urllib3.exceptions.HTTPError, OSError) as err:
                            raise HubSpotExportError(
                                f"Download of export {task_id} was cut short after {size} bytes "
                                f"({type(err).__name__}).",
                                retryable=True,
                            )
                        if not n:
                            break
                        try:
                            write_all(out, memoryview(buffer)[:n])
                        except OSError as err:
                            raise HubSpotExportError(
                                f"Writing export {task_id} to disk failed: {err.strerror}."
                            )
                        buffers.hash(buffer, n)
                        size += n
                        progress.update(size)
                received = sent_bytes(size)
                if expected is not None and received != expected:
                    raise HubSpotExportError(
                        f"Download of export {task_id} was cut short: {received} of {expected} bytes.",
                        retryable=True,
                    )
                digest = buffers.hexdigest()
        progress.update(size, final=True)
        return name, StagedFile(staged_path, size, digest)


def body_reader(response: Any) -> tuple[Callable[[bytearray], int], Callable[[int], int]]:
    """``readinto`` for the file's bytes, and how many bytes the host sent (for the length check).

    requests' ``iter_content`` gives each chunk as a new bytes object, copied through urllib3's
    decoder (twice the memory traffic of the copy itself). We ask for ``identity``, so a body
    without a Content-Encoding is read by the http.client response under urllib3's, which fills
    the buffer from the socket and keeps the length and chunked framing. A host that encodes the
    file anyway (S3 serves an object stored gzipped with ``Content-Encoding: gzip``) gets it
    decoded by urllib3, and Content-Length then counts the encoded bytes, which urllib3 tells.
    """
    raw = response.raw
    encoding = response.headers.get("Content-Encoding", "").strip().lower()
    if encoding in ("", "identity"):
        direct = getattr(getattr(raw, "_fp", None), "readinto", None)
        return (direct if direct is not None else raw.readinto), lambda written: written
    pending = memoryview(b"")

    def decoded_readinto(buffer: bytearray) -> int:
        nonlocal pending
        while not pending:
            chunk = raw.read(len(buffer), decode_content=True)
            if not chunk:
                return 0
            pending = memoryview(chunk)
        n = min(len(buffer), len(pending))
        buffer[:n] = pending[:n]
        pending = pending[n:]
        return n

    return decoded_readinto, lambda written: raw.tell()


def write_all(out: Any, data: memoryview) -> None:
    """An unbuffered file may take part of a write (a full disk, a signal): write the rest."""
    while data:
        written = out.write(data)
        data = data[written:]


class _Buffer:
    """The copy loop's one buffer, read into again and again: no digest (the default). HubSpot
    publishes no checksum to verify a file against; what protects the bytes in transit is TLS,
    the length check and, for a ZIP, its structure check and each member's CRC-32 on unzip. A
    digest is for what the user does with it (a manifest, comparing copies), so it is opt-in."""

    def __init__(self) -> None:
        self._buffer = bytearray(CHUNK_SIZE)

    def __enter__(self) -> _Buffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def take(self) -> bytearray:
        return self._buffer

    def hash(self, buffer: bytearray, n: int) -> None:
        """Nothing to hash."""

    def close(self) -> None:
        """Nothing to end."""

    def hexdigest(self) -> str | None:
        return None


class _InlineHash(_Buffer):
    """SHA-256 in the copy loop itself: where the process has one CPU, a second thread would
    only take turns with the loop (and add its queue hand-offs)."""

    def __init__(self) -> None:
        super().__init__()
        self._hash = hashlib.sha256()

    def hash(self, buffer: bytearray, n: int) -> None:
        self._hash.update(memoryview(buffer)[:n])

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


class _HashingBuffers(_Buffer):
    """Buffers the copy loop reads into, each hashed (SHA-256) on a second thread before it is read
    into again: where a second CPU is free, hashing overlaps the network and the disk instead of
    adding to them (hashlib lets go of the GIL), with no allocation per chunk and memory fixed at
    ``COUNT`` x ``CHUNK_SIZE``.

    Use as a context manager: leaving it, by return or by exception, always ends the thread.
    """

    COUNT = 4

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        for _ in range(self.COUNT):
            self._free.put(bytearray(CHUNK_SIZE))
        self._full: queue.SimpleQueue[tuple[bytearray, int] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="hubspot-sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._full.get()) is not None:
            buffer, n = item
            self._hash.update(memoryview(buffer)[:n])
            self._free.put(buffer)

    def take(self) -> bytearray:
        """A buffer no one is hashing (waits while all are queued for hashing)."""
        while True:
            try:
                return self._free.get(timeout=5)
            except queue.Empty:
                if not self._thread.is_alive():
                    raise RuntimeError("the SHA-256 thread of the download ended early") from None

    def hash(self, buffer: bytearray, n: int) -> None:
        self._full.put((buffer, n))

    def close(self) -> None:
        """Let the thread hash what is queued and end; idempotent."""
        if self._thread.is_alive():
            self._full.put(None)
            self._thread.join()

    def hexdigest(self) -> str:
        self.close()
        return self._hash.hexdigest()


def usable_cpus() -> int:
    """CPUs this process can keep busy: its affinity (a container's cpuset, ``taskset``), capped
    by a CPU quota (Kubernetes' ``limits.cpu``: the cgroup's ``cpu.max``, or v1's CFS quota)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    return cpus if quota is None else max(1, min(cpus, math.ceil(quota)))


CGROUP_CPU_MAX = "/sys/fs/cgroup/cpu.max"  # v2: "max 100000", or "50000 100000" (half a CPU)
CGROUP_V1_QUOTA = "/sys/fs/cgroup/cpu/cpu.cfs_quota_us"  # v1: "-1", or the quota beside ...
CGROUP_V1_PERIOD = "/sys/fs/cgroup/cpu/cpu.cfs_period_us"  # ... its period


def cgroup_cpu_quota() -> float | None:
    """The CPUs' worth of time this process's cgroup may use (``None``: no quota, or unknown)."""

    def read(path: str) -> str:
        with open(path) as fh:
            return fh.read().strip()

    try:
        quota, period = read(CGROUP_CPU_MAX).split()
    except (OSError, ValueError):
        try:
            quota, period = read(CGROUP_V1_QUOTA), read(CGROUP_V1_PERIOD)
        except OSError:
            return None
    try:
        cpus = int(quota) / int(period)
    except (ValueError, ZeroDivisionError):  # "max", or unreadable
        return None
    return cpus if cpus > 0 else None  # v1's -1: no quota


def buffers_for(checksum: str | None) -> _Buffer:
    """The copy loop's buffers for ``checksum`` (already validated) on the CPUs at hand."""
    if checksum is None:
        return _Buffer()
    return _HashingBuffers() if usable_cpus() > 1 else _InlineHash()


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK_SIZE):
            digest.update(chunk)
    return digest.hexdigest()


def remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
