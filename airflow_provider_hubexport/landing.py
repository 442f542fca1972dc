"""Where exported files land, and how: atomically, with safe names, never a partial file at a
final name. Local directories get a rename on the same filesystem; other ``ObjectStoragePath``
stores get the finished file put whole. Two downloads of one export may run at once on one machine:
each holds a lock on its staging files for its life, so each removes only what a dead try left.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import posixpath
import re
import shutil
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from airflow_provider_hubexport.exceptions import HubSpotExportError, HubSpotExportRequestError
from airflow_provider_hubexport.object_store import (
    check_connection,
    is_flat_store,
    put_all,
    put_whole,
    store_conn_id,
    undo_journal,
)

STAGING_PREFIX = ".hubspot-"
STAGING_SUFFIX = ".part"
UNZIP_SUFFIX = ".unzip"  # a staging folder that a ZIP's members are extracted into
JOURNAL_NAME = "journal"  # in a remote destination's staging folder: what a killed try would leave
_CHUNK = 1024 * 1024
_BAD_CHARS = re.compile(r"[\x00-\x1f\x7f/\\:]")
_EXTENSIONS = {
    "text/csv": ".csv",
    "application/zip": ".zip",
    "application/vnd.ms-excel": ".xls",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ".xlsx",
}


def safe_filename(name: str | None) -> str | None:
    """A bare file name that cannot point anywhere but into the destination, or None."""
    if not name:
        return None
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = _BAD_CHARS.sub("_", name).strip().lstrip(".")
    return name[:200] or None


def filename_for(headers: Any, url: str, task_id: str) -> str:
    """HubSpot's name for the file: Content-Disposition, else the URL's last segment, else a default."""
    disposition = headers.get("Content-Disposition")
    if disposition:
        msg = Message()
        msg["content-disposition"] = disposition
        name = safe_filename(msg.get_filename())
        if name:
            return name
    name = safe_filename(unquote(posixpath.basename(urlsplit(url).path)))
    if name:
        return name
    content_type = (headers.get("Content-Type") or "").split(";")[0].strip()
    return f"hubspot-export-{task_id}{_EXTENSIONS.get(content_type, '.bin')}"


def renamed(names: list[str], stem: str | None) -> list[str]:
    """Names for landed files: HubSpot's, or ``stem`` with HubSpot's extension (``stem-1.csv``,
    ``stem-2.csv`` ... when there are several), so re-runs land on the same names."""
    if not stem:
        return names
    if not isinstance(stem, str) or re.search(r"[/\\\x00]", stem) or stem.strip(". ") == "":
        raise HubSpotExportRequestError(
            f"filename must be a plain file name without '/', '\\' or '..', such as 'contacts'; got {stem!r}."
        )
    base = safe_filename(
        os.path.splitext(stem)[0] if os.path.splitext(stem)[1] in _EXTENSIONS.values() else stem
    )
    if not base:
        raise HubSpotExportRequestError(
            f"filename {stem!r} is not a usable file name: use letters, digits, '-' or '_', such as 'contacts'."
        )
    if len(names) == 1:
        return [base + os.path.splitext(names[0])[1]]
    return [f"{base}-{i}{os.path.splitext(n)[1]}" for i, n in enumerate(names, 1)]


def is_zip(path: str) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) == b"PK\x03\x04"


def check_zip(path: str) -> None:
    """A ZIP counts as downloaded only if its structure holds: a readable central directory, and a
    local header for every member with its data inside the file.

    The members' CRCs are checked when they are extracted (``unzip=True``), which inflates them
    anyway; inflating a 1 GiB export only to check it would cost ten times the download.
    """
    size = os.path.getsize(path)
    try:
        with zipfile.ZipFile(path) as zf, open(path, "rb") as fh:
            for info in zf.infolist():
                fh.seek(info.header_offset)
                header = fh.read(30)
                if len(header) < 30 or header[:4] != b"PK\x03\x04":
                    raise zipfile.BadZipFile(f"member {info.filename!r} has no local header")
                name_len, extra_len = struct.unpack("<HH", header[26:30])
                if info.header_offset + 30 + name_len + extra_len + info.compress_size > size:
                    raise zipfile.BadZipFile(f"member {info.filename!r} runs past the end of the file")
    except (zipfile.BadZipFile, OSError, EOFError, struct.error) as err:
        raise HubSpotExportError(f"The downloaded ZIP is corrupt ({err}).", retryable=True)


def member_parts(name: str) -> list[str] | None:
    """The path parts of a ZIP member if it stays inside the destination, else None."""
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or "\x00" in name:
        return None
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        return None
    return parts


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    return (info.external_attr >> 16) & 0o170000 == 0o120000


@dataclass
class StagedFile:
    """A finished download waiting in the staging area to be landed."""

    path: str
    size: int
    sha256: str | None = None  # with checksum="sha256" only


def copy_member(src: Any, dst: Any, checksum: str | None = None) -> tuple[int, str | None]:
    """Copy ``src`` to ``dst``; the size, and the SHA-256 when ``checksum="sha256"``."""
    digest, size = (hashlib.sha256() if checksum else None), 0
    while chunk := src.read(_CHUNK):
        dst.write(chunk)
        if digest is not None:
            digest.update(chunk)
        size += len(chunk)
    return size, None if digest is None else digest.hexdigest()


def _hold(path: str) -> int | None:
    """Lock a staging file or folder just made, for as long as its download lives; None if a
    cleaner took it in the instant between its creation and this lock (then make another).

    The lock is what tells a concurrent download of the same export (another worker, a second DAG)
    that the staging is in use; the kernel drops it when the process ends, however it ends, so a
    staging entry whose lock is free is provably abandoned. An flock, not a POSIX lock: it belongs
    to this descriptor only, so the writer opening and closing the file does not release it.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # waits only while a cleaner holds it, which then removes it
        if _still_at(fd, path):
            return fd
    except OSError:
        pass
    os.close(fd)
    return None


