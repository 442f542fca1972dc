"""Benchmark 1, triggerer density: N concurrent waits for exports in one event loop.

Why: a deferrable sensor is only worth it if a triggerer can hold thousands of waits cheaply. Each
measurement is a fresh process (``density_child``) holding N waits on exports that the sandbox
(its own process) completes a few seconds after they start, polled every second. Our
``HubSpotExportTrigger`` runs beside two anchors in the same run: a bare aiohttp loop over one
shared session (the floor: what any waiter must at least cost) and the HTTP provider's
``HttpEventTrigger`` polling the same status endpoint.

Bounded: every child has a deadline; an implementation that misses it is measured once per N (its
figures then cover the waits it finished) and, when it is ours, a diagnostic variant is added that
shows what the trigger costs without the slow part we found (see ``density_child``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any

from benchmarks.common import (
    MEASURED_CPU,
    MIB,
    PYTHON,
    ROOT,
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
    read_line,
    show_ratio,
    start_exports,
    stats,
    stop_process,
)

PROCESSING_POLLS = 5  # each export answers PROCESSING five times, then COMPLETE
POLL_INTERVAL = 1.0
DUE_AFTER = (PROCESSING_POLLS + 1) * POLL_INTERVAL  # when a wait's event is due, from its start
GOAL_RATIO = 1.5  # kept for the RSS figure; the others have their own (issue 14's table)
NAMES = {
    "ours": "HubSpotExportTrigger",
    "floor": "floor (bare aiohttp)",
    "http": "HttpEventTrigger",
    "ours-cache": "ours, secrets cache on",
    "ours-file": "ours, logs to a file",
    "floor-airflow": "floor, in a process with ours' imports (diagnostic)",
    "ours-1": "HubSpotExportTrigger, one core",
    "floor-airflow-1": "floor with ours' imports, one core",
    "floor-1": "floor (bare aiohttp), one core",
}
# Measured again with the waiting process pinned to one core and the sandbox to the other: what a
# wait costs on a triggerer that runs many, against the floor a trigger in a real triggerer can
# reach (a process holding Airflow's imports, whose collections walk that heap whatever runs).
ONE_CORE = ("ours-1", "floor-airflow-1", "floor-1")
ONE_CORE_ANCHOR = "floor-airflow-1"
# Run beside ours in every repeat, each changing one condition: Airflow's secrets cache
# (``[secrets] use_cache``, off by default) on; the process's log output (Airflow's console logging,
# to stderr) written to a file instead of read from a pipe by the parent (as a container runtime or a
# supervisor reads it). A diagnostic: the floor's own loop in a process that has made ours' imports
# (Airflow's among them), which tells what of a gap is the process's heap (Python's full collections
# walk all of it: 0.15-0.2 s with Airflow imported, 0.02 s without) rather than our code.
VARIANTS = {
    "ours-cache": {"AIRFLOW__SECRETS__USE_CACHE": "True"},
    "ours-file": {},
    "floor-airflow": {},
}
LOGS_TO_FILE = ("ours-file",)


def child_timeout(n: int) -> float:
    """A healthy waiter finishes within a few seconds of its event's due time; this bounds an
    unhealthy one."""
    return DUE_AFTER + 10 + n / 125


@dataclass
class Run:
    """One child's figures plus what the sandbox spent meanwhile."""

    child: dict[str, Any]
    sandbox_cpu: float
    start_s: float  # time to start the N exports (before the waits; in no figure)

    @property
    def finished(self) -> bool:
        return self.child["ok"] == self.child["n"]

    def figure(self, name: str) -> float | None:
        c = self.child
        if name == "rss_per_waiter_kib":
            return (c["peak_rss"] - c["rss_before"]) / c["n"] / 1024
        if name == "peak_rss_mib":
            return c["peak_rss"] / MIB
        if name == "sandbox_cpu_s":
            return self.sandbox_cpu
        if name == "gc_full":
            return c["gc2"]["count"]
        if name == "gc_s":
            return sum(c[f"gc{g}"]["total_s"] for g in (0, 1, 2))
        if name == "full_gc_ms":
            return c["full_gc_s"] * 1000
        return c[name]


