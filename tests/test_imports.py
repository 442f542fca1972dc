"""DAG files import our operator and sensor modules on every parse: keep that cheap."""

from __future__ import annotations

import subprocess
import sys

HEAVY = [
    "aiohttp",
    "requests",
    "airflow_provider_hubexport.hooks.hubspot",
    "airflow_provider_hubexport.hooks.hubspot_async",
    "airflow_provider_hubexport.sandbox",
]
LIGHT_MODULES = [
    "airflow_provider_hubexport.operators.export",
    "airflow_provider_hubexport.sensors.export",
    "airflow_provider_hubexport.triggers.export",
]


def test_dag_facing_modules_import_no_http_library_nor_the_hook():
    code = (
        "import sys, importlib\n"
        "import airflow.sdk\n"
        f"before = {{m for m in {HEAVY!r} if m in sys.modules}}\n"
        f"for name in {LIGHT_MODULES!r}: importlib.import_module(name)\n"
        f"print(sorted({{m for m in {HEAVY!r} if m in sys.modules}} - before))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
