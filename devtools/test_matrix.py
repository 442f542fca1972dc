"""``make test``: the whole suite on the newest Airflow, and the version legs on every older minor.

Each leg is its own virtualenv (``.venv-legs/<leg>``), installed by uv from its own pinned lock
under ``requirements/`` with the Python it names, so what a leg proves is what a user with that
Airflow and those dependency versions would get. The newest leg runs everything, the real-process
end-to-end modules included; the others run the unit, hook and DAG-level tests (sensor in every
mode, operators, example DAGs, secret scan). Legs run side by side, all at once (a leg alone keeps
only 60% of one core busy: it waits for polls, retries and Airflow's processes); each prints the Airflow and Python it ran on and how many tests
passed, and the last line sums them up.

Two legs prove the package as users get it: ``3.0-lowest`` runs the 3.0 leg's tests with our direct
dependencies at the floors setup.cfg declares (``requirements/lowest.txt``, compiled by
``--lock-lowest``), and ``wheel`` builds the sdist and the wheel and checks the wheel installed in a
clean venv (``devtools/check_wheel.py``).

``make test AIRFLOW=3.1`` (or ``python devtools/test_matrix.py --leg 3.1``) runs one leg alone.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOGS = ROOT / ".test-logs"
E2E = ("tests/test_e2e_local.py", "tests/test_e2e_celery.py")
# The main leg runs every case of this module as a job of its own (the version legs run a third of
# it with their other tests): the main leg is the longest, and all legs share two cores.
FAULT_MATRIX = "tests/test_fault_matrix.py"


@dataclass(frozen=True)
class Leg:
    name: str
    lock: str
    python: str | None  # None: the main venv's own interpreter (``make venv``)
    modules: tuple[str, ...] = ()  # only these; none: all but the end-to-end modules (and ``ignore``)
    ignore: tuple[str, ...] = ()
    # What the leg varies from the main leg decides what it runs: every leg skips ``repetition``
    # cases; a leg that varies only Airflow (same Python) also skips ``no_airflow`` tests.
    skip: tuple[str, ...] = ()
    # Scheduling priority (nice). The end-to-end jobs run Airflow's components, whose heartbeats,
    # timeouts and deferral hand-offs happen in real time; the unit legs need only throughput. So
    # the unit legs yield the CPU to them (CI, all eight at once on two cores: REST calls unanswered
    # for 30 s, a triggerer's polls late, when all ran at the same priority).
    nice: int = 10
    # Not pytest: this script, run by the main venv's Python; each "ok"/"FAIL" line it prints counts
    # as a passed/failed test.
    command: tuple[str, ...] = ()

    @property
    def venv(self) -> Path:
        return ROOT / ".venv" if self.python is None else ROOT / ".venv-legs" / self.name

    @property
    def what(self) -> str:
        if self.command:
            return " ".join(self.command)
        if self.modules:
            return ", ".join(Path(module).stem for module in self.modules)
        leaves = "".join(f", {Path(module).stem}" for module in self.ignore)
        return f"all but the end-to-end modules{leaves}" + "".join(f", not {m}" for m in self.skip)

    def selects(self, wanted: list[str] | None) -> bool:
        """``--leg 3.3`` runs every part of the main leg (its unit tests, its fault matrix and each
        end-to-end module); ``--leg 3.3-e2e`` the end-to-end modules."""
        if not wanted:
            return True
        return any(
            self.name in (w, f"{w}-matrix")
            or self.name.startswith(f"{w}-" if w.endswith("-e2e") else f"{w}-e2e")
            for w in wanted
        )


# Longest first, for when fewer jobs than legs run (``--jobs``): the next leg takes the first free job.
OTHER_PYTHON = ("repetition",)
SAME_PYTHON = ("repetition", "no_airflow")
LEGS = (
    Leg("3.3", "requirements/test.txt", None, ignore=(FAULT_MATRIX,)),
    Leg("3.3-matrix", "requirements/test.txt", None, modules=(FAULT_MATRIX,)),
    # Each end-to-end module is its own job: they mostly wait (Airflow's processes, the backfill's
    # export window), so side by side they cost little CPU and shorten the longest leg.
    Leg("3.3-e2e-local", "requirements/test.txt", None, modules=(E2E[0],), nice=0),
    Leg("3.3-e2e-celery", "requirements/test.txt", None, modules=(E2E[1],), nice=0),
    Leg("3.3-py313", "requirements/airflow-3.3-py313.txt", "3.13", skip=OTHER_PYTHON),
    Leg("3.0", "requirements/airflow-3.0.txt", "3.10", skip=OTHER_PYTHON),
    # Our direct dependencies at their declared floors (setup.cfg), the rest as in Airflow 3.0's
    # environment (``--lock-lowest``): what the 3.0 leg runs, on the oldest versions we allow.
    Leg("3.0-lowest", "requirements/lowest.txt", "3.10", skip=OTHER_PYTHON),
    Leg("3.1", "requirements/airflow-3.1.txt", "3.11", skip=SAME_PYTHON),
    Leg("3.2", "requirements/airflow-3.2.txt", "3.11", skip=SAME_PYTHON),
    # The sdist and the wheel as users get them, the wheel installed in a clean venv of its own.
    Leg("wheel", "requirements/test.txt", None, command=("devtools/check_wheel.py",)),
)
_print_lock = threading.Lock()


def say(text: str) -> None:
    with _print_lock:
        print(text, flush=True)


def find_python(version: str) -> str:
    """An interpreter of ``version`` on this machine: on PATH, or in pyenv's versions (whose shims
    fail for a version that is not selected). Never downloaded."""
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates = [
        shutil.which(f"python{version}"),
        *sorted(glob.glob(f"{root}/versions/{version}.*/bin/python{version}")),
    ]
    for candidate in filter(None, candidates):
        out = subprocess.run(
            [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
        )
        if out.returncode == 0 and out.stdout.strip() == version:
            return candidate
    raise RuntimeError(
        f"no Python {version} on this machine (looked on PATH and in {root}/versions): install it to run this leg"
    )


def ensure_venv(leg: Leg, uv: Path) -> None:
    """Install the leg's venv from its lock; skipped when the lock has not changed since."""
    if leg.python is None:
        return  # built by ``make venv``
    stamp = leg.venv / ".installed"
    lock = ROOT / leg.lock
    wanted = f"{lock.stat().st_mtime_ns}:{(ROOT / 'setup.cfg').stat().st_mtime_ns}"
    if stamp.exists() and stamp.read_text() == wanted:
        return
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}  # use the machine's Python, never fetch one
    run = [str(uv), "--quiet"]
    subprocess.run(
        [*run, "venv", "--clear", "--python", find_python(leg.python), str(leg.venv)], check=True, env=env
    )
    py = str(leg.venv / "bin" / "python")
    subprocess.run([*run, "pip", "sync", "--python", py, str(lock)], check=True, env=env)
    subprocess.run(
        [*run, "pip", "install", "--python", py, "--no-deps", "-e", str(ROOT)], check=True, env=env
    )
    stamp.write_text(wanted)