FIGURES = [
    # key, label, digits, goal: the most ours may be, as a multiple of the floor (None: no goal)
    ("cpu_s", "CPU of the waiting process (s)", 2, 1.3),
    ("rss_per_waiter_kib", "RSS per waiter (KiB)", 1, 1.5),
    ("peak_rss_mib", "peak RSS (MiB)", 1, None),
    ("wall_s", "wall time (s)", 2, 1.2),
    ("lateness_p50", "median lateness of the event (s)", 2, None),
    ("lateness_p99", "p99 lateness of the event (s)", 2, 1.5),
    ("gc_full", "full GC collections during the waits", 0, None),
    ("full_gc_ms", "one full GC collection, before the waits (ms)", 0, None),
    ("gc_s", "time in the collector during the waits, all generations (s)", 2, None),
    ("stolen_s", "CPU time the host took from this VM meanwhile (s)", 2, None),
    ("sandbox_cpu_s", "sandbox CPU meanwhile (s)", 2, None),
]


# Rows that say what the run met (the collector's work, the host's theft), shown without ratios.
CONDITIONS = ("gc_full", "full_gc_ms", "gc_s", "stolen_s")


def measure(sandbox: SandboxProcess, impl: str, n: int, home: str, log_path: str) -> Run:
    """One fresh child: import, start N exports, hand over their ids, wait for its figures."""
    http_conn = {"conn_type": "http", "host": sandbox.url, "extra": {"Authorization": f"Bearer {TOKEN}"}}
    env = child_env(
        home,
        AIRFLOW_CONN_HUBSPOT_DEFAULT=sandbox.connection(retry_max_attempts=6),
        AIRFLOW_CONN_HUBSPOT_HTTP=json.dumps(http_conn),
        **VARIANTS.get(impl, {}),
    )
    timeout = child_timeout(n)
    complete_after = DUE_AFTER
    one_core = impl in ONE_CORE
    sandbox.pin(one_core)
    with open(log_path, "a") as log:
        log.write(f"\n=== {impl} N={n}\n")
        log.flush()
        proc = subprocess.Popen(
            [*on_one_core(one_core), PYTHON, "-m", "benchmarks.density_child", impl.removesuffix("-1")]
            + ["--complete-after", str(complete_after), "--timeout", str(timeout)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log if impl in LOGS_TO_FILE else subprocess.PIPE,
            text=True,
        )
        drain = None
        if proc.stderr is not None:  # read as it comes, into the same log, on a thread of ours
            drain = threading.Thread(target=shutil.copyfileobj, args=(proc.stderr, log), daemon=True)
            drain.start()
        try:
            if read_line(proc, 120) != "ready":
                raise RuntimeError(f"density child {impl} did not get ready; see {log_path}")
            t = time.monotonic()
            ids = start_exports(sandbox.url, n)
            start_s = time.monotonic() - t
            cpu_before = sandbox.cpu_seconds()
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(ids) + "\n")
            proc.stdin.flush()
            child = json.loads(read_line(proc, timeout + 120))
            sandbox_cpu = sandbox.cpu_seconds() - cpu_before
            proc.wait(60)
        finally:
            stop_process(proc)
            if drain is not None:
                drain.join(30)
    run = Run(child, sandbox_cpu, start_s)
    if not run.finished:
        progress(f"  {NAMES[impl]} N={n}: {child['ok']} of {n} waits finished within {timeout:.0f} s")
    return run


