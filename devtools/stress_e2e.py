"""Run the end-to-end modules several times in a row with one core kept busy (``make stress-e2e``).

The end-to-end legs observe real processes; this is how their robustness on a loaded 2-core
machine is checked: a busy-loop process takes one core for the whole time, and every run must pass.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

MODULES = ("tests/test_e2e_local.py", "tests/test_e2e_celery.py")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--no-busy", action="store_true", help="leave both cores free")
    options = parser.parse_args()
    busy = None
    if not options.no_busy:
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    results = []
    try:
        for n in range(1, options.runs + 1):
            started = time.monotonic()
            code = subprocess.run([sys.executable, "-m", "pytest", "-q", *MODULES]).returncode
            results.append((code, time.monotonic() - started))
            print(
                f"stress run {n}/{options.runs}: {'passed' if code == 0 else 'FAILED'} in {results[-1][1]:.0f} s",
                flush=True,
            )
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
    failed = sum(1 for code, _ in results if code)
    print(
        f"{len(results) - failed} passed, {failed} failed (runs of {' '.join(MODULES)}, one core busy: {busy is not None})"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
