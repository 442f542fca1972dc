"""Two downloads of one export into one local directory, and the leftovers of one that died.

Both stage beside the final name (``.hubspot-<id>-*.part``, ``.hubspot-<id>-*.unzip``) and each
removes the leftovers of a killed try when it starts. A staging file or folder is removed only when
no live download holds it: download 1 is paused mid-transfer (SIGSTOP, or a gate in its thread), the
second one runs through, and download 1 must still find its staging when it goes on. A dead owner
releases its lock, so what it left is removed by the next try.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import zipfile

import pytest

from airflow_provider_hubexport.sandbox import Packaging

CHILD = textwrap.dedent(
    """
    import sys
    from airflow_provider_hubexport.hooks.hubspot import HubSpotHook
    HubSpotHook().download_export(sys.argv[1], sys.argv[2], filename="contacts")
    """
)
PLAIN_CSV = Packaging(zip_over_bytes=10**12, rows_per_file=10**9)


def _sha_file(path):
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def _child(task_id, destination):
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, task_id, str(destination)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _staged(directory, task_id):
    return [p for p in directory.glob(f".hubspot-{task_id}-*.part") if p.exists() and p.stat().st_size > 0]


def _until(condition, what, proc=None, seconds=120):
    """Bounded: wait for ``condition`` (a loaded machine only makes it slower), failing loudly."""
    deadline = time.monotonic() + seconds
    while not condition():
        if proc is not None and proc.poll() is not None:
            pytest.fail(
                f"the child ended ({proc.returncode}) before {what}: {proc.stderr.read().decode()[-2000:]}"
            )
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {seconds} s")
        time.sleep(0.01)


def _stop(proc):
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGCONT)
        proc.kill()
    proc.wait(30)


def test_a_second_download_into_the_same_directory_leaves_the_first_ones_staging_file(
    sandbox, hook, complete, tmp_path
):
    sandbox.packaging = PLAIN_CSV
    # about 3 MB at 1 MB/s: the client writes 1 MiB at a time, so the first write comes after 1 s
    task_id = complete(row_count=60_000, download_rate=1_000_000)
    served = sandbox.served_file(task_id)
    size = os.path.getsize(served)
    first = _child(task_id, tmp_path)
    try:
        _until(lambda: _staged(tmp_path, task_id), "byte of download 1 staged", first)
        os.kill(first.pid, signal.SIGSTOP)  # paused mid-transfer, its staging file held
        (staging,) = _staged(tmp_path, task_id)
        assert staging.stat().st_size < size, "download 1 finished before it was paused: slow it further"
        sandbox.exports[task_id].plan.download_rate = None  # download 2 at full speed
        (second,) = hook.download_export(task_id, tmp_path, filename="contacts", checksum="sha256")
        assert staging.exists(), "download 2 removed the staging file of download 1, which is alive"
        assert second["sha256"] == _sha_file(served) == _sha_file(second["path"])
        os.kill(first.pid, signal.SIGCONT)
        assert first.wait(120) == 0, first.stderr.read().decode()[-2000:]
    finally:
        _stop(first)
    assert sorted(os.listdir(tmp_path)) == ["contacts.csv"]  # both landed at one name, no staging left
    assert _sha_file(tmp_path / "contacts.csv") == _sha_file(served)


def test_a_second_unzip_into_the_same_directory_leaves_the_first_ones_staging_folder(
    sandbox, hook, complete, tmp_path, monkeypatch
):
    from airflow_provider_hubexport import landing
    from airflow_provider_hubexport.hooks.hubspot import HubSpotHook

    sandbox.packaging = Packaging(zip_over_bytes=10_000, rows_per_file=400)
    task_id = complete(row_count=1200)
    with zipfile.ZipFile(sandbox.served_file(task_id)) as zf:
        expected = sorted(hashlib.sha256(zf.read(n)).hexdigest() for n in zf.namelist())
    paused, resume = threading.Event(), threading.Event()
    copy_member = landing.copy_member

    def gated(src, dst, checksum=None):  # download 1 stops after extracting its first member
        copied = copy_member(src, dst, checksum)
        if threading.current_thread().name == "download-1" and not paused.is_set():
            paused.set()
            if not resume.wait(120):
                raise AssertionError("download 1 was never resumed")
        return copied

    monkeypatch.setattr(landing, "copy_member", gated)
    results: dict[str, object] = {}

    def first():
        other = HubSpotHook()
        try:
            results["first"] = other.download_export(
                task_id, tmp_path, unzip=True, filename="contacts", checksum="sha256"
            )
        except BaseException as err:  # reported below, with the thread's traceback
            results["first"] = err
        finally:
            other.close()

    thread = threading.Thread(target=first, name="download-1", daemon=True)
    thread.start()
    try:
        _until(lambda: paused.is_set() or not thread.is_alive(), "member extracted by download 1")
        assert paused.is_set(), f"download 1 ended before its pause: {results.get('first')!r}"
        (folder,) = tmp_path.glob(f".hubspot-{task_id}-*.unzip")
        second = hook.download_export(task_id, tmp_path, unzip=True, filename="contacts", checksum="sha256")
        assert folder.is_dir(), "download 2 removed the staging folder of download 1, which is alive"
        assert sorted(item["sha256"] for item in second) == expected
    finally:
        resume.set()
        thread.join(120)
    assert not thread.is_alive(), "download 1 did not finish"
    first_landed = results["first"]
    assert isinstance(first_landed, list), f"download 1 failed: {first_landed!r}"
    assert sorted(item["sha256"] for item in first_landed) == expected
    assert sorted(os.listdir(tmp_path)) == ["contacts-1.csv", "contacts-2.csv", "contacts-3.csv"]
    assert sorted(_sha_file(tmp_path / n) for n in os.listdir(tmp_path)) == expected


def test_what_a_dead_download_left_is_removed_by_the_next(sandbox, hook, complete, tmp_path):
    sandbox.packaging = PLAIN_CSV
    task_id = complete(row_count=60_000, download_rate=1_000_000)
    served = sandbox.served_file(task_id)
    killed = _child(task_id, tmp_path)
    try:
        _until(lambda: _staged(tmp_path, task_id), "byte of the download staged", killed)
    finally:
        _stop(killed)  # SIGKILL: nothing runs in it, its lock goes with it
    assert _staged(tmp_path, task_id), "the killed download left no staging file to remove"
    (tmp_path / f".hubspot-{task_id}-orphan.part").write_bytes(b"half")  # no owner at all
    (tmp_path / f".hubspot-{task_id}-orphan.unzip").mkdir()
    (tmp_path / f".hubspot-{task_id}-orphan.unzip" / "0.part").write_bytes(b"half")
    (tmp_path / ".hubspot-999-other.part").write_bytes(b"another export's")  # not this export's
    sandbox.exports[task_id].plan.download_rate = None
    (landed,) = hook.download_export(task_id, tmp_path, filename="contacts")
    assert _sha_file(landed["path"]) == _sha_file(served)
    assert sorted(os.listdir(tmp_path)) == [".hubspot-999-other.part", "contacts.csv"]