def run(sizes: list[tuple[int, int]], work: str) -> Section:
    """``sizes``: (N, repeats) pairs. The implementations alternate within each repeat."""
    section = Section(
        "1. Triggerer density",
        "N concurrent waits in one event loop, started evenly over the first second (as deferrals reach "
        "a triggerer), each on its own export that the sandbox (its own process, on the other core) answers "
        f"PROCESSING {PROCESSING_POLLS} times and then COMPLETE, polled every 1 s, under a deployment's "
        "defaults: Airflow's logging as it sets itself up (to the process's stderr, which the parent reads "
        "from a pipe), the "
        "connection from an `AIRFLOW_CONN_HUBSPOT_DEFAULT` environment variable, no secrets cache (one "
        "column of ours turns Airflow's `[secrets] use_cache` on, one sends stderr to a file). Ours is "
        '`HubSpotExportTrigger(poll_interval=1, backoff_factor=1.0, max_poll_interval=1, last_status="PROCESSING").run()` '
        "(a deferring sensor hands over the status its check saw, and the trigger logs only changes from it: "
        "one line per wait here, COMPLETE), each run to its end as Airflow's triggerer runs a trigger, in a "
        "process that has read the connection once before (as a triggerer that ran a trigger has imported "
        "what that takes; the waits still read it, once per event loop); the floor is a bare aiohttp loop over one shared `ClientSession` "
        "(pool limit 100, as ours); `HttpEventTrigger` is the HTTP provider's polling trigger with a "
        "response check on the JSON status and an `http` connection carrying the Authorization header. "
        "A diagnostic column runs the floor's loop in a process that has made ours' imports (Airflow's "
        "among them): Python's full GC collections walk the whole heap, which Airflow makes several times "
        "larger, and a gap that this column shares is the process's, not the trigger's. "
        "Then ours, the floor with ours' imports and the bare floor again, each pinned to one core by "
        f"`taskset` (CPU {MEASURED_CPU}) with the sandbox on the other (CPU {SERVER_CPU}): what a wait costs "
        "on a triggerer that runs many, against the floor a trigger in a real triggerer can reach (the "
        "one-core tables, below the others). "
        "A fresh process per measurement. Cells: median (min-max) over the runs; ratio = ours / anchor, "
        "of the medians.",
    )
    log_path = f"{work}/density-children.log"
    results: dict[tuple[int, str], list[Run]] = {}
    for n, repeats in sizes:
        impls = ["ours", "floor", "http", *VARIANTS, *(ONE_CORE if one_core_possible() else ())]
        with SandboxProcess(
            "--pending-polls", "0", "--processing-polls", str(PROCESSING_POLLS),
            "--rows", "1", log_dir=tempfile.mkdtemp(prefix="sandbox-", dir=work),
        ) as sandbox:  # fmt: skip
            start_exports(sandbox.url, 200)  # warm the sandbox up
            for rep in range(repeats):
                shift = rep % len(impls)
                for impl in impls[shift:] + impls[:shift]:  # none always first, or always after another
                    runs = results.setdefault((n, impl), [])
                    if runs and not runs[0].finished:
                        continue  # missed its deadline once: measured once
                    progress(f"density: {NAMES[impl]}, N={n:,}, run {rep + 1} of {repeats}")
                    home = tempfile.mkdtemp(prefix="airflow-home-", dir=work)
                    runs.append(measure(sandbox, impl, n, home, log_path))
    for n, repeats in sizes:
        _table(section, n, repeats, results)
    for n, _ in sizes:
        if (n, "ours-1") in results:
            _one_core_table(section, n, results)
    if not one_core_possible():
        section.goals.append(("waits on one pinned core", False, "not measured: needs two CPUs and taskset"))
    _notes(section, sizes, results, log_path)
    return section


def _figure(runs: list[Run], key: str) -> Stats | None:
    values = [v for v in (r.figure(key) for r in runs) if v is not None]
    return stats(values) if values else None


def _finished(runs: list[Run]) -> str:
    done = sum(r.child["ok"] for r in runs)
    total = sum(r.child["n"] for r in runs)
    text = f"{done:,} of {total:,}"
    if done < total:
        text += f" (deadline {child_timeout(runs[0].child['n']):.0f} s)"
    return text


