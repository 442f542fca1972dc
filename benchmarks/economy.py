"""Benchmark 3, API economy: status calls spent on exports of 1 minute, 10 minutes and 2 hours.

Why: HubSpot rate-limits the API per account, and every poll of every wait counts. The default
growing interval (``polling.py``) should cost tens of calls for a two-hour export where a fixed
60 s poke costs over a hundred, and notice completion no later than one interval after it.
Simulated time in a child process (``economy_child``); the anchor, a fixed 60 s poke, runs through
the same trigger and sandbox with ``backoff_factor=1``.
"""

from __future__ import annotations

import tempfile

from benchmarks.common import Section, child_env, met, run_json_child, show_ratio

GOAL_CALLS_2H = 30
LABELS = {60: "1 minute", 600: "10 minutes", 7200: "2 hours"}


def run(work: str) -> Section:
    with open(f"{work}/economy-child.log", "w") as log:
        data = run_json_child(
            ["-m", "benchmarks.economy_child"],
            env=child_env(tempfile.mkdtemp(prefix="airflow-home-", dir=work)),
            timeout=300,
            log=log,
        )
    ours = data["schedules"]["ours"]
    section = Section(
        "3. API economy",
        "Status calls spent waiting for one export, in simulated time (a fake clock shared by the trigger "
        "and an in-process sandbox, as in `tests/test_trigger.py::test_two_hour_export_costs_tens_of_calls`; "
        "every call is a real HTTP request the sandbox counts). Ours: the default polling "
        f"(`poll_interval={ours['poll_interval']:g}`, `backoff_factor={ours['backoff_factor']:g}`, "
        f"`max_poll_interval={ours['max_poll_interval']:g}`, from `polling.py`); anchor: a fixed 60 s poke. "
        "Calls include the one check the sensor makes before deferring. Deterministic: one run each.",
    )
    by = {(r["schedule"], r["duration"]): r for r in data["results"]}
    header = [
        "export takes",
        "ours: calls",
        "fixed 60 s: calls",
        "ours / fixed",
        "ours: added wait (s)",
        "ours: last interval (s)",
        "fixed 60 s: added wait (s)",
        "goal",
        "met",
    ]
    rows = []
    for duration, label in LABELS.items():
        o, f = by[("ours", duration)], by[("fixed60", duration)]
        goals = [("added wait <= last interval", o["added_wait"] <= o["last_interval"])]
        if duration == 7200:
            goals.insert(0, (f"<= {GOAL_CALLS_2H} calls", o["calls"] <= GOAL_CALLS_2H))
        for text, ok in goals:
            if not ok:
                section.misses.append(
                    f"{label}: {text} missed with {o['calls']} calls, an added wait of "
                    f"{o['added_wait']:.0f} s and a last interval of {o['last_interval']:.0f} s."
                )
            section.goals.append(
                (
                    f"{label}: {text}",
                    ok,
                    f"{o['calls']} calls, added wait {o['added_wait']:.0f} s, last interval {o['last_interval']:.0f} s",
                )
            )
        rows.append(
            [
                label,
                str(o["calls"]),
                str(f["calls"]),
                show_ratio(o["calls"] / f["calls"]),
                f"{o['added_wait']:.1f}",
                f"{o['last_interval']:.1f}",
                f"{f['added_wait']:.1f}",
                "; ".join(text for text, _ in goals),
                "; ".join(met(ok) for _, ok in goals),
            ]
        )
    section.add_table(header, rows)
    section.notes.append(
        "Added wait: the time the completion was noticed minus the time the export completed. The fixed "
        "poke's 0 s is an artifact of export lengths that are multiples of 60 s; for an export that ends "
        "at a random moment it averages 30 s (at most 60 s), and ours averages half its last interval."
    )
    return section