def versions(leg: Leg) -> str:
    code = "import sys, airflow; print(f'Airflow {airflow.__version__}, Python {sys.version.split()[0]}')"
    out = subprocess.run([str(leg.venv / "bin" / "python"), "-c", code], capture_output=True, text=True)
    return out.stdout.strip() or f"(not importable: {out.stderr.strip()[-300:]})"


def run_pytest(args: list[str], log: Path, env: dict[str, str]) -> tuple[int, float]:
    """Run one leg's pytest; its exit code and the CPU seconds it and its children used."""
    with open(log, "w") as out:
        proc = subprocess.Popen(args, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_utime + usage.ru_stime


def run_leg(leg: Leg, uv: Path) -> tuple[Leg, dict[str, int], float, str]:
    started = time.monotonic()
    log = LOGS / f"{leg.name}.log"
    try:
        ensure_venv(leg, uv)
    except (subprocess.CalledProcessError, RuntimeError) as err:
        return leg, {"error": 1}, time.monotonic() - started, f"venv failed: {err}"
    if leg.command:
        return run_command(leg, started, log)
    label = versions(leg)
    say(f"[{leg.name}] {label}: running {leg.what}")
    args = [
        *(["nice", "-n", str(leg.nice)] if leg.nice else []),
        str(leg.venv / "bin" / "python"),
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "--durations=15",
    ]
    if leg.modules:
        args += list(leg.modules)
    else:
        args += [f"--ignore={module}" for module in (*E2E, *leg.ignore)]
        if leg.skip:
            args += ["-m", " and ".join(f"not {marker}" for marker in leg.skip)]
    # Bytecode caches on, whatever the caller's environment says: without them every Airflow process
    # a test starts compiles Airflow again (measured: a leg's CPU time nearly doubles).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    code, cpu = run_pytest(args, log, env)
    label += f"; CPU {cpu:.0f} s"
    counts = summary(log.read_text(errors="replace"))
    if code != 0 and not counts.get("failed") and not counts.get("error"):
        counts["error"] = 1  # pytest itself failed (collection, exit 5 for no tests, a crash)
    return leg, counts, time.monotonic() - started, label


def run_command(leg: Leg, started: float, log: Path) -> tuple[Leg, dict[str, int], float, str]:
    say(f"[{leg.name}] running {leg.what}")
    args = [
        *(["nice", "-n", str(leg.nice)] if leg.nice else []),
        str(ROOT / ".venv" / "bin" / "python"),
        *leg.command,
    ]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    code, cpu = run_pytest(args, log, env)
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines()]
    counts = {
        "passed": sum(line.startswith("ok ") for line in lines),
        "failed": sum(line.startswith("FAIL ") for line in lines),
    }
    if code != 0 and not counts["failed"]:
        counts["error"] = 1
    return leg, {k: n for k, n in counts.items() if n}, time.monotonic() - started, f"checks; CPU {cpu:.0f} s"


def summary(output: str) -> dict[str, int]:
    """The counts from pytest's closing line ("3 failed, 370 passed, 1 skipped in 9.1s")."""
    lines = [
        line for line in output.splitlines() if re.search(r"\b(passed|failed|error)s?\b.* in [\d.]+s", line)
    ]
    if not lines:
        return {}
    return {
        kind.rstrip("s"): int(n)
        for n, kind in re.findall(r"(\d+) (passed|failed|errors?|skipped)", lines[-1])
    }


