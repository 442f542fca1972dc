"""Benchmark 5, the demo: how long ``make demo`` takes on a warm environment.

Why: it is the first thing a newcomer runs. It is timed as a whole, beside the start-up of one
Airflow CLI command (``airflow version``), since the demo runs the CLI twice (``db migrate`` and
``dags test``) and most of its time is Airflow's own.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time

import psutil

from benchmarks.common import PYTHON, ROOT, Section, progress, ratio, show_ratio, stats, stop_process

DEMO_TIMEOUT = 600


def _env(**extra: str) -> dict[str, str]:
    """The developer's environment, as ``make demo`` sees it (it sets its own AIRFLOW_HOME)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_") and k != "AIRFLOW_HOME"}
    env.update(extra)
    return env


def _sandbox_cpu(root: psutil.Process, seen: dict[int, float]) -> None:
    """Record the CPU time so far of every sandbox process below ``root`` (the demo starts its own)."""
    try:
        children = root.children(recursive=True)
    except psutil.Error:
        return
    for child in children:
        try:
            if any("airflow_provider_hubexport.sandbox" in part for part in child.cmdline()):
                times = child.cpu_times()
                seen[child.pid] = times.user + times.system
        except psutil.Error:
            continue  # it ended between the listing and the look


def _timed(args: list[str], env: dict[str, str], log_path: str) -> tuple[float, float]:
    """Wall seconds of a command, and the CPU seconds of any sandbox it started (sampled every 0.2 s,
    so the sandbox's last moments may be missed)."""
    seen: dict[int, float] = {}
    started = time.monotonic()
    with open(log_path, "a") as log:
        log.write(f"\n$ {' '.join(args)}\n")
        log.flush()
        proc = subprocess.Popen(
            args, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
        root = psutil.Process(proc.pid)
        while proc.poll() is None:
            if time.monotonic() - started > DEMO_TIMEOUT:
                stop_process(proc)
                raise RuntimeError(f"{' '.join(args)} took more than {DEMO_TIMEOUT} s; see {log_path}")
            _sandbox_cpu(root, seen)
            time.sleep(0.2)
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited with {proc.returncode}; see {log_path}")
    return seconds, sum(seen.values())


def run(repeats: int, work: str) -> Section:
    log_path = f"{work}/demo.log"
    # `make demo` would first (re)install .venv if setup.cfg or the lock changed; that is not the
    # warm case, and the benchmark must install nothing: then run the demo's recipe directly.
    warm = subprocess.call(["make", "-C", str(ROOT), "-q", "venv"], stdout=subprocess.DEVNULL) == 0
    command = ["make", "-C", str(ROOT), "demo"] if warm else [PYTHON, "scripts/demo.py"]
    demo, cli, sandbox_cpu = [], [], []
    home = tempfile.mkdtemp(prefix="airflow-home-", dir=work)
    for rep in range(repeats):
        progress(f"demo: run {rep + 1} of {repeats}")
        seconds, cpu = _timed(command, _env(), log_path)
        demo.append(seconds)
        sandbox_cpu.append(cpu)
        cli.append(_timed([PYTHON, "-m", "airflow", "version"], _env(AIRFLOW_HOME=home), log_path)[0])
    d, c = stats(demo), stats(cli)
    section = Section(
        "5. The demo",
        f"`{'make demo' if warm else 'python scripts/demo.py'}` on a warm environment, timed "
        f"whole ({repeats} run{'s' if repeats > 1 else ''}), beside one Airflow CLI start-up "
        "(`python -m airflow version`) in the same environment. Seconds, median (min-max).",
    )
    section.add_table(
        ["figure", "make demo", "`airflow version`", "ratio", "goal", "met"],
        [
            ["wall time (s)", d.show(1), c.show(1), show_ratio(ratio(d, c)), "none stated", "n/a"],
            ["CPU of the demo's own sandbox (s)", stats(sandbox_cpu).show(2), "", "", "", ""],
        ],
    )
    if not warm:
        section.notes.append(
            "`make -q venv` said .venv was out of date (setup.cfg or the lock changed), so `make demo` "
            "would have reinstalled it first; the benchmark ran the demo's recipe, `scripts/demo.py`, "
            "directly instead."
        )
    return section
