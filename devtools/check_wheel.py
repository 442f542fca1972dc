"""The package as users install it: build the sdist and the wheel, check them, install the wheel.

1. Copies the files git knows (tracked, and new ones not ignored) to a temporary folder and runs
   ``uv build`` there: the sdist first, then the wheel built from the sdist, so a file missing from
   the sdist breaks the wheel too.
2. ``twine check`` (a pinned twine, run by ``uv tool run``) on both; LICENSE, py.typed and
   HubSpotExportRunFacet.json must be in both archives, and the wheel's version must be the package's.
3. A clean venv (Python of the main venv) gets the **wheel**, its declared dependencies resolved by
   uv within the main lock (``requirements/test.txt`` as constraints: the Airflow ``make venv``
   installs). No source tree on the path: every check runs from a folder outside the repository.
4. There: every module imports (from the venv, not the source tree); ``airflow providers list``
   shows the provider at this version; the provider info validates against Airflow's own schema;
   ``python -m airflow_provider_hubexport.sandbox --help``; one export through the sandbox started
   from the wheel (start, poll to COMPLETE, download with the installed hook); the packaged data
   files read through importlib.resources.

Exit status 1 on any failure. ``--keep`` leaves the temporary folder for a look.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UV = ROOT / ".venv" / "bin" / "uv"
LOCK = ROOT / "requirements" / "test.txt"
TWINE = "twine==6.1.0"
DATA_FILES = ("LICENSE", "py.typed", "HubSpotExportRunFacet.json")
PACKAGE = "airflow_provider_hubexport"


class CheckFailed(Exception):
    pass


def package_version() -> str:
    text = (ROOT / PACKAGE / "__init__.py").read_text()
    return re.search(r'^__version__ = "([^"]+)"', text, re.M).group(1)


def run(args: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    out = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise CheckFailed(
            f"{' '.join(map(str, args))} exited {out.returncode}:\n{out.stdout[-3000:]}{out.stderr[-3000:]}"
        )
    return out.stdout


class Checks:
    def __init__(self) -> None:
        self.failed: list[str] = []
        self.started = time.monotonic()

    def check(self, name: str, func, *args):
        t = time.monotonic()
        try:
            result = func(*args)
        except Exception as err:  # noqa: BLE001 - every failure is reported, then the exit status says it
            self.failed.append(name)
            print(f"FAIL {name} ({time.monotonic() - t:.1f} s): {err}", flush=True)
            return None
        detail = f": {result}" if isinstance(result, str) and result else ""
        print(f"ok   {name} ({time.monotonic() - t:.1f} s){detail}", flush=True)
        return result


def copy_sources(dest: Path) -> int:
    """The files git knows (tracked and new, not ignored), as a fresh clone plus uncommitted work."""
    listed = run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT)
    count = 0
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the work tree is not copied
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
            count += 1
    return count


def build(src: Path, dist: Path) -> tuple[Path, Path]:
    run([str(UV), "build", "--quiet", "--out-dir", str(dist), str(src)])
    sdists, wheels = sorted(dist.glob("*.tar.gz")), sorted(dist.glob("*.whl"))
    if len(sdists) != 1 or len(wheels) != 1:
        raise CheckFailed(f"expected one sdist and one wheel, got {[p.name for p in dist.iterdir()]}")
    return sdists[0], wheels[0]


def twine_check(sdist: Path, wheel: Path) -> str:
    env = {**os.environ, "NO_COLOR": "1"}
    args = [
        str(UV),
        "tool",
        "run",
        "--quiet",
        "--from",
        TWINE,
        "twine",
        "check",
        "--strict",
        str(sdist),
        str(wheel),
    ]
    out = run(args, env=env)
    passed = out.count("PASSED")
    if passed != 2:
        raise CheckFailed(out)
    return "sdist and wheel PASSED"


def archive_contents(sdist: Path, wheel: Path, version: str) -> str:
    with tarfile.open(sdist) as tar:
        in_sdist = tar.getnames()
    with zipfile.ZipFile(wheel) as whl:
        in_wheel = whl.namelist()
        metadata = next(whl.read(n).decode() for n in in_wheel if n.endswith(".dist-info/METADATA"))
    missing = [
        f"{data} in {kind}"
        for kind, names in (("sdist", in_sdist), ("wheel", in_wheel))
        for data in DATA_FILES
        if not any(name.endswith(f"/{data}") for name in names)
    ]
    if missing:
        raise CheckFailed("missing: " + ", ".join(missing))
    if not any(re.search(r"\.dist-info/licenses/LICENSE$", n) for n in in_wheel):
        raise CheckFailed("the wheel's LICENSE is not in its .dist-info/licenses/")
    if f"\nVersion: {version}\n" not in metadata:
        raise CheckFailed(f"the wheel's METADATA does not say Version: {version}")
    if any("/tests/" in n or n.startswith("tests/") for n in in_wheel):
        raise CheckFailed("the wheel ships the tests")
    requires = [
        line.split(": ", 1)[1] for line in metadata.splitlines() if line.startswith("Requires-Dist: ")
    ]
    runtime = [r for r in requires if "extra ==" not in r]
    return f"{len(in_sdist)} files in the sdist, {len(in_wheel)} in the wheel; requires {', '.join(runtime)}"


def make_venv(venv: Path) -> str:
    # The main venv's interpreter (what `make venv` tests with), in a venv of its own.
    base = run(
        [str(ROOT / ".venv" / "bin" / "python"), "-c", "import sys; print(sys._base_executable)"]
    ).strip()
    run([base, "-m", "venv", str(venv)])
    return run([str(venv / "bin" / "python"), "--version"]).strip()


def install_wheel(venv: Path, wheel: Path) -> str:
    # The wheel's own dependency list is what gets resolved; the lock only picks the versions.
    run(
        [
            str(UV),
            "pip",
            "install",
            "--quiet",
            "--python",
            str(venv / "bin" / "python"),
            str(wheel),
            "-c",
            str(LOCK),
        ]
    )
    out = run([str(UV), "pip", "list", "--python", str(venv / "bin" / "python"), "--format", "json"])
    versions = {p["name"].lower(): p["version"] for p in json.loads(out)}
    shown = (
        "airflow-provider-hubexport",
        "apache-airflow",
        "apache-airflow-providers-http",
        "aiohttp",
        "tenacity",
    )
    return ", ".join(f"{name} {versions.get(name, '?')}" for name in shown) + f" ({len(versions)} packages)"


# Runs inside the clean venv, from a folder outside the repository. Each check prints one line.
INSIDE = r"""
import importlib, importlib.resources, json, os, pkgutil, subprocess, sys, tempfile, time
from pathlib import Path