def _table(section: Section, n: int, repeats: int, results: dict[tuple[int, str], list[Run]]) -> None:
    impls = [i for i in ("ours", "floor", "http", *VARIANTS) if (n, i) in results]
    extras = [i for i in VARIANTS if i in impls]
    header = [f"N = {n:,}", "ours", "floor", "ours / floor", "HttpEventTrigger", "ours / HttpEventTrigger"]
    for extra in extras:
        header += [NAMES[extra], f"ours / {extra}" if extra.startswith("floor") else f"{extra} / floor"]
    header += ["goal: ours / floor", "met"]
    runs = {impl: results[(n, impl)] for impl in impls}
    rows = [
        ["runs"] + [str(len(runs["ours"])), str(len(runs["floor"])), "", str(len(runs["http"])), ""]
        + [c for e in extras for c in (str(len(runs[e])), "")] + ["", ""],
        ["waits finished"] + [_finished(runs["ours"]), _finished(runs["floor"]), "", _finished(runs["http"]), ""]
        + [c for e in extras for c in (_finished(runs[e]), "")] + ["", ""],
    ]  # fmt: skip
    ours_done = all(r.finished for r in runs["ours"])
    missed: list[str] = []
    for key, label, digits, goal in FIGURES:
        cells = {impl: _figure(runs[impl], key) for impl in impls}
        ours, floor, http = cells["ours"], cells["floor"], cells["http"]
        r_floor = ratio(ours, floor) if ours and floor else None
        row = [
            label,
            ours.show(digits) if ours else "n/a",
            floor.show(digits) if floor else "n/a",
            show_ratio(r_floor),
            http.show(digits) if http else "n/a",
            show_ratio(ratio(ours, http) if ours and http else None),
        ]
        for extra in extras:
            d = cells[extra]
            vs = (ours, d) if extra.startswith("floor") else (d, floor)  # a floor variant is an anchor
            row += [d.show(digits) if d else "n/a", show_ratio(ratio(*vs) if all(vs) else None)]
        if key in CONDITIONS:  # what the run met, not what the code costs: no ratios
            row = [c if i in (0, 1, 2, 4) or (i > 5 and i % 2 == 0) else "" for i, c in enumerate(row)]
        ok = goal is not None and ours_done and r_floor is not None and r_floor <= goal
        row += [f"<= {goal}x", met(ok)] if goal else ["", ""]
        rows.append(row)
        if goal:
            why = f"ours / floor = {show_ratio(r_floor)}"
            if not ours_done:
                why += f"; only {_finished(runs['ours'])} waits finished"
            section.goals.append((f"N = {n:,}: {label.split(' (')[0]} within {goal}x of the floor", ok, why))
            if not ok:
                missed.append(f"{label.split(' (')[0]} {show_ratio(r_floor)} (goal {goal}x)")
    section.add_table(header, rows)
    _misses(section, n, runs, missed)


def _one_core_table(section: Section, n: int, results: dict[tuple[int, str], list[Run]]) -> None:
    """Ours against the floor with ours' imports, all on one pinned core, with the goals of issue
    29; the bare floor's ratios beside them."""
    runs = {impl: results[(n, impl)] for impl in ONE_CORE}
    header = [
        f"N = {n:,}, one core (CPU {MEASURED_CPU}; sandbox on CPU {SERVER_CPU})",
        "ours",
        "floor with ours' imports",
        "ours / floor with imports",
        "bare floor",
        "ours / bare floor",
        "goal: ours / floor with imports",
        "met",
    ]
    rows = [
        ["runs", str(len(runs["ours-1"])), str(len(runs[ONE_CORE_ANCHOR])), "", str(len(runs["floor-1"]))]
        + ["", "", ""],
        ["waits finished", _finished(runs["ours-1"]), _finished(runs[ONE_CORE_ANCHOR]), "", _finished(runs["floor-1"])]
        + ["", "", ""],
    ]  # fmt: skip
    ours_done = all(r.finished for r in runs["ours-1"])
    missed = []
    for key, label, digits, goal in FIGURES:
        ours, anchor, bare = (_figure(runs[i], key) for i in ONE_CORE)
        r_anchor = ratio(ours, anchor) if ours and anchor else None
        conditions = key in CONDITIONS
        row = [
            label,
            ours.show(digits) if ours else "n/a",
            anchor.show(digits) if anchor else "n/a",
            "" if conditions else show_ratio(r_anchor),
            bare.show(digits) if bare else "n/a",
            "" if conditions else show_ratio(ratio(ours, bare) if ours and bare else None),
        ]
        ok = goal is not None and ours_done and r_anchor is not None and r_anchor <= goal
        row += [f"<= {goal}x", met(ok)] if goal else ["", ""]
        rows.append(row)
        if goal:
            name = label.split(" (")[0]
            why = f"ours / floor with imports = {show_ratio(r_anchor)}"
            if not ours_done:
                why += f"; only {_finished(runs['ours-1'])} waits finished"
            section.goals.append(
                (f"N = {n:,}, one core: {name} within {goal}x of the floor with imports", ok, why)
            )
            if not ok:
                missed.append(f"{name} {show_ratio(r_anchor)} (goal {goal}x)")
    section.add_table(header, rows)
    if missed:
        section.misses.append(
            f"N = {n:,}, one core: ours missed: {'; '.join(missed)}, against the floor's loop in a process "
            "with ours' imports, on the same pinned core."
        )


