"""What the hooks promise beyond the exports API (issue 26): the ``verify`` extra read in one place
and used by both transports, the inherited ``run_with_advanced_retry`` and ``HttpAsyncHook.run``
call shapes kept to HubSpot's rules, the export task id under its own name, and the download
living in ``hooks/download.py``.

TLS is met for real: a TLS endpoint on loopback (a certificate from a CA made here) relays to the
sandbox, so every request a hook sends still lands in the sandbox's record.
"""

from __future__ import annotations

import asyncio
import datetime
import inspect
import ipaddress
import json
import os
import shutil
import ssl
import subprocess
import threading
import warnings

import aiohttp
import pytest
import tenacity
from airflow.exceptions import AirflowProviderDeprecationWarning
from conftest import CONTACTS, SECRET_TOKEN, arrival_gaps

from airflow_provider_hubexport.exceptions import HubSpotExportError, HubSpotExportRequestError
from airflow_provider_hubexport.hooks.hubspot import HubSpotHook
from airflow_provider_hubexport.hooks.hubspot_async import HubSpotAsyncHook

DETAILS = "/account-info/v3/details"  # a GET the sandbox answers without an export


# -- a TLS endpoint in front of the sandbox ---------------------------------------------------------
def _certificates(directory):
    """A CA and a certificate it signed for 127.0.0.1: (CA file, certificate file, key file)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def build(subject, issuer, key, signer, *extensions):
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        )
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(signer, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    no_usage = dict.fromkeys(
        ("content_commitment", "data_encipherment", "key_agreement", "encipher_only", "decipher_only"), False
    )
    ca = build(
        "hubexport test CA",
        "hubexport test CA",
        ca_key,
        ca_key,
        (x509.BasicConstraints(ca=True, path_length=None), True),
        (x509.KeyUsage(digital_signature=False, key_encipherment=False, key_cert_sign=True, crl_sign=True,
                       **no_usage), True),
    )  # fmt: skip
    cert = build(
        "127.0.0.1",
        "hubexport test CA",
        key,
        ca_key,
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (x509.KeyUsage(digital_signature=True, key_encipherment=True, key_cert_sign=False, crl_sign=False,
                       **no_usage), True),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
        (x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False),
        (x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False),
    )  # fmt: skip
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return tuple(str(p) for p in paths)


class _TlsFront:
    """Accepts TLS on 127.0.0.1 and relays the bytes to the sandbox's plain-http API port."""

    def __init__(self, upstream_port: int, cert: str, key: str) -> None:
        self.upstream_port = upstream_port
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(cert, key)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="tls-front", daemon=True)

    def start(self) -> _TlsFront:
        self.thread.start()
        serve = asyncio.start_server(self._relay, "127.0.0.1", 0, ssl=self.context)
        self.server = asyncio.run_coroutine_threadsafe(serve, self.loop).result(10)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _relay(self, reader, writer) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)

        async def pipe(source, sink) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, ssl.SSLError):
                pass
            finally:
                sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def stop(self) -> None:
        async def shut() -> None:
            self.server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shut(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def tls(sandbox, tmp_path):
    """(the TLS endpoint's URL, the CA file that vouches for it, the folder holding that CA)."""
    ca, cert, key = _certificates(tmp_path)
    front = _TlsFront(sandbox.port, cert, key).start()
    try:
        yield f"https://127.0.0.1:{front.port}", ca, str(tmp_path)
    finally:
        front.stop()


def _sync_details():
    hook = HubSpotHook()
    try:
        return hook.run(DETAILS).json()
    finally:
        hook.close()


def _async_details():
    async def go():
        async with HubSpotAsyncHook() as hook:
            response = await hook.run(DETAILS)
            return await response.json()

    return asyncio.run(go())


TRANSPORTS = {"requests": _sync_details, "aiohttp": _async_details}


def _hashed_ca_folder(ca: str, folder: str) -> str:
    """A CA folder as OpenSSL reads one (``<subject hash>.0``), for a ``verify`` that is a folder."""
    if shutil.which("openssl") is None:
        pytest.fail(
            "this test needs the openssl command (to name the CA file by its subject hash): install it"
        )
    digest = subprocess.run(
        ["openssl", "x509", "-hash", "-noout", "-in", ca], capture_output=True, text=True, check=True
    ).stdout.strip()
    target = f"{folder}/cas"
    os.makedirs(target)
    shutil.copy(ca, f"{target}/{digest}.0")
    return target


# -- 5: the verify extra ----------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")  # verify=false asks for it
@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("verify", ["false", "FALSE", "no", False, "ca-file", "ca-folder"])
def test_verify_extra_reaches_both_transports(sandbox, connect, tls, transport, verify):
    url, ca, folder = tls
    value = {"ca-file": ca, "ca-folder": lambda: _hashed_ca_folder(ca, folder)}.get(verify, verify)
    connect(host=url, extra={"verify": value() if callable(value) else value})
    assert TRANSPORTS[transport]()["portalId"] == sandbox.portal_id
    (request,) = sandbox.api_requests(DETAILS)
    assert request.headers["Authorization"] == f"Bearer {SECRET_TOKEN}"


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("verify", [None, "true", "True", True])
def test_verify_true_checks_the_certificate_on_both_transports(sandbox, connect, tls, transport, verify):
    # The control: without the CA, the TLS endpoint's certificate is refused and nothing arrives.
    url, _, _ = tls
    connect(host=url, extra={"verify": verify, "retry_max_attempts": 1})
    with pytest.raises(HubSpotExportError, match="(?i)certificate|ssl"):
        TRANSPORTS[transport]()
    assert sandbox.api_requests(DETAILS) == []


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("verify", ["flase", "/no/such/ca-bundle.pem", 2.5])
def test_a_verify_that_is_neither_a_flag_nor_a_ca_path_is_refused_before_any_request(
    sandbox, connect, transport, verify
):
    connect(extra={"verify": verify})
    with pytest.raises(ValueError, match=r"extra 'verify'.*true.*false.*CA") as refused:
        TRANSPORTS[transport]()
    assert isinstance(refused.value, HubSpotExportRequestError) and str(verify) in str(refused.value)
    assert sandbox.requests == []


@pytest.mark.parametrize(
    "given,read",
    [
        (None, True),
        ("", True),
        (True, True),
        ("TRUE", True),
        ("yes", True),
        ("1", True),
        (False, False),
        ("False", False),
        ("0", False),
        (" off ", False),
        ("on", True),
    ],
)
def test_verify_flags_read_alike(given, read):
    from airflow.sdk import Connection

    from airflow_provider_hubexport.hooks.connection import HubSpotConnectionSettings

    conn = Connection(conn_id="x", conn_type="hubspot", password="t", extra=json.dumps({"verify": given}))
    assert HubSpotConnectionSettings.from_connection(conn).verify is read


# -- 6: run_with_advanced_retry ---------------------------------------------------------------------
RETRY_ALL = {
    "stop": tenacity.stop_after_attempt(3),
    "retry": tenacity.retry_if_exception_type(Exception),
    "wait": tenacity.wait_none(),
}


def test_advanced_retry_does_not_resend_a_start_hubspot_may_have_acted_on(sandbox, connect):
    connect(extra={"resend_uncertain_start": False})
    sandbox.inject("status", status=500, path="/async", times=1)  # HubSpot may have started it
    hook = HubSpotHook()
    with pytest.raises(HubSpotExportError, match="Not resent: HubSpot may have acted"):
        hook.run_with_advanced_retry(RETRY_ALL, "/crm/v3/exports/export/async", method="POST", json=CONTACTS)
    assert len(sandbox.api_requests("/async", method="POST")) == 1 and sandbox.exports == {}


def test_advanced_retry_still_retries_what_may_be_resent(sandbox, connect):
    connect()  # 4 attempts a call: the hook's own retries are spent, the caller's retry goes on
    sandbox.inject("status", status=500, path=DETAILS, times=5)
    response = HubSpotHook().run_with_advanced_retry(RETRY_ALL, DETAILS)
    assert response.json()["portalId"] == sandbox.portal_id
    assert len(sandbox.api_requests(DETAILS)) == 6


def test_advanced_retry_refuses_bad_input_before_sending(sandbox, connect):
    connect()
    with pytest.raises(HubSpotExportRequestError, match="a path on the connection's"):
        HubSpotHook().run_with_advanced_retry(RETRY_ALL, "https://elsewhere.example/x")
    assert sandbox.requests == []


# -- 7: HttpAsyncHook's run(session, endpoint, ...) and retry_limit / retry_delay --------------------
async def test_async_run_takes_http_async_hooks_call_shape(sandbox, connect):
    connect()
    sandbox.inject("status", status=500, path=DETAILS, times=1)  # retried, on the caller's session
    async with aiohttp.ClientSession(headers={"X-Caller-Session": "yes"}) as session:
        hook = HubSpotAsyncHook()
        response = await hook.run(session, DETAILS, {"hapikey": "no"}, None, {"X-Own": "1"})
        assert (await response.json())["portalId"] == sandbox.portal_id
        response = await hook.run(session=session, endpoint=DETAILS)
        assert response.status == 200
    first, second, third = sandbox.api_requests(DETAILS)
    for request in (first, second, third):  # sent on the caller's session, with HubSpot's auth
        assert request.headers["X-Caller-Session"] == "yes"
        assert request.headers["Authorization"] == f"Bearer {SECRET_TOKEN}"
    assert first.query == second.query == "hapikey=no" and second.headers["X-Own"] == "1"


async def test_async_run_without_a_session_and_with_the_endpoint_first(sandbox, connect):
    connect()
    async with HubSpotAsyncHook() as hook:
        assert (await hook.run(None, DETAILS)).status == 200
        assert (await hook.run(DETAILS, data={"a": "1"})).status == 200  # HubSpotHook.run's shape
    assert [r.query for r in sandbox.api_requests(DETAILS)] == ["", "a=1"]


async def test_async_run_refuses_a_call_it_cannot_read(sandbox, connect):
    connect()
    async with HubSpotAsyncHook() as hook:
        with pytest.raises(HubSpotExportRequestError, match=r"endpoint first.*data=\.\.\."):
            await hook.run(DETAILS, {"limit": 10})  # the endpoint first, then data by position
        with pytest.raises(HubSpotExportRequestError, match="session"):
            await hook.run(42, DETAILS)
    assert sandbox.requests == []


async def test_retry_limit_is_the_number_of_attempts(sandbox, connect):
    connect()  # the connection's budget: 4 attempts
    sandbox.inject("status", status=500, path=DETAILS, times=10)
    async with HubSpotAsyncHook(retry_limit=2) as hook:
        with pytest.raises(HubSpotExportError, match="Gave up after 2 attempt"):
            await hook.run(DETAILS)
    assert len(sandbox.api_requests(DETAILS)) == 2


async def test_retry_delay_is_the_first_wait(sandbox, connect):
    connect()  # the connection's first wait: 0.05 s
    sandbox.inject("status", status=500, path=DETAILS, times=1)
    async with HubSpotAsyncHook(retry_delay=1.0) as hook:
        assert (await hook.run(DETAILS)).status == 200
    (gap,) = arrival_gaps(sandbox.api_requests(DETAILS))
    assert gap >= 1.0


# -- 9: the export task id under its own name ---------------------------------------------------------
def test_hook_methods_name_the_export_task_id():
    for method in (
        HubSpotHook.get_export_status,
        HubSpotHook.download_export,
        HubSpotAsyncHook.get_export_status,
    ):
        assert list(inspect.signature(method).parameters)[1] == "export_task_id", method
    assert inspect.iscoroutinefunction(HubSpotAsyncHook.get_export_status)


def test_the_old_task_id_keyword_works_with_a_deprecation_warning(sandbox, hook, tmp_path):
    sandbox.plan_next(pending_polls=0, processing_polls=0)
    export_task_id = hook.start_export(CONTACTS)
    with pytest.warns(AirflowProviderDeprecationWarning, match=r"task_id=.*export_task_id=.*0\.3"):
        assert hook.get_export_status(task_id=export_task_id).status == "COMPLETE"
    with pytest.warns(AirflowProviderDeprecationWarning, match=r"download_export\(task_id="):
        (landed,) = hook.download_export(task_id=export_task_id, destination=tmp_path)
    assert landed["size"] > 0

    async def poll():
        async with HubSpotAsyncHook() as async_hook:
            return await async_hook.get_export_status(task_id=export_task_id)

    with pytest.warns(AirflowProviderDeprecationWarning, match=r"get_export_status\(task_id="):
        assert asyncio.run(poll()).status == "COMPLETE"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert hook.get_export_status(export_task_id=export_task_id).status == "COMPLETE"
    with pytest.raises(TypeError, match="export_task_id only"):
        hook.get_export_status(export_task_id, task_id=export_task_id)


# -- 10: the download lives in hooks/download.py ------------------------------------------------------
def test_the_download_runs_from_any_status_source(sandbox, hook, tmp_path):
    from airflow_provider_hubexport.hooks import download

    sandbox.plan_next(pending_polls=0, processing_polls=0)
    export_task_id = hook.start_export(CONTACTS)
    asked = []

    class Source:  # what the download needs of a hook: its settings, a log, and a status call
        settings, log = hook.settings, hook.log

        def get_export_status(self, task):
            asked.append(task)
            return hook.get_export_status(task)

    (landed,) = download.download_export(Source(), export_task_id, tmp_path)
    assert asked == [export_task_id] and landed["size"] == os.path.getsize(landed["path"])