def _still_at(fd: int, path: str | Path) -> bool:
    """Whether ``path`` still names the file locked through ``fd`` (not removed, not replaced)."""
    try:
        here, held = os.stat(path, follow_symlinks=False), os.fstat(fd)
    except OSError:
        return False
    return (here.st_ino, here.st_dev) == (held.st_ino, held.st_dev)


def _made_held(make: Callable[[], str]) -> tuple[str, int]:
    while True:  # another round only if a cleaner hit the instant between creation and lock
        path = make()
        fd = _hold(path)
        if fd is not None:
            return path, fd


def _remove_if_abandoned(staging: Path, before: Callable[[Path], None] | None = None) -> None:
    """Remove a staging file or folder whose owner is gone: its lock is free. Another try of the
    same export may be downloading here right now: its staging stays. ``before`` runs first, while
    the lock keeps anyone else from taking the same leftover."""
    try:
        fd = os.open(staging, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:  # gone, or a symlink: not ours
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if not _still_at(fd, staging):
            return
        if before is not None:
            before(staging)
        if staging.is_dir():
            shutil.rmtree(staging, ignore_errors=True)
        else:
            staging.unlink(missing_ok=True)
    except OSError:  # held (BlockingIOError): in use
        return
    finally:
        os.close(fd)


class Destination:
    """A local directory, a ``file://`` URI, or any ``ObjectStoragePath`` URI (``s3://``, ``gs://``),
    with the connection of its store: ``conn_id``, or the ``scheme://conn_id@bucket/...`` form."""

    def __init__(self, destination: Any, conn_id: str | None = None) -> None:
        if destination is None or str(destination).strip() == "":
            raise HubSpotExportRequestError(
                "destination is required: a local directory or an object storage URI such as s3://bucket/path."
            )
        conn_id = conn_id or None  # an empty templated value means "the store's default"
        self.remote: Any = None
        text = str(destination)
        scheme = urlsplit(text).scheme if "://" in text else ""
        if scheme in ("", "file"):
            if conn_id is not None:
                raise HubSpotExportRequestError(
                    f"destination_conn_id {conn_id!r} is for object storage, but destination {text!r} is a "
                    "local directory: drop destination_conn_id, or give an s3://, gs://... URI."
                )
            local = unquote(urlsplit(text).path) if scheme == "file" else text
            self.local_dir: str | None = os.path.abspath(os.path.expanduser(local))
        else:
            from airflow.sdk import ObjectStoragePath

            self.local_dir = None
            path = destination if isinstance(destination, ObjectStoragePath) else ObjectStoragePath(text)
            named = store_conn_id(path)
            if conn_id is not None and named not in (None, conn_id):
                raise HubSpotExportRequestError(
                    f"destination_conn_id {conn_id!r} differs from the connection {named!r} named in "
                    f"destination {text!r}: give the connection in one place."
                )
            self.remote = path if conn_id is None else ObjectStoragePath(text, conn_id=conn_id)
        self._staging_root: str | None = None
        self._held: dict[str, int] = {}  # staging path -> the descriptor holding its lock

    def __str__(self) -> str:
        return self.local_dir if self.local_dir is not None else str(self.remote)

    def check_connection(self) -> None:
        """Refuse an object store's connection id that Airflow does not know (before any download)."""
        if self.remote is not None:
            check_connection(store_conn_id(self.remote), str(self))

    def prepare(self, task_id: str) -> str:
        """Make sure the destination can take files; return the staging directory to download into.

        Local files are staged in the destination itself (a rename is then atomic); remote ones in a
        private temporary directory. Leftovers of an earlier, killed try of the same export are
        removed here (for object storage, with the uploads and staging prefixes it recorded), and
        only those: a staging entry whose lock a live download holds is another try's, running now.
        """
        if self.local_dir is not None:
            try:
                os.makedirs(self.local_dir, exist_ok=True)
            except OSError as err:
                raise HubSpotExportRequestError(
                    f"destination {self.local_dir!r} cannot be created ({err.strerror}): choose a writable "
                    "directory."
                )
            if not os.path.isdir(self.local_dir) or not os.access(self.local_dir, os.W_OK | os.X_OK):
                raise HubSpotExportRequestError(
                    f"destination {self.local_dir!r} is not a writable directory: fix its permissions or "
                    "choose another."
                )
            for pattern in (STAGING_SUFFIX, UNZIP_SUFFIX):
                for stale in Path(self.local_dir).glob(f"{STAGING_PREFIX}{task_id}-*{pattern}"):
                    _remove_if_abandoned(stale)  # a killed try's, not a live one's
            return self.local_dir
        self.check_connection()
        if not is_flat_store(self.remote.fs):  # e.g. SFTP: folders are real
            self.remote.mkdir(parents=True, exist_ok=True)
        fs = self.remote.fs
        for stale in Path(tempfile.gettempdir()).glob(f"{STAGING_PREFIX}{task_id}-*"):
            _remove_if_abandoned(stale, lambda folder: undo_journal(fs, str(folder / JOURNAL_NAME)))
        root, fd = _made_held(lambda: tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{task_id}-"))
        self._held[root] = fd
        self._staging_root = root
        return root

    @property
    def _journal(self) -> str | None:
        return None if self._staging_root is None else os.path.join(self._staging_root, JOURNAL_NAME)

    def _release(self, path: str) -> None:
        fd = self._held.pop(path, None)
        if fd is not None:
            os.close(fd)

    def cleanup(self) -> None:
        if self._staging_root is not None:
            shutil.rmtree(self._staging_root, ignore_errors=True)
            self._staging_root = None
        for path in list(self._held):
            self._release(path)

    def _target(self, parts: list[str]) -> Any:
        if self.local_dir is not None:
            return os.path.join(self.local_dir, *parts)
        target = self.remote
        for part in parts:
            target = target / part
        return target

    def exists(self, parts: list[str]) -> bool:
        target = self._target(parts)
        return os.path.exists(target) if self.local_dir is not None else target.exists()

    def land(self, staged: StagedFile, parts: list[str], *, overwrite: bool) -> dict[str, Any]:
        """Move a finished file to its final name in one step; return what the XCom reports."""
        target = self._target(parts)
        if not overwrite and self.exists(parts):
            os.remove(staged.path)
            raise HubSpotExportRequestError(
                f"{target} already exists and overwrite=False: remove it or pass overwrite=True."
            )
        if self.local_dir is not None:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.chmod(staged.path, 0o644)
            os.replace(staged.path, target)
            self._release(staged.path)
        else:
            try:
                put_whole(target.fs, staged.path, target.path, journal=self._journal)
            finally:
                os.remove(staged.path)
                self._release(staged.path)
        return {"path": str(target), "size": staged.size, "sha256": staged.sha256}

    def staged_name(self, task_id: str) -> str:
        """A new staging file, held (see ``_hold``) until it lands or the download ends."""
        assert self.local_dir is not None or self._staging_root is not None
        for gone in [p for p, fd in self._held.items() if not _still_at(fd, p)]:  # an earlier attempt's
            self._release(gone)

        def make() -> str:
            fd, path = tempfile.mkstemp(
                dir=self.local_dir or self._staging_root,
                prefix=f"{STAGING_PREFIX}{task_id}-",
                suffix=STAGING_SUFFIX,
            )
            os.close(fd)
            return path

        path, fd = _made_held(make)
        self._held[path] = fd
        return path

    def extract(
        self,
        archive: str,
        task_id: str,
        *,
        overwrite: bool,
        filename: str | None = None,
        checksum: str | None = None,
    ) -> list[dict[str, Any]]:
        """Land every member of a ZIP, or none: refuse the whole archive if any member would escape;
        extract all members into a staging folder (in the destination when it is local), checking
        each one's CRC, and only then move them to their final names. The folder is always removed.
        On object storage, which has no multi-key rename, ``put_all`` says how far "or none" goes."""
        with zipfile.ZipFile(archive) as zf:
            members = [i for i in zf.infolist() if not i.is_dir()]
            unsafe = [i.filename for i in members if member_parts(i.filename) is None or _is_symlink(i)]
            if unsafe:
                raise HubSpotExportError(
                    "Refused to extract the export's ZIP: these members would land outside the destination: "
                    + ", ".join(repr(n) for n in unsafe[:10])
                    + ". Nothing was extracted; download with unzip=False to inspect it."
                )
            if filename:
                targets = [[n] for n in renamed([i.filename.rsplit("/", 1)[-1] for i in members], filename)]
            else:
                targets = [member_parts(i.filename) or [] for i in members]
            if not overwrite:
                existing = [str(self._target(parts)) for parts in targets if self.exists(parts)]
                if existing:
                    raise HubSpotExportRequestError(
                        f"{', '.join(existing[:5])} already exist(s) and overwrite=False: remove them or pass "
                        "overwrite=True."
                    )
            staging, fd = _made_held(
                lambda: tempfile.mkdtemp(
                    dir=self.local_dir or self._staging_root,
                    prefix=f"{STAGING_PREFIX}{task_id}-",
                    suffix=UNZIP_SUFFIX,
                )
            )
            self._held[staging] = fd
            try:
                staged = []
                for n, info in enumerate(members):
                    path = os.path.join(staging, f"{n}{STAGING_SUFFIX}")
                    try:
                        with zf.open(info) as src, open(path, "wb") as dst:
                            size, digest = copy_member(
                                src, dst, checksum
                            )  # zipfile checks the CRC as it reads
                    except (zipfile.BadZipFile, EOFError, zlib.error) as err:
                        raise HubSpotExportError(
                            f"The export's ZIP is corrupt: member {info.filename!r}: {err}. Nothing was "
                            "extracted; download again to retry."
                        ) from None
                    staged.append(StagedFile(path, size, digest))
                if self.local_dir is not None:
                    return [
                        self.land(file, parts, overwrite=True)
                        for file, parts in zip(staged, targets, strict=True)
                    ]
                finals = [self._target(parts) for parts in targets]
                put_all(
                    self.remote.fs,
                    [(file.path, final.path) for file, final in zip(staged, finals, strict=True)],
                    self._target([os.path.basename(staging)]).path,
                    journal=self._journal,
                )
                return [
                    {"path": str(final), "size": file.size, "sha256": file.sha256}
                    for file, final in zip(staged, finals, strict=True)
                ]
            finally:
                shutil.rmtree(staging, ignore_errors=True)
                self._release(staging)
