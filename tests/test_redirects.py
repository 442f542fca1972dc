"""Redirects are never followed: not by the API calls (the token would go with them), not by the
download (a signed URL is a credential, and the file host must never see a token).

The sandbox's ``redirect`` fault answers a real 3xx with a ``Location`` that serves the same
resource under ``/moved``: a client that followed it would succeed, and the sandbox's record shows
whether anything arrived there and with which headers. So each test below fails if the client
follows redirects (checked by flipping ``allow_redirects`` in the hooks).
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from conftest import CONTACTS, SECRET_TOKEN

from airflow_provider_hubexport.exceptions import HubSpotExportError

MOVED = "/moved/"


def _moved(sandbox):
    return [r for r in sandbox.requests if r.path.startswith(MOVED)]


def _carries_token(request) -> bool:
    return (
        any(SECRET_TOKEN in value for value in request.headers.values()) or "Authorization" in request.headers
    )


def _complete(sandbox, hook, **plan):
    sandbox.plan_next(pending_polls=0, processing_polls=0, **plan)
    task_id = hook.start_export(CONTACTS)
    hook.get_export_status(task_id)  # COMPLETE: the sandbox has written the file
    return task_id


# -- the sandbox's redirects are real -----------------------------------------------------------
@pytest.mark.parametrize("server", ["api", "files"])
def test_sandbox_redirect_is_real_and_followable(sandbox, hook, server):
    """Without this, the tests below could pass because nothing was there to follow."""
    task_id = _complete(sandbox, hook)
    if server == "api":
        url = f"{sandbox.api_url}/crm/v3/exports/export/async/tasks/{task_id}/status"
        headers = {"Authorization": f"Bearer {SECRET_TOKEN}"}
    else:
        url, headers = hook.get_export_status(task_id).result_url, {}
    sandbox.inject("redirect", status=307, server=server, path="/", times=2)
    first = requests.get(url, headers=headers, timeout=10, allow_redirects=False)
    target, source = urlsplit(first.headers["Location"]), urlsplit(url)
    assert first.status_code == 307 and target.netloc == source.netloc
    assert (target.path, target.query) == ("/moved" + source.path, source.query)
    followed = requests.get(url, headers=headers, timeout=10)  # requests follows by default
    assert followed.status_code == 200 and followed.history[0].status_code == 307
    assert len(_moved(sandbox)) == 1


def test_redirect_fault_needs_a_redirect_status(sandbox):
    with pytest.raises(ValueError, match="status=307"):
        sandbox.inject("redirect", path="/status")


# -- the sync hook's API calls --------------------------------------------------------------------
def _statuses(statuses: list[int], on_every_leg: int) -> list[Any]:
    """Every redirect status on the main leg; one of them on the others (the refusal does not
    depend on which)."""
    return [pytest.param(s, marks=() if s == on_every_leg else pytest.mark.repetition) for s in statuses]


@pytest.mark.parametrize("status", _statuses([301, 302, 303, 307, 308], on_every_leg=307))
@pytest.mark.parametrize("location", ["same", "files"])
def test_status_call_does_not_follow_a_redirect(sandbox, hook, status, location):
    task_id = hook.start_export(CONTACTS)
    sandbox.inject("redirect", status=status, location=location, path="/status", times=10)
    with pytest.raises(HubSpotExportError) as err:
        hook.get_export_status(task_id)
    assert err.value.status_code == status
    assert _moved(sandbox) == [] and sandbox.file_requests == []  # nothing went to the target
    assert not any(_carries_token(r) for r in sandbox.requests if r.server == "files")


@pytest.mark.parametrize("status", [307, 308])
def test_start_call_does_not_follow_a_redirect(sandbox, hook, status):
    # 307 and 308 keep the method and body: following would start the export a second time elsewhere.
    sandbox.inject("redirect", status=status, path="/async", method="POST", times=10)
    with pytest.raises(HubSpotExportError) as err:
        hook.start_export(CONTACTS)
    assert err.value.status_code == status
    assert _moved(sandbox) == [] and sandbox.exports == {}


def test_redirect_to_another_listener_never_gets_the_token(sandbox, hook):
    """A listener at another address records whatever reaches it: nothing does, least of all the token."""
    task_id = hook.start_export(CONTACTS)
    sandbox.inject("redirect", status=302, location=sandbox.files_url, path="/status", times=10)
    with pytest.raises(HubSpotExportError):
        hook.get_export_status(task_id)
    assert sandbox.file_requests == []


async def test_async_client_does_not_follow_a_redirect(sandbox, connect):
    from airflow_provider_hubexport.hooks.hubspot_async import HubSpotAsyncClient

    connect()
    task_id = _complete_raw(sandbox)
    sandbox.inject("redirect", status=307, path="/status", times=10)
    async with HubSpotAsyncClient() as client:
        with pytest.raises(HubSpotExportError) as err:
            await client.get_export_status(task_id)
    assert err.value.status_code == 307 and _moved(sandbox) == []


def _complete_raw(sandbox):
    sandbox.plan_next(pending_polls=0, processing_polls=0)
    response = requests.post(
        f"{sandbox.api_url}/crm/v3/exports/export/async",
        json=CONTACTS,
        headers={"Authorization": f"Bearer {SECRET_TOKEN}"},
        timeout=10,
    )
    return response.json()["id"]


# -- the download ---------------------------------------------------------------------------------
@pytest.mark.parametrize("status", _statuses([301, 302, 307], on_every_leg=302))
@pytest.mark.parametrize("location", ["same", "api"])
def test_download_does_not_follow_a_redirect(sandbox, hook, tmp_path, status, location):
    task_id = _complete(sandbox, hook)
    sandbox.inject("redirect", status=status, server="files", location=location, path="/hubspot-exports/")
    with pytest.raises(HubSpotExportError) as err:
        hook.download_export(task_id, tmp_path / "out", max_attempts=1)
    assert err.value.status_code == status
    assert _moved(sandbox) == []  # neither the file host's /moved nor the API host's saw a request
    assert os.listdir(tmp_path / "out") == []  # nothing landed, no staging file left
    assert sandbox.file_requests and not any(_carries_token(r) for r in sandbox.file_requests)


def test_download_after_a_redirect_tries_a_fresh_url_not_the_location(sandbox, hook, tmp_path):
    """A 3xx is not retryable; the next attempt (if any) starts again from a fresh signed URL."""
    task_id = _complete(sandbox, hook)
    sandbox.inject("redirect", status=302, server="files", path="/hubspot-exports/")
    with pytest.raises(HubSpotExportError, match="HTTP 302"):
        hook.download_export(task_id, tmp_path / "out", max_attempts=3)
    (landed,) = hook.download_export(task_id, tmp_path / "out")  # the fault is used up
    assert os.path.getsize(landed["path"]) == landed["size"]
    assert _moved(sandbox) == [] and not any(_carries_token(r) for r in sandbox.file_requests)
