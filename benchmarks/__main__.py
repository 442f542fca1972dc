"""``python -m benchmarks [--quick] [--only NAME ...]``: run the benchmarks, print the tables and
write RESULTS.md (``--quick``: small sizes, a smoke run of about two minutes, written to
``benchmarks/out/RESULTS-quick.md`` so that it never replaces the full run's figures)."""

from __future__ import annotations

import argparse
import fcntl
import os
import shutil
import sys
import time
from collections.abc import Callable

from benchmarks import demo, density, download, economy, imports, report
from benchmarks.common import MIB, OUT, ROOT, OtherLoad, Section, package_fingerprint, progress

BENCHMARKS = ("density", "download", "economy", "imports", "demo")


def plan(quick: bool) -> dict[str, Callable[[str], Section]]:
    """What each benchmark runs, sized for the mode. The full run takes about 35 minutes on 2
    cores (each figure on both cores, then on one pinned core); a wait that misses its deadline is
    measured once (see density)."""
    if quick:
        return {
            "density": lambda work: density.run([(200, 1)], work),
            "download": lambda work: download.run([(10 * MIB, 1), (50 * MIB, 1)], work),
            "economy": economy.run,
            "imports": lambda work: imports.run(3, work),
            "demo": lambda work: demo.run(1, work),
        }
    return {
        "density": lambda work: density.run([(1000, 5), (5000, 5)], work),
        "download": lambda work: download.run([(100 * MIB, 5), (1024 * MIB, 5)], work),
        "economy": economy.run,
        "imports": lambda work: imports.run(7, work),
        "demo": lambda work: demo.run(2, work),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke run of about two minutes")
    p.add_argument("--only", nargs="+", choices=BENCHMARKS, help="run only these benchmarks")
    p.add_argument(
        "--output",
        help="where to write the report (default: benchmarks/RESULTS.md, or "
        "benchmarks/out/RESULTS-quick.md with --quick)",
    )
    args = p.parse_args(argv)
    output = args.output or str(
        OUT / "RESULTS-quick.md" if args.quick else ROOT / "benchmarks" / "RESULTS.md"
    )

    OUT.mkdir(parents=True, exist_ok=True)
    lock = open(OUT / "run.lock", "a+")  # noqa: SIM115 (held until the process exits)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        print(
            f"Another benchmark run is in progress ({lock.read().strip() or 'unknown'}); two at once would "
            "share 2 cores and one scratch directory and spoil each other's figures. Wait for it.",
            file=sys.stderr,
        )
        return 2
    lock.truncate(0)
    lock.write(f"pid {os.getpid()}, started {time.strftime('%H:%M:%S')}\n")
    lock.flush()

    work = OUT / "run"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    started = time.time()
    load_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
    code_start = package_fingerprint()
    other_load = OtherLoad()
    sections = []
    for name, bench in plan(args.quick).items():
        if args.only and name not in args.only:
            continue
        progress(f"{name}: starting")
        t = time.monotonic()
        sections.append(bench(str(work)))
        progress(f"{name}: done in {time.monotonic() - t:.0f} s")
    load_end = " ".join(f"{x:.2f}" for x in os.getloadavg())
    text = report.render(
        sections,
        quick=args.quick,
        started=started,
        finished=time.time(),
        load=(load_start, load_end),
        code=(code_start, package_fingerprint()),
        others=other_load.seconds(),
    )
    print(text)
    with open(output, "w") as fh:
        fh.write(text)
    progress(f"report written to {os.path.relpath(output, ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
