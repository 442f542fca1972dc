"""The docs' examples run: the snippets the pages include are executed against the sandbox, and
README's DAG is the example DAG file's own code, so a renamed argument breaks a test, not a user."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_hook_page_example_starts_an_export(sandbox, connect):
    from docs.snippets.hook_usage import export_contacts

    connect()
    export_task_id = export_contacts()
    assert export_task_id.isdigit() and export_task_id in sandbox.exports
    assert len(sandbox.api_requests("/export/async", method="POST")) == 1
    assert len(sandbox.api_requests(f"/tasks/{export_task_id}/status")) == 1


def test_the_sandbox_page_example_waits_out_the_injected_429(monkeypatch):
    from docs.snippets.sandbox_in_process import plan_and_inject

    monkeypatch.delenv("AIRFLOW_CONN_HUBSPOT_SANDBOX", raising=False)
    requests = plan_and_inject()
    monkeypatch.delenv("AIRFLOW_CONN_HUBSPOT_SANDBOX", raising=False)
    statuses = [r for r in requests if r.path.endswith("/status")]
    assert len(statuses) == 2  # the injected 429, then the answer


def test_readmes_dag_is_the_example_dag_files_code():
    block = re.search(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    assert "HubSpotExportOperator" in block
    assert (ROOT / "dags" / "hubspot_export_one_task.py").read_text().endswith(block)