LOWEST_IN = ROOT / "requirements" / "lowest.in"
LOWEST_LOCK = ROOT / "requirements" / "lowest.txt"
AIRFLOW_30_LOCK = ROOT / "requirements" / "airflow-3.0.txt"


def direct_dependencies() -> set[str]:
    """The normalized names setup.cfg's ``install_requires`` declares."""
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    names = set()
    for line in cfg["options"]["install_requires"].splitlines():
        line = line.split("#")[0].strip()
        if line:
            names.add(normalize(re.split(r"[<>=!~;\[ ]", line, maxsplit=1)[0]))
    return names


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_lowest(uv: Path) -> int:
    """Compile ``requirements/lowest.txt``: our direct dependencies resolved to their lowest allowed
    versions (``--resolution lowest-direct``), everything else constrained to Airflow 3.0's
    environment. Airflow's official constraints file for 3.0 is on GitHub; ours is
    ``requirements/airflow-3.0.txt`` (Airflow 3.0 as of its release), minus our direct
    dependencies, so that only they move."""
    import tempfile

    direct = direct_dependencies() - {"apache-airflow"}  # Airflow itself: the 3.0 leg's, pinned in lowest.in
    pins = [
        line
        for line in AIRFLOW_30_LOCK.read_text().splitlines()
        if "==" in line and not line.startswith((" ", "#")) and normalize(line.split("==")[0]) not in direct
    ]
    with tempfile.NamedTemporaryFile("w", suffix="-airflow-3.0-constraints.txt") as constraints:
        constraints.write("\n".join(pins) + "\n")
        constraints.flush()
        args = [
            str(uv), "pip", "compile", "--quiet", "--python-version", "3.10", "--resolution", "lowest-direct",
            "--custom-compile-command", "python devtools/test_matrix.py --lock-lowest",
            "setup.cfg", str(LOWEST_IN.relative_to(ROOT)), "--extra", "test",
            "-c", constraints.name, "-o", str(LOWEST_LOCK.relative_to(ROOT)),
        ]  # fmt: skip
        code = subprocess.run(args, cwd=ROOT).returncode
    if code == 0:
        pinned = {
            normalize(name): version
            for name, version in re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", LOWEST_LOCK.read_text(), re.M)
        }
        for name in sorted(direct):
            say(f"{name}=={pinned.get(name, '(not pinned)')}")
    return code


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--leg",
        action="append",
        help="run only this leg (3.0, 3.0-lowest, 3.1, 3.2, 3.3, 3.3-matrix, 3.3-e2e, 3.3-e2e-local, 3.3-e2e-celery, 3.3-py313, wheel)",
    )
    # All at once: a leg alone uses 60% of one core (measured: 241 s of CPU in 398 s), so six
    # legs keep two cores busy, and no leg is left running alone at the end.
    parser.add_argument("--jobs", type=int, default=len(LEGS))
    parser.add_argument(
        "--lock-lowest",
        action="store_true",
        help="compile requirements/lowest.txt (the 3.0-lowest leg's lock)",
    )
    options = parser.parse_args()
    if options.lock_lowest:
        return lock_lowest(ROOT / ".venv" / "bin" / "uv")
    legs = [leg for leg in LEGS if leg.selects(options.leg)]
    if not legs:
        parser.error(f"no such leg: {options.leg}; legs are {', '.join(leg.name for leg in LEGS)}")
    uv = ROOT / ".venv" / "bin" / "uv"
    LOGS.mkdir(exist_ok=True)
    started = time.monotonic()
    total: dict[str, int] = {}
    failed_legs = []
    with ThreadPoolExecutor(max_workers=max(1, options.jobs)) as pool:
        futures = [pool.submit(run_leg, leg, uv) for leg in legs]
        for future in as_completed(futures):
            leg, counts, seconds, label = future.result()
            for kind, n in counts.items():
                total[kind] = total.get(kind, 0) + n
            ok = counts.get("passed", 0) > 0 and not counts.get("failed") and not counts.get("error")
            if not ok:
                failed_legs.append(leg.name)
            shown = ", ".join(f"{n} {kind}" for kind, n in counts.items()) or "no result"
            say(
                f"[{leg.name}] {label}: {shown} in {seconds:.0f} s ({'ok' if ok else 'FAILED'}; log .test-logs/{leg.name}.log)"
            )
    say(f"legs: {len(legs) - len(failed_legs)} of {len(legs)} passed in {time.monotonic() - started:.0f} s")
    for name in failed_legs:
        tail = (LOGS / f"{name}.log").read_text(errors="replace").splitlines()[-40:]
        say(f"--- the end of .test-logs/{name}.log ---\n" + "\n".join(tail))
    say(f"tests: {total.get('passed', 0)} passed, {total.get('failed', 0) + total.get('error', 0)} failed")
    return 1 if failed_legs else 0


if __name__ == "__main__":
    sys.exit(main())
