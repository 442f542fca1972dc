"""Shared machinery: the sandbox in its own process, child processes, statistics and tables.

The sandbox always runs in a separate process, so its CPU time can be read (psutil) and shown
next to every figure: a benchmark of a client is worthless if the server was the bottleneck.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import selectors
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out"  # logs and scratch of the last run (git-ignored)
PYTHON = sys.executable
TOKEN = "sandbox-token"  # the sandbox's default, the only token it accepts
MIB = 1024 * 1024
EXPORT_REQUEST: dict[str, Any] = {
    "exportType": "VIEW",
    "format": "CSV",
    "exportName": "contacts",
    "objectType": "CONTACT",
    "objectProperties": ["email", "firstname", "lastname"],
    "language": "EN",
}
START_PATH = "/crm/v3/exports/export/async"


def status_path(task_id: str) -> str:
    return f"{START_PATH}/tasks/{task_id}/status"


# ---------------------------------------------------------------------------------------------
# One core: what a task gets on a worker or triggerer that runs many
# ---------------------------------------------------------------------------------------------
ALL_CPUS = frozenset(os.sched_getaffinity(0))  # the benchmarks are Linux only (procstat)
# The measured process (or curl) and the sandbox: the first two CPUs this run may use.
MEASURED_CPU, SERVER_CPU = (sorted(ALL_CPUS) + [-1, -1])[:2]
TASKSET = shutil.which("taskset") or ""


def one_core_possible() -> bool:
    """Two CPUs to pin to and ``taskset`` (util-linux): else the one-core figures are left out,
    and the report says so."""
    return SERVER_CPU >= 0 and bool(TASKSET)


def on_one_core(pinned: bool) -> list[str]:
    """The command prefix that runs a measured process on ``MEASURED_CPU`` alone (empty: unpinned)."""
    return [TASKSET, "-c", str(MEASURED_CPU)] if pinned else []


def pin(pid: int, cpus: set[int] | frozenset[int]) -> None:
    """Pin every thread of ``pid``; threads it starts later inherit their creator's CPUs."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
            pinned = os.sched_getaffinity(int(tid)) == set(cpus)
        except ProcessLookupError:
            continue  # a thread that ended meanwhile
        if not pinned:
            raise RuntimeError(f"thread {tid} of {pid} was not pinned to CPUs {sorted(cpus)}")


# ---------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Stats:
    """Repeated measurements of one figure: reported as median (min-max)."""

    values: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def min(self) -> float:
        return min(self.values)

    @property
    def max(self) -> float:
        return max(self.values)

    def show(self, digits: int = 2) -> str:
        if len(self.values) == 1:
            return f"{self.median:.{digits}f} (1 run)"
        return f"{self.median:.{digits}f} ({self.min:.{digits}f}-{self.max:.{digits}f})"


def stats(values: Sequence[float]) -> Stats:
    if not values:
        raise ValueError("no measurements")
    return Stats(tuple(float(v) for v in values))


def ratio(ours: Stats | float, anchor: Stats | float) -> float | None:
    a = anchor.median if isinstance(anchor, Stats) else anchor
    o = ours.median if isinstance(ours, Stats) else ours
    return None if a == 0 else o / a