def _misses(section: Section, n: int, runs: dict[str, list[Run]], missed: list[str]) -> None:
    """Say where ours missed a goal at this N, and what the run measured of the cause."""
    if not all(r.finished for r in runs["ours"]):
        section.misses.append(
            f"N = {n:,}: ours finished {_finished(runs['ours'])} waits; see its log in `benchmarks/out/`."
        )
        return
    if missed:
        text = (
            f"N = {n:,}: ours missed: {'; '.join(missed)}. What a wait of ours does beyond the floor's, "
            "in this project's code: per poll, the auth flow's steps, the retry policy's first-attempt "
            "check, the status parse and the hook's call path; per wait, a trigger object, a hook (the "
            "connection itself is read once per event loop), a log line per status change and the "
            "event. The floor does one GET and one JSON parse per poll."
        )
        heap = _heap_note(runs) if any(m.startswith("p99 lateness") for m in missed) else ""
        if heap:
            text += " " + heap
        text += _spread_note(runs, missed)
        section.misses.append(text)


def _spread_note(runs: dict[str, list[Run]], missed: list[str]) -> str:
    """The same per-poll code measured in the same run under the other conditions (secrets cache
    on, logs to a file: neither changes a poll), and the CPU outside the collector: whether a miss
    is the code's or the run's spread and the heap's."""
    floor = runs["floor"]
    text = ""
    for key, label, _, goal in FIGURES:
        name = label.split(" (")[0]
        if goal is None or not any(m.startswith(name) for m in missed):
            continue
        variants = [
            (v, ratio(_figure(runs[v], key), _figure(floor, key)))
            for v in ("ours-cache", "ours-file")
            if v in runs and _figure(runs[v], key) and _figure(floor, key)
        ]
        if variants:
            text += (
                f" {name}, the same code under the run's other conditions: "
                + ", ".join(f"{NAMES[v]} {show_ratio(r)}" for v, r in variants)
                + (
                    " (within the goal: the miss is this run's spread)"
                    if all(r is not None and r <= goal for _, r in variants)
                    else ""
                )
                + "."
            )
    if any(m.startswith("CPU") for m in missed):
        medians = {}
        for impl in ("ours", "floor", "floor-airflow"):
            cpu, gc_s = _figure(runs.get(impl, []), "cpu_s"), _figure(runs.get(impl, []), "gc_s")
            if cpu and gc_s:
                medians[impl] = (cpu.median, gc_s.median)
        if "ours" in medians and "floor" in medians:
            (cpu_o, gc_o), (cpu_f, gc_f) = medians["ours"], medians["floor"]
            text += (
                f" Time in the collector during the waits (medians): ours {gc_o:.2f} s, floor {gc_f:.2f} s"
            )
            if "floor-airflow" in medians:
                text += f", floor in a process with ours' imports {medians['floor-airflow'][1]:.2f} s"
            text += f"; CPU outside the collector, ours / floor = {(cpu_o - gc_o) / (cpu_f - gc_f):.2f}x."
    return text


