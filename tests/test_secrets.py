"""No secret reaches a log, an exception, XCom, a rendered template, a trigger or the metadata DB.

Runs the example DAGs and a run through faults with recognisable secrets (an access token, an
OAuth client secret and refresh token, the access tokens refreshed from them and the signed result
URLs), captures everything Airflow and the provider wrote, and searches it all.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path

import pytest
from conftest import (
    CONTACTS,
    SECRET_CLIENT_ID,
    SECRET_CLIENT_SECRET,
    SECRET_REFRESH_TOKEN,
    SECRET_TOKEN,
    _home,
)
from dagrun import run_dag

from airflow_provider_hubexport.exceptions import HubSpotExportError

DAGS = Path(__file__).resolve().parent.parent / "dags"


@pytest.fixture
def oauth_sandbox(sandbox, connect, airflow_db, tmp_path, monkeypatch):
    # The sandbox refuses the connection's access token, so every process refreshes through OAuth.
    sandbox.tokens.pop(SECRET_TOKEN)
    connect(extra={"client_id": SECRET_CLIENT_ID, "client_secret": SECRET_CLIENT_SECRET,
                   "refresh_token": SECRET_REFRESH_TOKEN})  # fmt: skip
    monkeypatch.setenv("HUBSPOT_EXPORT_DIR", str(tmp_path))
    monkeypatch.setenv("HUBSPOT_POKE_INTERVAL", "0.2")
    return sandbox


def _files_text(root: str) -> str:
    chunks = []
    for path in Path(root).rglob("*"):
        if path.is_file():
            chunks.append(path.read_bytes().decode("utf-8", "replace"))
    return "\n".join(chunks)


def test_no_secret_anywhere(oauth_sandbox, capsys, caplog, tmp_path):
    from airflow_provider_hubexport.hooks.hubspot import HubSpotHook
    from airflow_provider_hubexport.triggers.export import HubSpotExportTrigger

    sandbox = oauth_sandbox
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []  # everything the provider handed back to its caller

    # The example DAGs, end to end (templates rendered, XComs pushed, a trigger run, files landed).
    for name in ("hubspot_contacts_daily", "hubspot_list_export", "hubspot_export_one_task"):
        result = run_dag(name, (DAGS / f"{name}.py").read_text(), raw=True)
        assert set(result.tasks.values()) == {"success"}, (name, result.tasks)
        seen.append(json.dumps(result.xcom, default=str))

    # Faults: retried errors, a failing poll, an expired URL, a cut-short and a refused download.
    hook = HubSpotHook()
    sandbox.plan_next(pending_polls=0, processing_polls=0, expired_urls=1, cut_downloads=1, row_count=3000)
    task_id = hook.start_export(CONTACTS)
    sandbox.inject("status", status=429, retry_after=0.01, path="/status", times=2)
    sandbox.inject("status", status=503, retry_after=0.01, path="/status", times=1)
    seen.append(json.dumps(hook.download_export(task_id, tmp_path / "faults")))
    sandbox.expire_access_tokens()  # a refresh in the middle of the work
    sandbox.inject("status", status=403, path="/status", times=1)
    for call in (lambda: hook.get_export_status(task_id), lambda: hook.get_export_status("../1"),
                 lambda: hook.download_export(task_id, "/sys/nope")):  # fmt: skip
        with pytest.raises(HubSpotExportError) as err:
            call()
        seen += [str(err.value), repr(err.value), repr(err.value.__dict__)]
    seen.append(repr(hook.get_export_status(task_id)))
    seen.append(json.dumps(hook.get_export_status(task_id).to_dict()))
    seen.append(repr(hook.settings))

    # The trigger: its serialized form and its events.
    trigger = HubSpotExportTrigger(export_task_id=task_id, poll_interval=0.01)
    seen.append(json.dumps(trigger.serialize()))

    async def events():
        return [e.payload async for e in trigger.run()]

    seen.append(json.dumps(asyncio.run(events())))
    bad = HubSpotExportTrigger(export_task_id="424242", poll_interval=0.01)
    seen.append(json.dumps(asyncio.run(_collect(bad))))

    captured = capsys.readouterr()
    haystacks = {
        "provider return values, exceptions, reprs, trigger": "\n".join(seen),
        "stdout/stderr": captured.out + captured.err,
        "log records": caplog.text,
        "AIRFLOW_HOME (task logs and the metadata DB file)": _files_text(_home),
    }
    refreshed = [token for token, info in sandbox.tokens.items() if info["expires"] is not None]
    secrets = {
        "access token": SECRET_TOKEN,
        "client secret": SECRET_CLIENT_SECRET,
        "refresh token": SECRET_REFRESH_TOKEN,
        **{f"refreshed access token {i}": t for i, t in enumerate(refreshed)},
        **{f"URL signature {i}": sig for i, sig in enumerate(sandbox.issued_signatures)},
    }
    assert len(refreshed) >= 2 and len(sandbox.issued_signatures) >= 5  # the secrets were really in play
    assert "Export" in haystacks["stdout/stderr"] + haystacks["log records"]  # and the capture works
    assert os.path.exists(os.path.join(_home, "airflow.db"))
    leaks = [
        (what, where)
        for what, secret in secrets.items()
        for where, text in haystacks.items()
        if secret in text
    ]
    print(
        f"\nsearched {len(secrets)} secrets in {len(haystacks)} places ({sum(map(len, haystacks.values())):,} chars)"
    )
    if leaks:
        text = haystacks[leaks[0][1]]
        i = text.find(secrets[leaks[0][0]])
        print("LEAK CONTEXT:", text[max(0, i - 600) : i + 100])
    assert leaks == []
    assert all("Authorization" not in r.headers for r in sandbox.file_requests)


async def _collect(trigger):
    return [e.payload async for e in trigger.run()]


def test_secret_is_masked_in_process_before_it_travels(monkeypatch):
    """A secret reaches the in-process masker before its MaskSecret message leaves for the supervisor.

    The message itself carries the secret in clear, and the Task SDK logs what it sends at DEBUG
    (``dag.test()``'s in-process comms do: "Sending request msg=MaskSecret(value=...)"): Airflow 3.0
    sent it first and masked it after, so that line leaked the token. This checks the order on every
    version, whatever the log level or configuration of the run.
    """
    from airflow.sdk.execution_time import task_runner

    try:
        from airflow.sdk.log import redact
    except ImportError:  # Airflow 3.0
        from airflow.sdk.execution_time.secrets_masker import redact

    from airflow_provider_hubexport.secret_masking import mask_secret

    secret = "pat-na1-SECRET-SENT-TO-SUPERVISOR-77aa"
    sent: list[tuple[str, bool]] = []

    class RecordingComms:
        def send(self, msg, *args, **kwargs):
            value = getattr(msg, "value", None)
            sent.append((type(msg).__name__, value == secret and secret not in str(redact(repr(msg)))))

    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", RecordingComms(), raising=False)
    mask_secret(secret)
    assert sent == [("MaskSecret", True)]


def test_secret_is_not_sent_to_an_in_process_supervisor_that_logs_it(monkeypatch):
    """Under ``dag.test()`` the supervisor is the task's own process; Airflow 3.0's in-process comms
    log each message they send at DEBUG, body included. There the secret is masked in-process only."""
    from airflow.sdk.execution_time import task_runner

    from airflow_provider_hubexport.compat import AIRFLOW_V_3_1_PLUS
    from airflow_provider_hubexport.secret_masking import mask_secret

    secret = "pat-na1-SECRET-IN-PROCESS-88bb"
    sent: list[str] = []

    class InProcessSupervisorComms:  # the name Airflow's dag.test() comms have
        def send(self, msg, *args, **kwargs):
            sent.append(type(msg).__name__)

    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", InProcessSupervisorComms(), raising=False)
    mask_secret(secret)
    assert sent == (["MaskSecret"] if AIRFLOW_V_3_1_PLUS else [])


def test_the_dag_test_patch_is_installed_only_where_it_applies(monkeypatch):
    """Issue 26, point 12: the patch of 3.0's in-process comms is installed in a process whose task
    talks to an in-process supervisor (``dag.test()`` on 3.0) and nowhere else: a worker's task, a
    triggerer and every process on 3.1+ keep Airflow's class as it is."""
    from airflow.sdk.execution_time import supervisor, task_runner

    from airflow_provider_hubexport import secret_masking
    from airflow_provider_hubexport.compat import AIRFLOW_V_3_1_PLUS

    monkeypatch.setattr(secret_masking, "_guarded", False)
    comms_class = getattr(supervisor, "InProcessSupervisorComms", None)
    if comms_class is not None:
        monkeypatch.setattr(comms_class, "send", comms_class.send)  # restored after the test
    before = comms_class.send if comms_class is not None else None

    class WorkerComms:  # a real supervisor's comms, in another process
        def send(self, msg, *args, **kwargs):
            return None

    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", WorkerComms(), raising=False)
    assert secret_masking.guard_dag_test_comms() is False
    assert comms_class is None or comms_class.send is before

    if comms_class is not None:
        monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", object.__new__(comms_class), raising=False)
        assert secret_masking.guard_dag_test_comms() is (not AIRFLOW_V_3_1_PLUS)
        assert (comms_class.send is before) is AIRFLOW_V_3_1_PLUS
