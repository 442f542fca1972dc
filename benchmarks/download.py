"""Benchmark 2, download: a big export through ``HubSpotHook.download_export`` against ``curl -o``.

Why: the download is the one step whose cost grows with the data. It should run near the speed of
the plainest client there is (curl, on the same signed URL, from the same file host) and its
memory must not grow with the file: the hook streams to disk, then checks the length and the ZIP.

The sandbox (its own process) starts the export and writes its ZIP, of about the wanted size, at
the first status call, before anything is timed. Each download of the hook is a fresh process (``download_child``); curl's peak RSS
and CPU come from GNU time. Where ``perf`` can profile, one more (untimed) child of the largest size
runs under ``perf record`` to weigh the kernel's copies of the bytes in its first download against
the same download repeated in-process: a diagnostic for a miss, not a figure with a goal.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
import zipfile
from dataclasses import dataclass

from airflow_provider_hubexport.sandbox import Packaging
from airflow_provider_hubexport.sandbox.content import write_export
from benchmarks import procstat
from benchmarks.common import (
    EXPORT_REQUEST,
    MEASURED_CPU,
    MIB,
    SERVER_CPU,
    TOKEN,
    SandboxProcess,
    Section,
    Stats,
    child_env,
    met,
    on_one_core,
    one_core_possible,
    progress,
    ratio,
    run_json_child,
    show_ratio,
    start_exports,
    stats,
    status_path,
)

CURL = "/usr/bin/curl"
TIME = "/usr/bin/time"  # GNU time, for curl's peak RSS
MB = 1_000_000
# A contacts export of some width: ids, emails, names, dates, amounts (about 3.8 bytes of CSV per
# byte of ZIP at the sandbox's deflate level).
PROPERTIES = ["hs_object_id", "email", "firstname", "lastname", "company", "createdate", "amount"]
REQUEST = {**EXPORT_REQUEST, "objectProperties": PROPERTIES}
GOAL_TIME = 1.05  # ours / curl, seconds (issue 14's table)
GOAL_CPU_ONE_CORE = 1.3  # ours / curl, CPU seconds on one core (issue 29)
GOAL_RSS_GROWTH_MIB = 16
# Each timed download starts right after this much was written to a scratch file beside it and
# deleted (see procstat.warm_page_cache): on a VM that hands freed memory back to its host
# (page_reporting), a download fills its page cache at a third of its speed with memory freed
# seconds ago, and ours, importing Airflow first, and curl, starting at once, would not start alike.
WARM_MIB = 1536
# (name, on one core, checksum): ours by default, curl, and ours with the opt-in digest; each on
# both cores, then with it and curl pinned to one core (the sandbox on the other).
VARIANTS = [
    ("hook", False, None),
    ("curl", False, None),
    ("sha256", False, "sha256"),
    ("hook-1", True, None),
    ("curl-1", True, None),
    ("sha256-1", True, "sha256"),
    ("hook-1-cold", True, None),  # diagnostic: no warm-up (see WARM_MIB)
    ("curl-1-cold", True, None),
]


@dataclass
class Download:
    seconds: float
    size: int
    peak_rss: int
    sandbox_cpu: float
    cpu_s: float | None = None
    check_zip_s: float | None = None
    rss_before: int | None = None
    again_s: float | None = None  # the same download again in the same process (diagnostic)
    again_cpu_s: float | None = None
    # Where the CPU went: user (the Python loop, the hash) against system (the kernel: socket, page cache).
    user_s: float | None = None
    system_s: float | None = None
    again_user_s: float | None = None
    again_system_s: float | None = None

    @property
    def mb_s(self) -> float:
        return self.size / self.seconds / MB


def _status(api_url: str, task_id: str) -> dict[str, object]:
    request = urllib.request.Request(
        api_url + status_path(task_id), headers={"Authorization": f"Bearer {TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=600) as response:  # the first call writes the file
        return json.loads(response.read())


def _curl(
    sandbox: SandboxProcess,
    url: str,
    dest: str,
    expected: int,
    work: str,
    *,
    one_core: bool = False,
    warm: bool = True,
) -> Download:
    """``curl -o``, its peak RSS and CPU read by GNU time (``wait4`` on a child of ours would count
    the memory it had before exec, ours); ``taskset`` execs curl, so the figures are curl's."""
    rss_file = os.path.join(work, "curl-rss")
    timer = [TIME, "-f", "%M %U %S", "-o", rss_file] if os.path.exists(TIME) else []
    sandbox.pin(one_core)
    os.sync()  # no run pays for the previous one's writeback
    procstat.warm_page_cache(os.path.dirname(dest), WARM_MIB if warm else 0)
    cpu_before = sandbox.cpu_seconds()
    started = time.perf_counter()
    code = subprocess.call(
        [*timer, *on_one_core(one_core), CURL, "-sS", "--fail", "--max-time", "600", "-o", dest, url]
    )
    seconds = time.perf_counter() - started
    size = os.path.getsize(dest) if os.path.exists(dest) else 0
    if code != 0 or size != expected:
        raise RuntimeError(f"curl exited with {code} after {size} of {expected} bytes")
    os.remove(dest)
    peak, user, system = 0, None, None
    if timer:
        with open(rss_file) as fh:
            kib, user_text, system_text = fh.read().split()[-3:]
        peak, user, system = int(kib) * 1024, float(user_text), float(system_text)
    return Download(seconds, size, peak, sandbox.cpu_seconds() - cpu_before, user_s=user, system_s=system)


