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
    # installed for the tests: imported only when Airflow asks an operator for its lineage
    "openlineage",
    "airflow.providers.openlineage",
    "airflow.providers.common.compat.openlineage.facet",
    # installed for the tests: imported only when a file lands on object storage
    "airflow.providers.amazon",
    "boto3",
    "botocore",
    "s3fs",
    "moto",
    "airflow_provider_hubexport.landing",
    "airflow_provider_hubexport.object_store",
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


# Which room may import which (README, "How it is built"). Every import counts, also those inside
# functions: a lazy import still ties the two rooms together.
PACKAGE = "airflow_provider_hubexport"
# The I/O-free core, bottom up: each may import those before it.
CORE_ORDER = [
    ("exceptions", "compat"),
    ("secret_masking",),
    ("validation",),
    ("api", "window"),
    ("errors",),
    ("polling", "quota", "wait_memory"),
    ("object_store",),
    ("landing",),
]
CORE = {module for level in CORE_ORDER for module in level}
ROOMS = {
    # room: rooms of this package it may import (a room is a top-level module or sub-package)
    **{
        module: {m for below in CORE_ORDER[: i + 1] for m in below}
        for i, level in enumerate(CORE_ORDER)
        for module in level
    },
    "hooks": CORE | {"hooks"},
    "triggers": CORE | {"hooks"},
    "waiting": CORE | {"triggers"},
    "lazy_hook": {"hooks"},
    # OpenLineage itself only inside its functions; a hook with short timeouts for its two calls
    "lineage": CORE | {"lineage", "hooks"},
    "sensors": CORE | {"lazy_hook", "waiting", "hooks", "triggers"},
    "operators": CORE | {"lazy_hook", "waiting", "hooks", "triggers", "lineage"},
    "sandbox": {"sandbox"},  # an independent check of the client: none of it
    "__init__": set(),
}
NO_HTTP_LIBRARY = CORE | {"waiting", "lazy_hook"}  # no requests, aiohttp: I/O lives in hooks/


def _imports(path) -> set[str]:
    import ast

    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_each_room_imports_only_the_rooms_below_it():
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / PACKAGE
    broken = []
    for path in sorted(root.rglob("*.py")):
        room = path.relative_to(root).parts[0].removesuffix(".py")
        assert room in ROOMS, f"{path}: a new room; say in ROOMS (and the README) what it may import"
        for name in _imports(path):
            top = name.split(".")[0]
            if top == PACKAGE and name != PACKAGE:
                used = name.split(".")[1]
                if used != room and used not in ROOMS[room]:
                    broken.append(f"{path.relative_to(root)} imports {name}")
            elif top in ("requests", "aiohttp") and room in NO_HTTP_LIBRARY:
                broken.append(f"{path.relative_to(root)} imports {name} (I/O belongs in hooks/)")
    assert broken == []
