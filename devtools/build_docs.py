"""Build the documentation in docs/ with Sphinx, warnings as errors, and check its internal links.

    .venv/bin/python devtools/build_docs.py      (or: make docs)

1. The docs venv `.venv-docs`: created with `python -m venv`, then the repository's uv (`.venv/bin/uv`)
   syncs `requirements/docs.txt` (the main lock plus Sphinx, myst-parser and furo, pinned) and
   installs this package with `--no-deps -e .`. A stamp file (`.venv-docs/.installed`) holds a hash
   of the lock, setup.cfg and pyproject.toml: a second run with them unchanged installs nothing.
2. `sphinx-build -W --keep-going -b html docs docs/_build/html`: any warning fails the build, among
   them a broken internal link (a Markdown link to a page or anchor that does not exist, an unknown
   `{doc}`/`{ref}` target, an autodoc object that does not import, a `literalinclude` of a missing
   file: `nitpicky` and myst's cross-reference checks turn each into a warning).
3. `sphinx-build -W -b linkcheck`, with every http(s) URL ignored (conf.py's `linkcheck_ignore`),
   so only links inside the site are checked and nothing reaches the internet.

Exits non-zero on the first step that fails, and prints where the index is.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv-docs"
LOCK = ROOT / "requirements" / "docs.txt"
STAMP = VENV / ".installed"
UV = ROOT / ".venv" / "bin" / "uv"
DOCS = ROOT / "docs"
BUILD = DOCS / "_build"
# What the docs venv is made of: a change to any of them reinstalls it.
INPUTS = [LOCK, ROOT / "setup.cfg", ROOT / "pyproject.toml"]


def log(message: str) -> None:
    print(f"build_docs: {message}", flush=True)


def run(*args: str | Path, **kwargs) -> None:
    completed = subprocess.run([str(arg) for arg in args], cwd=ROOT, check=False, **kwargs)
    if completed.returncode != 0:
        log(f"FAILED ({completed.returncode}): {' '.join(str(a) for a in args)}")
        sys.exit(completed.returncode or 1)


def fingerprint() -> str:
    digest = hashlib.sha256()
    digest.update(sys.version.encode())
    for path in INPUTS:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def ensure_venv() -> Path:
    python = VENV / "bin" / "python"
    wanted = fingerprint()
    if python.exists() and STAMP.exists() and STAMP.read_text().strip() == wanted:
        log(f"{VENV.name} is current (lock unchanged): nothing to install")
        return python
    if not UV.exists():
        log(f"{UV.relative_to(ROOT)} is missing: run `make venv` first")
        sys.exit(2)
    started = time.monotonic()
    if not python.exists():
        log(f"creating {VENV.name}")
        run(sys.executable, "-m", "venv", VENV)
        # Keep the venv out of git without touching the repository's .gitignore.
        (VENV / ".gitignore").write_text("*\n")
    log(f"syncing {VENV.name} with {LOCK.relative_to(ROOT)}")
    STAMP.unlink(missing_ok=True)
    run(UV, "pip", "sync", "--quiet", "--python", python, LOCK)
    run(UV, "pip", "install", "--quiet", "--python", python, "--no-deps", "-e", ".")
    STAMP.write_text(wanted + "\n")
    log(f"{VENV.name} ready in {time.monotonic() - started:.1f} s")
    return python


def main() -> int:
    started = time.monotonic()
    python = ensure_venv()
    env = dict(os.environ)
    # Importing the operators reads Airflow's configuration: keep Airflow's home out of the user's.
    env.setdefault("AIRFLOW_HOME", str(BUILD / "airflow-home"))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    sphinx = [python, "-m", "sphinx", "-W", "--keep-going", "-q"]

    log("sphinx-build -b html (warnings are errors)")
    # -E: read every page again. An incremental build would not warn again about a page that did
    # not change, so a broken link would pass on the second run; a full read costs a few seconds.
    run(*sphinx, "-E", "-b", "html", DOCS, BUILD / "html", env=env)

    log("sphinx-build -b linkcheck (internal links only: every http(s) URL is ignored)")
    shutil.rmtree(BUILD / "linkcheck", ignore_errors=True)
    run(*sphinx, "-b", "linkcheck", DOCS, BUILD / "linkcheck", env=env)

    index = BUILD / "html" / "index.html"
    log(f"done in {time.monotonic() - started:.1f} s; open {index.relative_to(ROOT)}")
    print(index)
    return 0


if __name__ == "__main__":
    sys.exit(main())