def _hook(
    sandbox: SandboxProcess,
    task_id: str,
    dest_dir: str,
    home: str,
    log_path: str,
    *,
    checksum: str | None = None,
    one_core: bool = False,
    again: bool = False,
    warm: bool = True,
) -> Download:
    extra = {"BENCH_CHECKSUM": checksum or "", "BENCH_WARM_MIB": str(WARM_MIB if warm else 0)}
    if again:
        extra["BENCH_AGAIN"] = "1"
    env = child_env(home, AIRFLOW_CONN_HUBSPOT_DEFAULT=sandbox.connection(), **extra)
    sandbox.pin(one_core)
    os.sync()  # no run pays for the previous one's writeback (the child times the download alone)
    cpu_before = sandbox.cpu_seconds()
    with open(log_path, "a") as log:
        r = run_json_child(
            ["-m", "benchmarks.download_child", task_id, dest_dir],
            env=env,
            timeout=900,
            log=log,
            prefix=on_one_core(one_core),
        )
    return Download(
        r["seconds"],
        r["bytes"],
        r["peak_rss"],
        sandbox.cpu_seconds() - cpu_before,
        r["cpu_s"],
        r["check_zip_s"],
        r["rss_before"],
        r.get("again_seconds"),
        r.get("again_cpu_s"),
        r["usage"]["user_s"],
        r["usage"]["system_s"],
        r.get("again_usage", {}).get("user_s"),
        r.get("again_usage", {}).get("system_s"),
    )


# The kernel's copies of a download's bytes: socket -> our buffer, our buffer -> page cache. Names
# vary by kernel version (copy_folio_from_iter_atomic, copy_page_from_iter_atomic, _copy_to_iter,
# copy_user_generic, rep_movs_alternative, ...).
KERNEL_COPY = re.compile(r"copy_\w*(iter|user)\w*|rep_movs\w*|_copy_to_iter")
PERF_HZ = 4000


@dataclass
class KernelCopies:
    """CPU seconds in the kernel's copy routines, from a ``perf`` profile of one download child."""

    first_s: float
    again_s: float
    first_total_s: float
    again_total_s: float


def _perf_usable() -> bool:
    """perf is there and may sample the kernel (root, or ``perf_event_paranoid`` <= 1): a profile
    without kernel samples would read as no copying at all."""
    perf = shutil.which("perf")
    if not perf:
        return False
    try:
        with open("/proc/sys/kernel/perf_event_paranoid") as fh:
            paranoid = int(fh.read())
    except (OSError, ValueError):
        return False
    if os.geteuid() != 0 and paranoid > 1:
        return False
    probe = subprocess.run([perf, "stat", "-e", "cpu-clock", "true"], capture_output=True)
    return probe.returncode == 0