def _heap_note(runs: dict[str, list[Run]]) -> str:
    """What the floor's own loop shows in a process that holds ours' imports: the share of a
    lateness gap that comes with the process (Airflow's heap), not with our code."""
    late = {impl: _figure(runs.get(impl, []), "lateness_p99") for impl in ("ours", "floor", "floor-airflow")}
    if any(v is None for v in late.values()):
        return ""
    ours, floor, heavy = late["ours"], late["floor"], late["floor-airflow"]
    assert ours is not None and floor is not None and heavy is not None
    full = {impl: _figure(runs[impl], "full_gc_ms") for impl in ("floor", "floor-airflow")}
    collections = _figure(runs["ours"], "gc_full")
    text = (
        f"The floor's own loop in a process with ours' imports: p99 lateness {heavy.median:.2f} s, so ours is "
        f"{show_ratio(ratio(ours, heavy))} of it (against {show_ratio(ratio(ours, floor))} of the bare floor's); "
        "one full GC collection there takes "
        f"{full['floor-airflow'].median if full['floor-airflow'] else 0:.0f} ms against "
        f"{full['floor'].median if full['floor'] else 0:.0f} ms in the bare floor's process, and ours' waits "
        f"made {collections.median if collections else 0:.0f} (median) full collections."
    )
    if (ratio(ours, heavy) or 0) <= GOAL_RATIO:
        text += (
            " The gap is the process's heap (Airflow imported), which a triggerer has whichever trigger "
            "it runs, not this project's code."
        )
    else:
        text += " The process's heap does not explain the gap: it is in this project's code."
    return text


def _notes(
    section: Section, sizes: list[tuple[int, int]], results: dict[tuple[int, str], list[Run]], log_path: str
) -> None:
    late = [
        f"N = {n:,}: {max(r.start_s for runs in (results[(n, i)] for i in ('ours', 'floor', 'http')) for r in runs):.1f} s "
        "(exports are polled-counted: none completes before its wait polls it)"
        for n, _ in sizes
    ]
    section.notes.append(
        "Lateness: the time the event reached the waiting code minus the time it was due: the wait's "
        f"start plus {PROCESSING_POLLS + 1} polls of 1 s (five PROCESSING answers, then COMPLETE). A waiter "
        "that keeps up stays near 0; one whose loop is saturated polls late and its events come late. Ours "
        "and the floor sleep before their first poll (the sensor checks once before deferring); "
        "HttpEventTrigger polls first (so its events are due a second earlier than counted here), and opens a new ClientSession "
        "(a new connection) for every poll and reloads the response-check module on a thread each time."
    )
    section.notes.append(
        "The exports were started through the sandbox's API before the waits began, in no figure; the "
        "longest batch took " + "; ".join(late) + ". RSS per waiter: the peak RSS (VmHWM, reset just "
        "before the waits) minus the RSS just before, over N. CPU: the waiting process's user+system time, "
        "threads included. Our trigger logs a status change (PENDING, PROCESSING, COMPLETE) at INFO, not "
        f"each poll; it went to the children's log (`{os.path.relpath(log_path, ROOT)}`), as a "
        "triggerer writes it to the trigger's log."
    )
    busiest = max(
        (r.sandbox_cpu / r.child["wall_s"], n, NAMES[impl])
        for (n, impl), runs in results.items()
        for r in runs
        if r.child["wall_s"] > 0
    )
    section.notes.append(
        (
            "The sandbox was never the bottleneck"
            if busiest[0] < 0.85
            else "**The sandbox was near a full core**"
        )
        + f": its CPU time over the wait's wall time peaked at {busiest[0]:.0%} of one core (N = "
        f"{busiest[1]:,}, {busiest[2]}), with the waiting process on the other core."
    )
