"""RESULTS.md: the machine, how to run, a summary of the goals, then each benchmark's tables."""

from __future__ import annotations

import os
import platform
import time
from importlib import metadata

from benchmarks.common import Section, markdown_table, met


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _memory_gib() -> float:
    import psutil

    return psutil.virtual_memory().total / 1024**3


def machine() -> str:
    versions = []
    for dist in ("apache-airflow", "apache-airflow-providers-http", "aiohttp", "requests"):
        try:
            versions.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{dist} (not installed)")
    return (
        f"{os.cpu_count()} cores ({_cpu_model()}), {_memory_gib():.0f} GiB RAM, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}; " + ", ".join(versions)
    )


def render(
    sections: list[Section],
    *,
    quick: bool,
    started: float,
    finished: float,
    load: tuple[str, str],
    code: tuple[str, str],
    others: tuple[float, float],
) -> str:
    goals = [(s.title, goal) for s in sections for goal in s.goals]
    lines = [
        "# Benchmarks",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))}, "
        f"{'`--quick` (small sizes)' if quick else 'full run'}, {finished - started:.0f} s in all.",
        "",
        f"Machine: {machine()}. Load average (1, 5, 15 min) at the start: {load[0]}; at the end: {load[1]}. "
        f"Other processes used {others[0]:.0f} CPU seconds during the {others[1]:.0f} s run "
        f"({others[0] / max(others[1], 1):.0%} of one core on average)"
        + (
            ": the figures had the 2 cores to themselves."
            if others[0] < 0.05 * others[1]
            else ": **the figures shared the cores with other work**; compare with a run on a quiet machine."
        ),
        "",
        f"Code measured: `airflow_provider_hubexport` sources with fingerprint `{code[0]}` (a SHA-256 of "
        "its `.py` files, `benchmarks.common.package_fingerprint`)"
        + (
            "."
            if code[0] == code[1]
            else f" at the start and `{code[1]}` at the end: **the package changed during this run**, so "
            "benchmarks run at different times may have measured different code."
        ),
        "",
        "Run it with `make bench`, or `.venv/bin/python -m benchmarks` from the repository root (add "
        "`--quick` for a smoke run of about two minutes, which writes `benchmarks/out/RESULTS-quick.md` "
        "instead of this file). The full run takes about 35 minutes on 2 cores. The one-core figures "
        "(the measured process, or curl, pinned by `taskset` to CPU 0, the sandbox to CPU 1) are what a "
        "task gets on a worker or triggerer that runs many per core: quote those. Every server is "
        "started by the benchmark on 127.0.0.1; the sandbox always runs in its own process and its CPU "
        "time is reported beside the figures. Logs of the last run: `benchmarks/out/`.",
        "",
        "Each figure is the median (min-max) of repeated runs, beside an anchor measured in the same run, "
        "and their ratio. These are figures, not pass/fail tests.",
        "",
        "## Goals",
        "",
        markdown_table(
            ["benchmark", "goal", "met", "figure"],
            [[title.split(". ", 1)[-1], goal, met(ok), why] for title, (goal, ok, why) in goals],
        ),
        "",
    ]
    for section in sections:
        lines += [f"## {section.title}", "", section.lead, ""]
        for header, rows in section.tables:
            lines += [markdown_table(header, rows), ""]
        if section.notes:
            lines += ["Notes:", ""] + [f"- {note}" for note in section.notes] + [""]
    misses = [(title, goal, why) for title, (goal, ok, why) in goals if ok is False]
    lines += ["## Notes on the misses", ""]
    if misses:
        lines += [
            "Each miss above, with its cause where the run found it (details in the benchmark's notes):",
            "",
        ]
        for section in sections:
            lines += [f"- **{section.title}**: {text}" for text in section.misses]
    else:
        lines += ["None: every goal was met in this run."]
    return "\n".join(lines).rstrip() + "\n"
