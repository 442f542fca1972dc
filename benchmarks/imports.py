"""Benchmark 4, import cost: what our sensor and operator modules add to a DAG file's import.

Why: the DAG processor imports every DAG file over and over; a provider module that drags in
aiohttp, requests or the sandbox slows every parse. Each run is a fresh interpreter that imports
``airflow.sdk`` first (every DAG file does), then times the import of one module and compares
``sys.modules`` before and after. Anchor: the HTTP provider's sensor module, same conditions.
"""

from __future__ import annotations

import tempfile

from benchmarks.common import Section, child_env, met, progress, ratio, run_json_child, show_ratio, stats

# Runs as ``python -c SNIPPET MODULE WATCHED...``; prints one JSON line.
SNIPPET = """
import importlib, json, sys, time
import airflow.sdk
before = set(sys.modules)
started = time.perf_counter()
importlib.import_module(sys.argv[1])
seconds = time.perf_counter() - started
new = set(sys.modules) - before
def has(names, root):
    return any(m == root or m.startswith(root + ".") for m in names)
print(json.dumps({
    "seconds": seconds,
    "new_modules": len(new),
    "present": {w: has(sys.modules, w) for w in sys.argv[2:]},
    "imported": {w: has(new, w) for w in sys.argv[2:]},
}))
"""
OURS = ["airflow_provider_hubexport.sensors.export", "airflow_provider_hubexport.operators.export"]
ANCHOR = "airflow.providers.http.sensors.http"
WATCHED = ["aiohttp", "requests", "airflow_provider_hubexport.sandbox"]


def run(repeats: int, work: str) -> Section:
    home = tempfile.mkdtemp(prefix="airflow-home-", dir=work)
    modules = [*OURS, ANCHOR]

    def once(module: str) -> dict:
        return run_json_child(["-c", SNIPPET, module, *WATCHED], env=child_env(home), timeout=120)

    for module in modules:  # warm-up, discarded: bytecode cache and page cache
        once(module)
    runs: dict[str, list[dict]] = {m: [] for m in modules}
    for rep in range(repeats):
        progress(f"imports: run {rep + 1} of {repeats}")
        for module in modules:  # interleaved, so drift hits all three alike
            runs[module].append(once(module))

    section = Section(
        "4. Import cost",
        f"A fresh interpreter per run imports `airflow.sdk`, then one module; the figure is the time of that "
        f"second import (ms; median (min-max) of {repeats} runs, after one discarded warm-up each), with "
        "bytecode cached as in an installed deployment. Anchor: the HTTP provider's sensor module. "
        '"Imported by it" compares `sys.modules` before and after the module\'s import.',
    )
    anchor = stats([r["seconds"] * 1000 for r in runs[ANCHOR]])
    header = [
        "module",
        "import (ms)",
        "ours / HTTP sensor",
        "new modules",
        *[f"`{w}` imported by it (present after)" for w in WATCHED],
        "goal: none of them imported",
        "met",
    ]
    rows = []
    for module in modules:
        figure = stats([r["seconds"] * 1000 for r in runs[module]])
        last = runs[module][-1]
        imported = {w: any(r["imported"][w] for r in runs[module]) for w in WATCHED}
        ours = module in OURS
        ok = ours and not any(imported.values())
        if ours and not ok:
            section.misses.append(
                f"`{module}` imported {', '.join(w for w in WATCHED if imported[w])}: every DAG file that uses "
                "it pays for that on each parse."
            )
        if ours:
            section.goals.append(
                (
                    f"`{module}` imports none of {', '.join(WATCHED)}",
                    ok,
                    ", ".join(f"{w}: {'imported' if imported[w] else 'not imported'}" for w in WATCHED),
                )
            )
        rows.append(
            [
                f"`{module}`",
                figure.show(1),
                show_ratio(ratio(figure, anchor)) if ours else "(anchor)",
                str(last["new_modules"]),
                *[
                    f"{'yes' if imported[w] else 'no'} ({'yes' if last['present'][w] else 'no'})"
                    for w in WATCHED
                ],
                "" if not ours else "aiohttp, requests, sandbox not imported",
                met(ok) if ours else "",
            ]
        )
    section.add_table(header, rows)
    return section