VERSION, REPO = sys.argv[1], sys.argv[2]
failed = []

def check(name):
    def wrap(func):
        t = time.monotonic()
        try:
            detail = func()
        except Exception as err:
            failed.append(name)
            print(f"FAIL {name} ({time.monotonic() - t:.1f} s): {type(err).__name__}: {err}", flush=True)
        else:
            print(f"ok   {name} ({time.monotonic() - t:.1f} s){': ' + detail if detail else ''}", flush=True)
    return wrap

@check("the package comes from the venv, not the source tree")
def _():
    import airflow_provider_hubexport as pkg
    where = Path(pkg.__file__).resolve()
    assert str(where).startswith(sys.prefix), where
    assert not str(where).startswith(REPO), where
    assert pkg.__version__ == VERSION, pkg.__version__
    return str(where.parent)

@check("every module imports")
def _():
    import airflow_provider_hubexport as pkg
    names = [m.name for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + ".")]
    for name in names:
        if name.endswith(".__main__"):
            continue  # runs the sandbox: checked by --help below
        importlib.import_module(name)
    return f"{len(names)} modules"

@check("the packaged data files (importlib.resources)")
def _():
    root = importlib.resources.files("airflow_provider_hubexport")
    facet = json.loads(root.joinpath("HubSpotExportRunFacet.json").read_text())
    assert root.joinpath("py.typed").is_file()
    assert "properties" in facet or "$defs" in facet, sorted(facet)
    return f"py.typed, HubSpotExportRunFacet.json ({len(json.dumps(facet))} bytes of JSON schema)"

@check("provider info validates against Airflow's provider schema")
def _():
    import jsonschema
    from airflow_provider_hubexport import get_provider_info
    schema = json.loads(importlib.resources.files("airflow").joinpath("provider_info.schema.json").read_text())
    info = get_provider_info()
    jsonschema.validate(info, schema)
    assert info["versions"][0] == VERSION, info["versions"]
    return f"versions {info['versions']}"