def show_ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def met(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**yes**" if ok else "**no**")


@dataclass
class Section:
    """One benchmark's part of the report: a lead paragraph, one or more tables, notes."""

    title: str
    lead: str
    tables: list[tuple[list[str], list[list[str]]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    goals: list[tuple[str, bool | None, str]] = field(default_factory=list)  # goal, met, figure
    misses: list[str] = field(default_factory=list)  # why a goal was missed, as far as the run tells

    def add_table(self, header: list[str], rows: list[list[str]]) -> None:
        self.tables.append((header, rows))


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table padded to line up in a terminal too."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


# ---------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------
def child_env(home: str, **extra: str) -> dict[str, str]:
    """The environment of a measuring child: a private AIRFLOW_HOME, no connection but ours.

    Bytecode is cached (under OUT, never beside the sources), as in any installed deployment, even
    where the machine sets PYTHONDONTWRITEBYTECODE: otherwise every child compiles Airflow again.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(
        {
            "AIRFLOW_HOME": home,
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "PYTHONPYCACHEPREFIX": str(OUT / "pycache"),
            "PYTHONPATH": str(ROOT),
        }
    )
    env.update(extra)
    return env


def stop_process(proc: subprocess.Popen[Any], sig: int = signal.SIGINT, wait: float = 15) -> None:
    """Ask a child we started to stop, then insist. Only ever this one pid."""
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(wait)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(wait)


def run_json_child(
    args: list[str],
    *,
    env: dict[str, str],
    timeout: float,
    log: IO[str] | None = None,
    prefix: Sequence[str] = (),
) -> dict[str, Any]:
    """Run ``[prefix...] python args...`` to the end; its last stdout line is a JSON object: return it."""
    proc = subprocess.Popen(
        [*prefix, PYTHON, *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=log or subprocess.DEVNULL,
        text=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_process(proc, signal.SIGKILL)
        raise RuntimeError(f"{' '.join(args)} took more than {timeout:.0f} s")
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited with {proc.returncode}")
    return json.loads(out.strip().splitlines()[-1])


class SandboxProcess:
    """``python -m airflow_provider_hubexport.sandbox`` on 127.0.0.1 with a free port.

    Use as a context manager; ``cpu_seconds()`` reads the sandbox process's CPU time so far, and
    ``cpu_during(fn)`` the CPU time it spent while ``fn`` ran.
    """

    def __init__(self, *options: str, workdir: str | None = None, log_dir: str | None = None) -> None:
        self.options = list(options)
        self.workdir = workdir
        self.log_dir = log_dir or tempfile.mkdtemp(prefix="hubexport-bench-sandbox-")
        self.proc: subprocess.Popen[Any] | None = None
        self.url = ""
        self._ps: psutil.Process | None = None

    def __enter__(self) -> SandboxProcess:
        ready = Path(self.log_dir) / "ready"
        ready.unlink(missing_ok=True)
        args = ["-m", "airflow_provider_hubexport.sandbox", "--port", "0", "--ready-file", str(ready)]
        # The benchmarks measure the client, with thousands of exports at once: HubSpot's limits off.
        args += ["--export-limit", "none", "--no-one-at-a-time"]
        if self.workdir:
            args += ["--workdir", self.workdir]
        self._log = open(Path(self.log_dir) / "sandbox.log", "w")  # noqa: SIM115 (closed in __exit__)
        self.proc = subprocess.Popen(
            [PYTHON, *args, *self.options],
            cwd=ROOT,
            env=child_env(self.log_dir),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while not (ready.exists() and ready.read_text()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"the sandbox did not start; see {self._log.name}")
            time.sleep(0.05)
        self.url = ready.read_text().strip()
        self._ps = psutil.Process(self.proc.pid)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            stop_process(self.proc)
        self._log.close()

    def pin(self, one_core: bool) -> None:
        """On ``SERVER_CPU`` alone while a one-core figure is measured (the measured process has
        the other), else on every CPU."""
        assert self.proc is not None
        pin(self.proc.pid, {SERVER_CPU} if one_core else ALL_CPUS)

    def cpu_seconds(self) -> float:
        assert self._ps is not None
        times = self._ps.cpu_times()
        return times.user + times.system

    def cpu_during(self, fn: Callable[[], Any]) -> tuple[Any, float]:
        before = self.cpu_seconds()
        result = fn()
        return result, self.cpu_seconds() - before

    def connection(self, **extra: Any) -> str:
        """``hubspot_default`` as AIRFLOW_CONN_* JSON."""
        conn: dict[str, Any] = {"conn_type": "hubspot", "host": self.url, "password": TOKEN}
        if extra:
            conn["extra"] = extra
        return json.dumps(conn)


def package_fingerprint() -> str:
    """A short hash of the package's sources, to tell which code a run measured (and whether the
    code changed while it ran)."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "airflow_provider_hubexport").rglob("*.py")):
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


class OtherLoad:
    """CPU time the rest of the machine used while the benchmarks ran: everything busy minus this
    process and its (waited-for) descendants. Anything large here means the figures shared the
    cores with something else."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.busy = self._busy()
        self.ours = self._ours()

    @staticmethod
    def _busy() -> float:
        t = psutil.cpu_times()
        return t.user + t.nice + t.system + getattr(t, "irq", 0) + getattr(t, "softirq", 0)

    @staticmethod
    def _ours() -> float:
        import resource

        own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    def seconds(self) -> tuple[float, float]:
        """(CPU seconds used by others, wall seconds) since construction."""
        others = (self._busy() - self.busy) - (self._ours() - self.ours)
        return max(0.0, others), time.monotonic() - self.started


def progress(message: str) -> None:
    """One line on stderr, so a long run shows where it is without mixing into the tables."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    """The next stdout line of a child, waiting at most ``timeout`` seconds."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            raise RuntimeError(f"no output from pid {proc.pid} within {timeout:.0f} s")
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"pid {proc.pid} exited with {proc.wait()} before answering")
    return line.strip()


def start_exports(
    api_url: str,
    count: int,
    *,
    concurrency: int = 32,
    timeout: float = 300,
    request: dict[str, Any] | None = None,
) -> list[str]:
    """Start ``count`` exports through the sandbox's HTTP API, as HubSpot's clients would
    (``request``: the start body, ``EXPORT_REQUEST`` by default)."""
    body = request or EXPORT_REQUEST
    import aiohttp

    async def run() -> list[str]:
        limit = asyncio.Semaphore(concurrency)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

            async def one() -> str:
                async with (
                    limit,
                    session.post(api_url + START_PATH, json=body, headers=headers) as r,
                ):
                    if r.status != 202:
                        raise RuntimeError(f"start answered {r.status}: {(await r.text())[:200]}")
                    return str((await r.json())["id"])

            return await asyncio.wait_for(asyncio.gather(*(one() for _ in range(count))), timeout)

    return asyncio.run(run())
