"""Sphinx configuration: `python devtools/build_docs.py` (make docs) builds with warnings as errors."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the package is installed editable; the docs' snippets import from here

project = "airflow-provider-hubexport"
author = "airflow-provider-hubexport contributors"

extensions = ["myst_parser", "sphinx.ext.autodoc"]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "snippets", "**/__pycache__"]

# Markdown links: `[x](page.md)` and `[x](page.md#a-heading)` must name a page and a heading that
# exist, or myst warns (and -W fails the build). Anchors exist for headings down to level 3.
myst_heading_anchors = 3
myst_all_links_external = False
myst_enable_extensions = ["colon_fence"]
# Not nitpicky: Airflow's own types in the signatures have no target here. A missing page, heading
# or {ref} label warns without it (myst.xref_missing), and -W fails the build.
nitpicky = False

autodoc_default_options = {"members": True, "show-inheritance": True, "member-order": "bysource"}
autodoc_typehints = "signature"
autodoc_inherit_docstrings = False  # Airflow's BaseOperator docstrings are not ours

# The internal link check (`-b linkcheck`): nothing reaches the internet.
linkcheck_ignore = [r"https?://.*", r"mailto:.*"]
linkcheck_anchors = True

html_theme = "furo"
html_title = "airflow-provider-hubexport"