@check("airflow providers list shows the provider")
def _():
    out = subprocess.run([sys.executable, "-m", "airflow", "providers", "list", "-o", "json"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = json.loads(out.stdout[out.stdout.index("["):])
    ours = [r for r in rows if r.get("package_name") == "airflow-provider-hubexport"]
    assert ours, f"not listed among {len(rows)} providers"
    assert ours[0]["version"] == VERSION, ours[0]
    return f"airflow-provider-hubexport {ours[0]['version']} among {len(rows)} providers"

@check("python -m airflow_provider_hubexport.sandbox --help")
def _():
    out = subprocess.run([sys.executable, "-m", "airflow_provider_hubexport.sandbox", "--help"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "--ready-file" in out.stdout, out.stdout + out.stderr
    return out.stdout.splitlines()[0][:60] + "..."

@check("one export through the sandbox, with the installed hook")
def _():
    work = Path(tempfile.mkdtemp())
    ready = work / "ready"
    log = open(work / "sandbox.log", "w")
    sandbox = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_hubexport.sandbox", "--port", "0", "--ready-file", str(ready),
         "--pending-seconds", "0.5", "--processing-seconds", "1", "--rows", "200", "--workdir", str(work / "sandbox")],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert sandbox.poll() is None, (work / "sandbox.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "the sandbox did not start in 60 s"
            time.sleep(0.1)
        url = ready.read_text().strip()
        os.environ["AIRFLOW_CONN_HUBSPOT_DEFAULT"] = json.dumps(
            {"conn_type": "hubspot", "host": url, "password": "sandbox-token"})
        from airflow_provider_hubexport.hooks.hubspot import HubSpotHook
        hook = HubSpotHook()
        export_task_id = hook.start_export({
            "exportType": "VIEW", "format": "CSV", "exportName": "wheel-check", "objectType": "CONTACT",
            "objectProperties": ["email", "firstname", "lastname"], "language": "EN"})
        deadline = time.monotonic() + 60
        polls = 0
        while True:
            status = hook.get_export_status(export_task_id)
            polls += 1
            if status.status == "COMPLETE":
                break
            assert status.status in ("PENDING", "PROCESSING"), status
            assert time.monotonic() < deadline, f"still {status.status} after 60 s"
            time.sleep(0.3)
        landed = hook.download_export(export_task_id, str(work / "out"), unzip=True)
        rows = sum(Path(f["path"]).read_text().count("\n") for f in landed)
        assert landed and rows > 1, landed
        return f"export {export_task_id}: COMPLETE after {polls} polls, {len(landed)} file(s), {rows} lines at {url}"
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=30)
        log.close()

print("FAILED: " + ", ".join(failed) if failed else "all checks in the venv passed", flush=True)
sys.exit(1 if failed else 0)
"""


def checks_in_venv(venv: Path, outside: Path, version: str) -> str:
    script = outside / "check_installed.py"
    script.write_text(textwrap.dedent(INSIDE))
    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(outside),
        "AIRFLOW_HOME": str(outside / "airflow-home"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "LANG": "C.UTF-8",
    }
    proc = subprocess.run(
        [str(venv / "bin" / "python"), "-I", str(script), version, str(ROOT)],
        cwd=outside,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    for line in proc.stdout.splitlines():
        if line.startswith(("ok ", "FAIL ")):
            print(f"       {line}", flush=True)
    if proc.returncode != 0:
        raise CheckFailed(f"exit {proc.returncode}: {proc.stdout.splitlines()[-1:]} {proc.stderr[-3000:]}")
    return ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    options = parser.parse_args()
    version = package_version()
    work = Path(tempfile.mkdtemp(prefix="hubexport-wheel-"))
    src, dist, venv, outside = work / "src", work / "dist", work / "venv", work / "outside"
    for folder in (src, dist, outside):
        folder.mkdir()
    checks = Checks()
    print(f"checking airflow-provider-hubexport {version} as users install it (in {work})", flush=True)
    try:
        checks.check("copy the files git knows", lambda: f"{copy_sources(src)} files")
        built = checks.check("uv build: sdist, then the wheel from it", build, src, dist)
        if built:
            sdist, wheel = built
            print(f"       {sdist.name}, {wheel.name}", flush=True)
            checks.check(f"twine check --strict ({TWINE})", twine_check, sdist, wheel)
            checks.check(
                "LICENSE, py.typed, HubSpotExportRunFacet.json in both archives",
                archive_contents,
                sdist,
                wheel,
                version,
            )
            if checks.check("a clean venv (python -m venv)", make_venv, venv):
                if checks.check(
                    f"install the wheel (constraints: {LOCK.relative_to(ROOT)})", install_wheel, venv, wheel
                ):
                    checks.check(
                        "in the venv, from outside the repository", checks_in_venv, venv, outside, version
                    )
    finally:
        if options.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    seconds = time.monotonic() - checks.started
    if checks.failed:
        print(f"check_wheel: FAILED ({', '.join(checks.failed)}) in {seconds:.0f} s", flush=True)
        return 1
    print(
        f"check_wheel: the sdist and the wheel of {version} pass every check in {seconds:.0f} s", flush=True
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