def _kernel_copies(
    sandbox: SandboxProcess, task_id: str, dest_dir: str, home: str, work: str
) -> KernelCopies | None:
    """One more (untimed) download child under ``perf record``: how much of the first download's
    and of its repeat's CPU went to the kernel copying the same bytes. Equal work, so a difference
    is the memory those copies touch, not the code. None where perf cannot profile."""
    if not _perf_usable():
        return None
    data = os.path.join(work, "download-perf.data")
    env = child_env(home, AIRFLOW_CONN_HUBSPOT_DEFAULT=sandbox.connection(), BENCH_AGAIN="1")
    os.sync()
    with open(os.path.join(work, "download-perf.log"), "a") as log:
        try:  # a diagnostic: perf failing here must not cost the run its figures
            r = run_json_child(
                ["-m", "benchmarks.download_child", task_id, dest_dir],
                env=env,
                timeout=900,
                log=log,
                prefix=[
                    "perf",
                    "record",
                    "-q",
                    "-F",
                    str(PERF_HZ),
                    "-k",
                    "CLOCK_MONOTONIC",
                    "-o",
                    data,
                    "--",
                ],
            )
        except (RuntimeError, ValueError) as err:
            log.write(f"perf diagnostic skipped: {err}\n")
            r = {}
        script = (
            subprocess.run(
                ["perf", "script", "-i", data, "-F", "time,ip,sym"],
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
            if r
            else None
        )
    if os.path.exists(data):
        os.remove(data)
    windows = r.get("windows")
    if script is None or script.returncode != 0 or not windows:
        return None
    counts = [[0, 0], [0, 0]]  # [copy samples, all samples] for the first download, then the repeat
    for line in script.stdout.splitlines():
        stamp, _, symbol = line.strip().partition(":")
        try:
            t = float(stamp)
        except ValueError:
            continue
        for i, (start, end) in enumerate((windows[0:2], windows[2:4])):
            if start <= t <= end:
                counts[i][1] += 1
                counts[i][0] += bool(KERNEL_COPY.search(symbol))
    return KernelCopies(
        counts[0][0] / PERF_HZ, counts[1][0] / PERF_HZ, counts[0][1] / PERF_HZ, counts[1][1] / PERF_HZ
    )


def page_reporting() -> str | None:
    """Whether this (virtual) machine hands freed memory back to its host: virtio-balloon free page
    reporting (feature bit 5), in blocks of 2^order pages."""
    for device in glob.glob("/sys/bus/virtio/devices/*"):
        try:
            with open(os.path.join(device, "device")) as fh:
                balloon = fh.read().strip() == "0x0005"
            with open(os.path.join(device, "features")) as fh:
                features = fh.read().strip()
        except OSError:
            continue
        if balloon and len(features) > 5 and features[5] == "1":
            try:
                with open("/sys/module/page_reporting/parameters/page_reporting_order") as fh:
                    order = int(fh.read())
            except (OSError, ValueError):
                return "virtio-balloon free page reporting is on"
            return (
                f"virtio-balloon free page reporting is on (free blocks of {4 << order >> 10} MiB go back "
                "to the host about 2 s after they are freed)"
            )
    return None


def _median(values: list[float | None]) -> float:
    return stats([v for v in values if v is not None] or [0.0]).median


def _warm_note(
    again_s: Stats | None,
    curl_s: Stats,
    again: list[Download],
    curl: list[Download],
    kernel: KernelCopies | None,
) -> str:
    """What the second download in the same process says about the first one's time, and where
    each one's CPU went (user: the Python loop and the hash; system: the kernel)."""
    if again_s is None:
        return ""
    r_again = ratio(again_s, curl_s) or 0.0
    cpu_first = stats([d.cpu_s or 0.0 for d in again]).median
    cpu_again = stats([d.again_cpu_s or 0.0 for d in again]).median
    text = (
        f" The same download again in the same process, begun as the first one's file was deleted, took "
        f"{again_s.median:.2f} s ({show_ratio(r_again)} curl), with {cpu_again:.2f} s of CPU against the "
        f"first's {cpu_first:.2f} s: the code and the work are the same, the memory is not."
    )
    if any(d.system_s is not None for d in again):
        splits = [
            ("first", [d.user_s for d in again], [d.system_s for d in again]),
            ("again", [d.again_user_s for d in again], [d.again_system_s for d in again]),
        ]
        if any(d.system_s is not None for d in curl):
            splits.append(("curl", [d.user_s for d in curl], [d.system_s for d in curl]))
        text += (
            " Where the CPU went (user: the Python loop and the hash; system: the kernel receiving the "
            "socket and filling the page cache): "
            + "; ".join(
                f"{who}, user {_median(user):.2f} s, system {_median(system):.2f} s"
                for who, user, system in splits
            )
            + "."
        )
    if kernel is not None and kernel.again_s > 0:
        text += (
            f" A profile (perf, {PERF_HZ:,} Hz, one more run) puts {kernel.first_s:.2f} s of the first "
            f"download's {kernel.first_total_s:.2f} s of CPU in the kernel's copies of its bytes (socket to "
            f"buffer, buffer to page cache) and {kernel.again_s:.2f} s of the repeat's {kernel.again_total_s:.2f} s: "
            f"the same bytes copied {kernel.first_s / kernel.again_s:.1f}x slower the first time."
        )
    reporting = page_reporting()
    if reporting:
        text += (
            f" On this machine {reporting}: a download that starts seconds after the last big file was "
            "freed (ours, after importing Airflow) fills its page cache with memory the host must hand "
            "back, page by page; one that starts at once reuses what was just freed."
        )
    return text


def _rows_for(size: int, work: str) -> int:
    """Rows that make an export ZIP of about ``size`` bytes: the sandbox's own bytes per row, from a
    small export written here with the same code."""
    calibration = tempfile.mkdtemp(prefix="calibrate-", dir=work)
    rows = 200_000
    path = write_export(calibration, "c", "1", "CONTACT", PROPERTIES, "CSV", rows, Packaging())
    per_row = os.path.getsize(path) / rows
    shutil.rmtree(calibration)
    return max(1, round(size / per_row))


def run(sizes: list[tuple[int, int]], work: str) -> Section:
    """``sizes``: (bytes, repeats) pairs; the RSS goal compares the smallest and the largest."""
    section = Section(
        "2. Download",
        "A ZIP export from the sandbox's file host (its own process, `sendfile`) to a local directory: "
        "`HubSpotHook.download_export(task_id, dir)` (one status call for a fresh signed URL, stream in "
        "1 MiB chunks, length check, ZIP check (`landing.check_zip`), rename; no digest unless "
        '`checksum="sha256"`) in a fresh process per run, '
        "against `curl -sS -o` of the same signed URL (curl timed from outside, its fork and exec of GNU "
        "`time` and `taskset` included; ours from inside, its status call included), each with both cores, "
        "then with it (or curl) pinned "
        f"to CPU {MEASURED_CPU} by `taskset` and the sandbox to CPU {SERVER_CPU}: the one-core figures are "
        "what a task gets on a worker that runs many. Variants interleaved; each timed download (curl's "
        f"and ours, after its imports) begins right after {WARM_MIB:,} MiB was written to a scratch file beside "
        "it and deleted, so that both fill their page cache with memory freed just now (see the note on "
        "this VM's memory below). "
        "The sandbox writes the export itself, as for any "
        "export (CSV members of 1,000,000 rows, deflated), when "
        "its status is first asked for, before anything is timed. "
        "MB = 10^6 bytes. Cells: median (min-max); ratio = ours / curl, of the medians.",
    )
    dest_dir = tempfile.mkdtemp(prefix="landed-", dir=work)
    log_path = f"{work}/download-children.log"
    runs: dict[tuple[int, str], list[Download]] = {}
    zips: dict[int, tuple[int, int, int]] = {}
    kernel: dict[int, KernelCopies | None] = {}
    written: list[str] = []
    for size, repeats in sizes:
        rows = _rows_for(size, work)
        workdir = tempfile.mkdtemp(prefix="sandbox-files-", dir=work)
        with SandboxProcess(
            "--workdir", workdir, "--rows", str(rows), "--pending-seconds", "0", "--processing-seconds", "0",
            "--url-ttl", "3600", log_dir=tempfile.mkdtemp(prefix="sandbox-", dir=work),
        ) as sandbox:  # fmt: skip
            (task_id,) = start_exports(sandbox.url, 1, request=REQUEST)
            progress(f"download: the sandbox writes a {size / MIB:,.0f} MiB export ({rows:,} rows)")
            t = time.monotonic()
            url = str(_status(sandbox.url, task_id)["result"])  # the first status call writes the file
            seconds = time.monotonic() - t
            (path,) = glob.glob(os.path.join(workdir, task_id, "*.zip"))
            with zipfile.ZipFile(path) as zf:
                infos = zf.infolist()
            zip_size = os.path.getsize(path)
            zips[size] = (zip_size, len(infos), sum(i.file_size for i in infos))
            written.append(
                f"{zip_size / MB:,.0f} MB ({zips[size][2] / MB:,.0f} MB of CSV) in {seconds:.1f} s: "
                f"{zip_size / MB / seconds:,.0f} MB/s of ZIP"
            )
            progress(f"download: {written[-1]}")
            curl_dest = os.path.join(dest_dir, "curl.zip")
            try:
                # Untimed: the first download after the export was written runs at about half speed,
                # whoever makes it (seen with curl and a bare http.client loop alike: the kernel
                # finding pages for a new GB of file), so neither side gets that run.
                _curl(sandbox, url, curl_dest, zip_size, work)
                variants = [v for v in VARIANTS if not v[1] or one_core_possible()]
                for rep in range(repeats):
                    progress(f"download: {size / MIB:,.0f} MiB, run {rep + 1} of {repeats}")
                    home = tempfile.mkdtemp(prefix="airflow-home-", dir=work)
                    shift = rep % len(variants)
                    for who, one_core, checksum in variants[shift:] + variants[:shift]:  # none always first
                        runs.setdefault((size, who), []).append(
                            _curl(
                                sandbox,
                                url,
                                curl_dest,
                                zip_size,
                                work,
                                one_core=one_core,
                                warm=not who.endswith("-cold"),
                            )
                            if who.startswith("curl")
                            else _hook(
                                sandbox,
                                task_id,
                                dest_dir,
                                home,
                                log_path,
                                checksum=checksum,
                                one_core=one_core,
                                again=who == "hook",
                                warm=not who.endswith("-cold"),
                            )
                        )
                sandbox.pin(False)
                if size == sizes[-1][0]:
                    progress(f"download: {size / MIB:,.0f} MiB once more under perf (diagnostic, untimed)")
                    kernel[size] = _kernel_copies(sandbox, task_id, dest_dir, home, work)
            finally:
                shutil.rmtree(workdir)
    _tables(section, sizes, runs, zips, kernel)
    if not one_core_possible():
        section.goals.append(
            ("download on one pinned core", False, "not measured: needs two CPUs and taskset")
        )
    reporting = page_reporting()
    section.notes.append(
        f"This VM's memory: {reporting or 'no free page reporting found'}. Memory freed more than ~2 s ago "
        "then costs a fault on the host at its first touch, whoever touches it: a download that fills "
        "1 GiB of page cache with it pays for that, by how long ago the last big file was freed rather "
        "than by its code. Ours imports Airflow (~120 MiB, seconds) right before downloading and so "
        "finds less recently freed memory than curl, which starts at once. The "
        f"{WARM_MIB:,} MiB scratch file written and deleted right before each timed download makes the "
        "start alike for both (anonymous memory touched and freed instead did not: the page cache kept "
        "coming from returned memory); the rows 'without the warm-up' show the difference it makes here. "
        "A bare-metal machine, or a VM without the balloon, has no such effect."
        if reporting
        else f"Each timed download began right after a {WARM_MIB:,} MiB scratch file was written and deleted (no effect "
        "expected on a machine without free page reporting)."
    )
    section.notes.append(
        "The sandbox wrote each export through its own path (`sandbox/content.py`, `sandbox/zipping.py`: "
        "rows rendered a block at a time, deflated at level 1 on a thread per core), timed from the "
        "first status call: " + "; ".join(written) + ". The files are deleted afterwards."
    )
    return section


def _tables(
    section: Section,
    sizes: list[tuple[int, int]],
    runs: dict[tuple[int, str], list[Download]],
    zips: dict[int, tuple[int, int, int]],
    kernel: dict[int, KernelCopies | None],
) -> None:
    header = ["figure", "runs", "ours (download_export)", "curl -o", "ours / curl", "goal", "met"]
    rows = []

    def add(
        label: str, ours: Stats, curl: Stats | None, n: str, digits: int = 1, goal: str = "", ok=None
    ) -> None:
        rows.append(
            [
                label,
                n,
                ours.show(digits),
                curl.show(digits) if curl else "",
                show_ratio(ratio(ours, curl)) if curl else "",
                goal,
                met(ok) if goal else "",
            ]
        )

    def cpu_of(downloads: list[Download]) -> Stats:
        return stats([d.cpu_s or 0.0 for d in downloads])

    def curl_cpu(downloads: list[Download]) -> Stats | None:
        known = [(d.user_s or 0.0) + (d.system_s or 0.0) for d in downloads if d.user_s is not None]
        return stats(known) if known else None

    for size, repeats in sizes:
        zip_size, members, csv_bytes = zips[size]
        mib = f"{size / MIB:,.0f} MiB"
        n = str(repeats)
        rows.append(
            [f"**{mib}** ({zip_size / MB:,.0f} MB ZIP, {members} members, {csv_bytes / MB:,.0f} MB CSV)"]
            + [""] * 6
        )
        for suffix, cores in (("", "both cores"), ("-1", "one core")):
            hook, curl = runs.get((size, "hook" + suffix)), runs.get((size, "curl" + suffix))
            if not hook or not curl:
                continue
            ours_tp, curl_tp = stats([d.mb_s for d in hook]), stats([d.mb_s for d in curl])
            add(f"throughput MB/s, {cores}", ours_tp, curl_tp, n)
            ours_s, curl_s = stats([d.seconds for d in hook]), stats([d.seconds for d in curl])
            r_time = ratio(ours_s, curl_s)
            time_ok = r_time is not None and r_time <= GOAL_TIME
            add(f"  seconds, {cores}", ours_s, curl_s, n, 2, goal=f"<= {GOAL_TIME}x curl", ok=time_ok)
            why = show_ratio(r_time)
            cold, cold_curl = runs.get((size, "hook-1-cold")), runs.get((size, "curl-1-cold"))
            if suffix and cold and cold_curl:
                cold_ratio = ratio(stats([d.seconds for d in cold]), stats([d.seconds for d in cold_curl]))
                why += f" (without the warm-up: {show_ratio(cold_ratio)})"
            section.goals.append((f"download time, {mib}, {cores}: <= {GOAL_TIME}x curl", time_ok, why))
            ours_cpu, c_cpu = cpu_of(hook), curl_cpu(curl)
            cpu_ok = True
            r_cpu = ratio(ours_cpu, c_cpu) if c_cpu else None
            if suffix and size == sizes[-1][0]:  # per core a task gets; at the size CPU times resolve
                cpu_ok = r_cpu is not None and r_cpu <= GOAL_CPU_ONE_CORE
                add(
                    f"  CPU, user + system (s), {cores}",
                    ours_cpu,
                    c_cpu,
                    n,
                    2,
                    goal=f"<= {GOAL_CPU_ONE_CORE}x curl",
                    ok=cpu_ok,
                )
                section.goals.append(
                    (
                        f"download CPU, {mib}, {cores}: <= {GOAL_CPU_ONE_CORE}x curl",
                        cpu_ok,
                        show_ratio(r_cpu),
                    )
                )
            else:
                add(f"  CPU, user + system (s), {cores}", ours_cpu, c_cpu, n, 2)
            checked = runs.get((size, "sha256" + suffix))
            if checked:
                add(
                    f'  seconds with `checksum="sha256"` (opt-in), {cores}',
                    stats([d.seconds for d in checked]),
                    curl_s,
                    n,
                    2,
                )
                add(f'  CPU with `checksum="sha256"` (s), {cores}', cpu_of(checked), c_cpu, n, 2)
            checks = [d.check_zip_s for d in hook if d.check_zip_s is not None]
            if checks:
                add(f"  of which `landing.check_zip` (s), {cores}", stats(checks), None, n, 2)
            add(
                f"  peak RSS (MiB), {cores}",
                stats([d.peak_rss / MIB for d in hook]),
                stats([d.peak_rss / MIB for d in curl]),
                n,
            )
            add(
                f"  peak RSS above the RSS before the download (MiB), {cores}",
                stats([(d.peak_rss - (d.rss_before or 0)) / MIB for d in hook]),
                None,
                n,
            )
            add(
                f"  sandbox CPU per download (s), {cores}",
                stats([d.sandbox_cpu for d in hook]),
                stats([d.sandbox_cpu for d in curl]),
                n,
                2,
            )
            if not time_ok or not cpu_ok:
                again = [d for d in hook if d.again_s is not None]
                again_s = stats([d.again_s or 0.0 for d in again]) if again else None
                section.misses.append(
                    f"{mib}, {cores}: ours took {show_ratio(r_time)} curl's time ({ours_tp.median:,.0f} against "
                    f"{curl_tp.median:,.0f} MB/s) and {show_ratio(r_cpu)} its CPU; `landing.check_zip` took "
                    f"{stats(checks).median if checks else 0.0:.2f} s."
                    + _warm_note(again_s, curl_s, again, curl, kernel.get(size))
                )
        hook = runs.get((size, "hook"), [])
        again = [d for d in hook if d.again_s is not None]
        if again:
            add(
                "  seconds, the same download again in the same process, begun as the first one's file "
                "was deleted (diagnostic), both cores",
                stats([d.again_s or 0.0 for d in again]),
                stats([d.seconds for d in runs[(size, "curl")]]),
                n,
                2,
            )
        cold, cold_curl = runs.get((size, "hook-1-cold")), runs.get((size, "curl-1-cold"))
        if cold and cold_curl:
            add(
                "  seconds without the warm-up (diagnostic, see the note on this VM's memory), one core",
                stats([d.seconds for d in cold]),
                stats([d.seconds for d in cold_curl]),
                n,
                2,
            )
            add(
                "  CPU without the warm-up (s, diagnostic), one core",
                cpu_of(cold),
                curl_cpu(cold_curl),
                n,
                2,
            )
        copies = kernel.get(size)
        if copies is not None and copies.first_s + copies.again_s > 0:
            rows.append(
                [
                    f"  kernel copy CPU (s), first download / the same again, perf at {PERF_HZ:,} Hz "
                    "(diagnostic), both cores",
                    "1",
                    f"{copies.first_s:.2f} / {copies.again_s:.2f}",
                    "",
                    "",
                    "",
                    "",
                ]
            )
    small, big = sizes[0][0], sizes[-1][0]
    for suffix, cores in (("", "both cores"), ("-1", "one core")):
        if (big, "hook" + suffix) not in runs:
            continue
        growth = (
            stats([d.peak_rss / MIB for d in runs[(big, "hook" + suffix)]]).median
            - stats([d.peak_rss / MIB for d in runs[(small, "hook" + suffix)]]).median
        )
        growth = round(growth, 1) + 0.0  # no "-0.0"
        ok = growth < GOAL_RSS_GROWTH_MIB
        span = f"{small / MIB:,.0f} MiB -> {big / MIB:,.0f} MiB"
        if not ok:
            section.misses.append(f"Download peak RSS grew by {growth:.1f} MiB from {span}, {cores}.")
        rows.append(
            [
                f"peak RSS growth {span} (MiB, medians), {cores}",
                "",
                f"{growth:.1f}",
                "",
                "",
                f"< {GOAL_RSS_GROWTH_MIB} MiB",
                met(ok),
            ]
        )
        section.goals.append(
            (
                f"download peak RSS growth {span}, {cores}: < {GOAL_RSS_GROWTH_MIB} MiB",
                ok,
                f"{growth:.1f} MiB",
            )
        )
    section.add_table(header, rows)
