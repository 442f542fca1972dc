"""The release's own bookkeeping: one version everywhere, a changelog entry for it, a named removal
release for every deprecation. (The built sdist and wheel: devtools/check_wheel.py, the ``wheel`` leg.)"""

from __future__ import annotations

import configparser
import re
from pathlib import Path

import pytest

import airflow_provider_hubexport
from airflow_provider_hubexport import get_provider_info

pytestmark = pytest.mark.no_airflow
ROOT = Path(__file__).resolve().parent.parent


def test_one_source_for_the_version():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    assert cfg["metadata"]["version"] == "attr: airflow_provider_hubexport.__version__"
    assert re.fullmatch(r"\d+\.\d+\.\d+", airflow_provider_hubexport.__version__)
    assert get_provider_info()["versions"][0] == airflow_provider_hubexport.__version__


def test_the_changelog_names_this_version_first():
    text = (ROOT / "CHANGELOG.md").read_text()
    releases = re.findall(r"^## \[(\d+\.\d+\.\d+)\] - \d{4}-\d{2}-\d{2}$", text, re.M)
    assert releases and releases[0] == airflow_provider_hubexport.__version__
    first = text.split(f"## [{releases[0]}]")[1].split("\n## [")[0]
    sections = re.findall(r"^### (\w+)", first, re.M)
    if "Breaking" in sections:
        assert sections[0] == "Breaking", sections


def test_every_deprecation_names_the_release_that_removes_it():
    from airflow_provider_hubexport.hooks import ids

    version = tuple(int(n) for n in airflow_provider_hubexport.__version__.split(".")[:2])
    assert tuple(int(n) for n in ids.REMOVED_IN.split(".")) > version
    for path in (ROOT / "airflow_provider_hubexport").rglob("*.py"):
        source = path.read_text()
        if "DeprecationWarning" in source and "import" in source:
            assert "REMOVED_IN" in source or re.search(r"removed in [^ ]*\d+\.\d+", source), path


def test_the_license_is_apache_2():
    text = (ROOT / "LICENSE").read_text()
    assert text.lstrip().startswith("Apache License\n") and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
