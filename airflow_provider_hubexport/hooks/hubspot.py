"""The HubSpot hook: auth, retries and HubSpot's error format for the CRM Exports API."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import requests
import tenacity
import urllib3
from airflow.providers.http.hooks.http import HttpHook

from airflow_provider_hubexport.compat import mask_secret
from airflow_provider_hubexport.exceptions import HubSpotExportCanceledError, HubSpotExportError
from airflow_provider_hubexport.hooks import auth
from airflow_provider_hubexport.hooks.connection import DEFAULT_HOST, USER_AGENT, HubSpotConnectionSettings
from airflow_provider_hubexport.hooks.retry import RetryPolicy
from airflow_provider_hubexport.models import (
    ApiRequest,
    ExportStatus,
    get_export_request,
    parse_start_response,
    parse_status,
    parse_token_response,
    read_response,
    signed_url_parts,
    start_export_request,
    status_request,
    token_refresh_request,
    transient_error,
    validate_id,
)

# A task id far beyond any HubSpot issues: the status call for it costs one request and answers
# 404 when the token and scope are good.
PROBE_TASK_ID = "999999999999999999"


def _never_connected(err: Exception) -> bool:
    """True when the request cannot have reached HubSpot: no connection was ever made."""
    if isinstance(err, requests.ConnectTimeout):
        return True
    reason = getattr(err.args[0], "reason", None) if err.args else None
    return isinstance(reason, urllib3.exceptions.NewConnectionError)


class HubSpotHook(HttpHook):
    """Talks to HubSpot's CRM Exports API.

    Differs from ``HttpHook`` where its defaults are wrong for HubSpot: connection extras are
    settings, never HTTP headers (they hold the client secret and refresh token); the token goes in
    a Bearer header, to the API host only (redirects are not followed); every call has connect and
    read timeouts; 429, 5xx and network errors are retried within a budget; and errors keep HubSpot's
    category, correlation id and missing scopes instead of becoming ``"503:Service Unavailable"``.

    :param hubspot_conn_id: the ``hubspot`` connection: host (default ``https://api.hubapi.com``),
        password (the access token), extras ``api_version``, ``client_id``, ``client_secret``,
        ``refresh_token``, ``connect_timeout``, ``read_timeout``, ``retry_max_attempts``,
        ``retry_max_seconds``.
    """

    conn_name_attr = "hubspot_conn_id"
    default_conn_name = "hubspot_default"
    conn_type = "hubspot"
    hook_name = "HubSpot"
    default_host = DEFAULT_HOST

    def __init__(self, hubspot_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(method="GET", http_conn_id=hubspot_conn_id, **kwargs)
        self.hubspot_conn_id = hubspot_conn_id
        self._settings: HubSpotConnectionSettings | None = None
        self._session: requests.Session | None = None

    # -- connection ----------------------------------------------------------------------------
    @property
    def settings(self) -> HubSpotConnectionSettings:
        if self._settings is None:
            conn = self.get_connection(self.hubspot_conn_id)
            settings = HubSpotConnectionSettings.from_connection(conn, self.hubspot_conn_id)
            for secret in auth.not_yet_masked(settings.secrets):
                mask_secret(secret)
            self._settings = settings
        return self._settings

    def _set_base_url(self, connection: Any) -> None:
        self.base_url = self.settings.base_url
        self._base_url_initialized = True

    def _configure_session_from_auth(self, session: requests.Session, connection: Any) -> requests.Session:
        # Authorization is set per request, so a refreshed OAuth token takes effect at once.
        session.auth = None
        return session

    def _configure_session_from_extra(
        self, session: requests.Session, connection: Any, extra_options: dict[str, Any]
    ) -> requests.Session:
        # HttpHook would send every unknown extra as a header; ours are settings and secrets.
        session.verify = self.settings.verify
        if self.settings.proxies:
            session.proxies = self.settings.proxies
        self.merged_extra = {}
        return session

    def get_conn(
        self, headers: dict[Any, Any] | None = None, extra_options: dict[str, Any] | None = None
    ) -> requests.Session:
        """One ``requests.Session`` per hook, so polls reuse the HTTP connection."""
        if self._session is None:
            session = super().get_conn(headers, extra_options)
            session.headers.update({"Accept": "application/json", "User-Agent": f"{USER_AGENT} requests"})
            self._session = session
        return self._session

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    # -- one call, with auth and retries ---------------------------------------------------------
    def _send_once(self, request: ApiRequest, parse: Callable[[Any], Any]) -> Any:
        settings = self.settings
        session = self.get_conn()

        def send(token: str | None) -> requests.Response:
            headers = {"Authorization": f"Bearer {token}"} if request.authenticated else {}
            try:
                return session.request(
                    request.method,
                    self.base_url + request.path,
                    json=request.json,
                    data=request.form,
                    headers=headers,
                    timeout=(settings.connect_timeout, settings.read_timeout),
                    allow_redirects=False,
                )
            except (requests.ConnectionError, requests.Timeout) as err:
                raise transient_error(request.describe, err, sent=not _never_connected(err)) from None

        token = None
        if request.authenticated:
            if auth.needs_refresh(settings):
                self._refresh_token()
            token = auth.cached_token(settings)
        response = send(token)
        if response.status_code == 401 and request.authenticated and settings.oauth:
            # Refresh once and retry once; a second 401 is final.
            auth.forget_token(settings, token)
            self._refresh_token()
            response = send(auth.cached_token(settings))
        return parse(
            read_response(response.status_code, response.headers, response.content, request.describe)
        )

    def call(self, request: ApiRequest, parse: Callable[[Any], Any] = lambda body: body) -> Any:
        """Send one API request with the connection's retry policy; return ``parse(JSON body)``.

        Parsing is part of the attempt, so a 200 that is not what HubSpot documents is retried
        like any transient failure (unless resending could start a second export).
        """
        policy = self.settings.retry
        retrying = tenacity.Retrying(
            **policy.tenacity_kwargs(self.log, request.describe, idempotent=request.idempotent)
        )
        try:
            return retrying(self._send_once, request, parse)
        except HubSpotExportError as err:
            if err.retryable and not request.idempotent and err.maybe_processed:
                raise policy.not_resent(err, request.describe) from None
            raise

    def _refresh_token(self) -> None:
        s = self.settings
        token = self.call(
            token_refresh_request(s.client_id or "", s.client_secret or "", s.refresh_token or ""),
            parse_token_response,
        )
        for secret in auth.not_yet_masked([token.token]):
            mask_secret(secret)
        auth.store_token(s, token)
        self.log.info("Refreshed the HubSpot OAuth access token (valid for a while; cached).")

    # -- the exports API ---------------------------------------------------------------------------
    def start_export(self, request: dict[str, Any]) -> str:
        """Start an export; returns HubSpot's task id (also the export id)."""
        api_request = start_export_request(self.settings.api_version, request)
        task_id = self.call(api_request, parse_start_response)
        self.log.info(
            "Started HubSpot export %r: task id %s", api_request.json.get("exportName", ""), task_id
        )
        return task_id

    def get_export_status(self, task_id: str | int) -> ExportStatus:
        tid = validate_id(task_id, "export_task_id")
        status = self.call(
            status_request(self.settings.api_version, tid), lambda body: parse_status(body, tid)
        )
        if status.result_url:
            for part in auth.not_yet_masked(signed_url_parts(status.result_url)):
                mask_secret(part)
        return status

    def get_export(self, export_id: str | int) -> dict[str, Any]:
        payload = self.call(get_export_request(self.settings.api_version, export_id))
        if not isinstance(payload, dict):
            raise HubSpotExportError("HubSpot returned a malformed export description: not an object.")
        return payload

    def download_export(
        self,
        task_id: str | int,
        destination: Any,
        unzip: bool = False,
        *,
        overwrite: bool = True,
        filename: str | None = None,
        max_attempts: int = 3,
    ) -> list[dict[str, Any]]:
        """Download a COMPLETE export's file into ``destination``; return ``[{path, size, sha256}]``.

        Asks HubSpot for a fresh status first (signed URLs live minutes), streams the file to a
        staging name, checks its length (and a ZIP's CRCs), then renames it into place, or puts it
        whole to object storage. An expired URL, a 5xx or a cut-short download gets a fresh URL and
        another try, ``max_attempts`` in all. With ``unzip=True`` a ZIP's members are extracted
        instead, and an archive with any member that would land outside ``destination`` is refused.
        ``filename`` replaces HubSpot's file names (which change with every export) by a fixed
        stem, keeping HubSpot's extension, so that re-runs replace rather than add files.
        """
        from airflow_provider_hubexport.hooks.download import fetch, file_session, remove_quietly
        from airflow_provider_hubexport.landing import Destination, check_zip, is_zip, renamed

        tid = validate_id(task_id, "export_task_id")
        renamed(["export.csv"], filename)  # refuse a bad filename before any request
        dest = Destination(destination)
        settings = self.settings
        dest.prepare(tid)
        session = file_session()
        try:
            for attempt in range(1, max_attempts + 1):
                status = self.get_export_status(tid)
                if status.status == "CANCELED":
                    raise HubSpotExportCanceledError(
                        f"Export {tid} was canceled by HubSpot; there is no file to download. "
                        + " | ".join(status.errors)
                    )
                if status.status != "COMPLETE" or not status.result_url:
                    raise HubSpotExportError(
                        f"Export {tid} is {status.status}, not COMPLETE: wait for it (HubSpotExportSensor) "
                        "before downloading."
                    )
                staged_path = dest.staged_name(tid)
                try:
                    name, staged = fetch(
                        session,
                        status.result_url,
                        staged_path,
                        tid,
                        timeout=(settings.connect_timeout, settings.read_timeout),
                        log=self.log,
                    )
                    if is_zip(staged.path):
                        check_zip(staged.path)
                except HubSpotExportError as err:
                    remove_quietly(staged_path)
                    if not err.retryable or attempt == max_attempts:
                        raise type(err)(
                            f"{err.hubspot_message} Gave up after {attempt} download attempt(s).",
                            status_code=err.status_code,
                        ) from None
                    self.log.warning(
                        "Download of export %s, attempt %d of %d, failed (%s); trying again with a fresh URL",
                        tid,
                        attempt,
                        max_attempts,
                        err,
                    )
                    time.sleep(0.5 * 2 ** (attempt - 1))
                    continue
                except BaseException:
                    remove_quietly(staged_path)
                    raise
                try:
                    if unzip and is_zip(staged.path):
                        landed = dest.extract(staged.path, tid, overwrite=overwrite, filename=filename)
                    else:
                        landed = [dest.land(staged, renamed([name], filename), overwrite=overwrite)]
                finally:
                    remove_quietly(staged.path)
                for item in landed:
                    self.log.info(
                        "Landed %s (%d bytes, sha256 %s)", item["path"], item["size"], item["sha256"]
                    )
                return landed
            raise AssertionError("unreachable")  # the loop returns or raises
        finally:
            session.close()
            dest.cleanup()

    def test_connection(self) -> tuple[bool, str]:
        """Check the token and the crm.export scope with one status call that must answer 404."""
        try:
            # A short retry budget: the UI's Test button should answer in seconds.
            self._settings = replace(self.settings, retry=RetryPolicy(max_attempts=2, max_seconds=10))
            self.get_export_status(PROBE_TASK_ID)
        except HubSpotExportError as err:
            if err.status_code == 404:
                return (
                    True,
                    "Connection successfully tested: the token is valid and has the crm.export scope.",
                )
            return False, str(err)
        except Exception as err:  # test_connection reports, it does not raise
            return False, f"{type(err).__name__}: {err}"
        return True, "Connection successfully tested: the token is valid and has the crm.export scope."
