"""Benchmarks of airflow-provider-hubexport (issue 7): ``python -m benchmarks [--quick]``.

Each benchmark measures our code beside an anchor measured in the same run (the HTTP provider,
curl, a bare aiohttp loop, a fixed poke) and reports figures, never pass/fail: RESULTS.md says
which goals are met and why the others are not. Every server is started here on 127.0.0.1.

This package is kept import-light: the measuring child processes import it, and what they
import before taking a baseline is part of what they measure.
"""
