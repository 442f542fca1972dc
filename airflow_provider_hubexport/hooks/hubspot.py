"""The HubSpot hook: auth, retries and HubSpot's error format for the CRM Exports API and, through
``run()``, for any other HubSpot endpoint."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from functools import cached_property
from typing import Any

import requests
import tenacity
import urllib3
from airflow.providers.http.hooks.http import HttpHook

from airflow_provider_hubexport.api import (
    ApiRequest,
    ExportStatus,
    account_details_request,
    get_export_request,
    needs_schema_lookup,
    normalize_object_type,
    parse_custom_object_type,
    parse_portal_id,
    parse_property_names,
    parse_start_response,
    parse_status,
    parse_token_response,
    properties_request,
    schemas_request,
    signed_url_parts,
    start_export_request,
    status_request,
)
from airflow_provider_hubexport.errors import error_from_response, read_response, transient_error
from airflow_provider_hubexport.exceptions import (
    HubSpotExportError,
    HubSpotExportRequestError,
)
from airflow_provider_hubexport.hooks import auth, auth_flow
from airflow_provider_hubexport.hooks.connection import DEFAULT_HOST, USER_AGENT, HubSpotConnectionSettings
from airflow_provider_hubexport.hooks.endpoint import EndpointRequest, endpoint_path, endpoint_request
from airflow_provider_hubexport.hooks.ids import accepts_old_task_id
from airflow_provider_hubexport.hooks.retry import RetryPolicy, replaying
from airflow_provider_hubexport.secret_masking import guard_dag_test_comms, mask_secret
from airflow_provider_hubexport.validation import validate_id

# Portal ids read from HubSpot, per connection and token (auth.cache_key), for this process.
_portal_ids: dict[str, int | None] = {}

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
    """Talks to HubSpot: the CRM Exports API, and any other endpoint through :meth:`run`.

    Differs from ``HttpHook`` where its defaults are wrong for HubSpot, and keeps no inherited
    method that would do the old thing: connection extras are settings, never HTTP headers (they
    hold the client secret and refresh token); the token goes in a Bearer header, to the API host
    only (redirects are not followed, endpoints must be paths); every call has connect and read
    timeouts; 429, 5xx and network errors are retried within a budget; and errors keep HubSpot's
    category, correlation id and missing scopes instead of becoming ``"503:Service Unavailable"``.

    ``run(endpoint, data=..., headers=..., method=...)`` calls any HubSpot endpoint that way::

        HubSpotHook().run("/crm/v3/objects/contacts", data={"limit": 10}).json()

    ``run_and_check`` (which sends a request prepared elsewhere) refuses; ``HttpHook`` auth types
    are refused (the connection's token or OAuth refresh is HubSpot's auth).

    :param hubspot_conn_id: the ``hubspot`` connection: host (default ``https://api.hubapi.com``),
        password (the access token), extras ``api_version``, ``client_id``, ``client_secret``,
        ``refresh_token``, ``connect_timeout``, ``read_timeout``, ``retry_max_attempts``,
        ``retry_max_seconds``.
    :param method: the default HTTP method of :meth:`run` (default GET).
    """

    conn_name_attr = "hubspot_conn_id"
    default_conn_name = "hubspot_default"
    conn_type = "hubspot"
    hook_name = "HubSpot"
    default_host = DEFAULT_HOST

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """The connection form's relabelled and hidden fields, from the provider info (one source):
        Airflow 3.0 and 3.1 read them from the hook class, 3.2 and later from the provider info."""
        from airflow_provider_hubexport import get_provider_info

        (conn_type,) = [
            c for c in get_provider_info()["connection-types"] if c["connection-type"] == cls.conn_type
        ]
        return conn_type["ui-field-behaviour"]

    def __init__(self, hubspot_conn_id: str = default_conn_name, method: str = "GET", **kwargs: Any) -> None:
        if kwargs.get("auth_type") is not None:
            raise HubSpotExportRequestError(
                "HubSpotHook takes no auth_type: remove it; the hook authenticates with the connection's "
                "access token (or OAuth refresh) as a Bearer header."
            )
        super().__init__(method=method, http_conn_id=hubspot_conn_id, **kwargs)
        self.hubspot_conn_id = hubspot_conn_id

    # -- connection ----------------------------------------------------------------------------
    @cached_property
    def settings(self) -> HubSpotConnectionSettings:
        guard_dag_test_comms()  # before Airflow masks the password (3.0's dag.test() would log it)
        conn = self.get_connection(self.hubspot_conn_id)
        settings = HubSpotConnectionSettings.from_connection(conn, self.hubspot_conn_id)
        for secret in auth.not_yet_masked(settings.secrets):
            mask_secret(secret)
        self.base_url = settings.base_url
        return settings

    @cached_property
    def session(self) -> requests.Session:
        """One ``requests.Session`` per hook, so polls reuse the HTTP connection. It carries no
        credentials: Authorization is set per request, so a refreshed OAuth token takes effect at once."""
        settings = self.settings
        session = requests.Session()
        session.headers.update({"Accept": "application/json", "User-Agent": f"{USER_AGENT} requests"})
        session.verify = settings.verify
        if settings.proxies:
            session.proxies = settings.proxies
        adapter = self.adapter or self.keep_alive_adapter
        if adapter is not None:
            session.mount("https://", adapter)
            session.mount("http://", adapter)
        return session

    def get_conn(
        self, headers: dict[Any, Any] | None = None, extra_options: dict[str, Any] | None = None
    ) -> requests.Session:
        """The hook's session (no credentials in it). Headers and options go to :meth:`run`."""
        if headers or extra_options:
            raise HubSpotExportRequestError(
                "HubSpotHook.get_conn() takes no headers or extra_options: pass headers to run(); "
                "the rest comes from the HubSpot connection."
            )
        return self.session

    def url_from_endpoint(self, endpoint: str | None) -> str:
        """The URL of an endpoint on the connection's API host (never another host)."""
        return self.settings.base_url + endpoint_path(endpoint)

    def close(self) -> None:
        session = self.__dict__.pop("session", None)
        if session is not None:
            session.close()

    # -- any endpoint --------------------------------------------------------------------------
    def run(
        self,
        endpoint: str | None = None,
        data: dict[str, Any] | str | None = None,
        headers: dict[str, Any] | None = None,
        extra_options: dict[str, Any] | None = None,
        *,
        method: str | None = None,
        json: Any = None,
        **request_kwargs: Any,
    ) -> requests.Response:
        """Call any HubSpot endpoint with the connection's auth, retries, timeouts and error mapping.

        ``data`` is the query of a GET (HEAD, DELETE) and the JSON body of a POST (PUT, PATCH);
        ``json`` is always the body. Returns the 2xx ``requests.Response``; any other status raises
        :class:`HubSpotExportError` with HubSpot's category and message. POST and PATCH are not
        resent once HubSpot may have acted on them.
        """
        request = self._endpoint_request(
            endpoint, data, headers, extra_options, method=method, json=json, **request_kwargs
        )
        return self._call(request, self._checked)

    def _checked(self, response: requests.Response, describe: str) -> requests.Response:
        if not 200 <= response.status_code < 300:
            raise error_from_response(response.status_code, response.headers, response.content, describe)
        return response

    def check_response(self, response: requests.Response) -> None:
        """Raise :class:`HubSpotExportError` (HubSpot's status, category, message) for a non-2xx."""
        self._checked(response, f"{response.request.method if response.request else ''} call".strip())

    def run_and_check(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(
            "HubSpotHook.run_and_check() would send a request prepared outside the hook, without "
            "HubSpot's auth, retries and redirect refusal: use run(endpoint, data=..., method=...)."
        )

    def run_with_advanced_retry(self, _retry_args: dict[Any, Any], *args: Any, **kwargs: Any) -> Any:
        """:meth:`run` (with its own HubSpot retries) inside the caller's tenacity retry.

        The call is checked once, before anything is sent, and the caller's retry keeps HubSpot's
        rule: a call that is not idempotent (a POST, such as a start) and failed after HubSpot may
        have acted on it is not sent again, whatever ``_retry_args`` say; its "Not resent" error
        is raised as it is. Everything else is retried as ``_retry_args`` say.
        """
        request = self._endpoint_request(*args, **kwargs)
        self._retry_obj = self.settings.retry.caller_retry(_retry_args, request)
        return self._retry_obj(self._call, request, self._checked)

    def _endpoint_request(
        self,
        endpoint: str | None = None,
        data: dict[str, Any] | str | None = None,
        headers: dict[str, Any] | None = None,
        extra_options: dict[str, Any] | None = None,
        *,
        method: str | None = None,
        json: Any = None,
        **request_kwargs: Any,
    ) -> EndpointRequest:
        """What :meth:`run` sends, from :meth:`run`'s arguments."""
        return endpoint_request(
            endpoint, method or self.method, data, json, headers, extra_options, request_kwargs
        )

    # -- one call, with auth and retries ---------------------------------------------------------
    def _send(self, step: auth_flow.SendRequest) -> requests.Response:
        settings, request = self.settings, step.request
        try:
            return self.session.request(
                request.method,
                settings.base_url + request.path,
                json=request.json,
                data=request.form,
                headers=step.headers,
                timeout=(settings.connect_timeout, settings.read_timeout),
                allow_redirects=False,
                # Per request: requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override a
                # session's verify, so verify=False or a CA path on the session alone is ignored
                # wherever those are set (most container images set them).
                verify=settings.verify,
            )
        except (requests.ConnectionError, requests.Timeout) as err:
            raise transient_error(request.describe, err, sent=not _never_connected(err)) from None

    def _attempt(self, request: ApiRequest, answer: Callable[[requests.Response, str], Any]) -> Any:
        """One attempt, driven by the auth flow: send, refresh on the flow's word, resend."""
        flow = auth_flow.AuthFlow(self.settings, request)
        step = flow.start()
        while True:
            if isinstance(step, auth_flow.RefreshToken):
                self._refresh_token(step.rejected)
                step = flow.token_refreshed()
            elif isinstance(step, auth_flow.SendRequest):
                response = self._send(step)
                step = flow.response_received(response.status_code)
            else:
                return answer(response, request.describe)

    def _call(
        self,
        request: ApiRequest,
        answer: Callable[[requests.Response, str], Any],
        policy: RetryPolicy | None = None,
    ) -> Any:
        policy = policy or self.settings.retry
        started = time.monotonic()
        try:
            try:
                return self._attempt(request, answer)  # most calls: no retry machinery at all
            except HubSpotExportError as first:
                if not policy.worth_another_try(first, request):
                    raise
                kwargs = policy.tenacity_kwargs(self.log, request, started=started)
                return tenacity.Retrying(**kwargs)(replaying(first, self._attempt), request, answer)
        except HubSpotExportError as err:
            raise policy.final_error(err, request) from None

    def call(
        self,
        request: ApiRequest,
        parse: Callable[[Any], Any] = lambda body: body,
        *,
        policy: RetryPolicy | None = None,
    ) -> Any:
        """Send one API request with the connection's retry policy; return ``parse(JSON body)``.

        Parsing is part of the attempt, so a 200 that is not what HubSpot documents is retried
        like any transient failure (unless resending could start a second export).
        """

        def answer(response: requests.Response, describe: str) -> Any:
            return parse(read_response(response.status_code, response.headers, response.content, describe))

        return self._call(request, answer, policy)

    def _refresh_token(self, rejected: str | None) -> None:
        """One refresh per connection at a time in this process; the others reuse its token."""
        s = self.settings
        with auth.refresh_lock(s):
            if not auth_flow.refresh_needed(s, rejected):
                return  # another thread refreshed while this one waited
            token = self.call(auth_flow.refresh_request(s), parse_token_response)
            for secret in auth_flow.accept_token(s, token):
                mask_secret(secret)
        self.log.info("Refreshed the HubSpot OAuth access token (valid for a while; cached).")

    # -- the exports API ---------------------------------------------------------------------------
    def start_export(self, request: dict[str, Any], *, resend_uncertain_start: bool | None = None) -> str:
        """Start an export; returns HubSpot's export task id (the ``id`` of its answer), which
        :meth:`get_export_status` and :meth:`download_export` take. Whether it also is the export id
        :meth:`get_export` takes is not verified (see ``api.py``, "Ids").

        A start that failed before reaching HubSpot (502, 503, a refused connection) is resent within
        the retry budget. One that may have reached it (500, 504, a timeout after sending) is resent
        too, with a warning naming the possible second export, unless ``resend_uncertain_start``
        (default: the connection's extra, else True) is False. The daily limit fails at once.
        """
        if resend_uncertain_start is None:
            resend_uncertain_start = self.settings.resend_uncertain_start
        api_request = start_export_request(
            self.settings.api_version, request, resend_uncertain=resend_uncertain_start
        )
        export_task_id = self.call(api_request, parse_start_response)
        self.log.info(
            "Started HubSpot export %r: export task id %s",
            api_request.json.get("exportName", ""),
            export_task_id,
        )
        return export_task_id

    @accepts_old_task_id
    def get_export_status(self, export_task_id: str | int) -> ExportStatus:
        """The status of the export ``start_export`` started, with its signed result URL once
        COMPLETE (registered with the secrets masker; it never shows in ``repr``). ``task_id=``
        is the old name of ``export_task_id`` (deprecated)."""
        tid = validate_id(export_task_id, "export_task_id")
        status = self.call(
            status_request(self.settings.api_version, tid), lambda body: parse_status(body, tid)
        )
        if status.result_url:
            for part in auth.not_yet_masked(signed_url_parts(status.result_url)):
                mask_secret(part)
        return status

    def get_portal_id(self) -> int | None:
        """The HubSpot portal (hub) id of the connection's account, which lineage names HubSpot's
        datasets by: the connection's ``portal_id`` extra, else ``GET /account-info/v3/details``
        (remembered per API host and credential in this process, when HubSpot answered it or refused
        it for good), else None. Never raises: lineage is reported beside the task, and must not
        fail it."""
        settings = self.settings
        if settings.portal_id is not None:
            return settings.portal_id
        credential = settings.refresh_token or settings.access_token or ""
        key = hashlib.sha256(f"{settings.base_url}\0{settings.client_id}\0{credential}".encode()).hexdigest()
        if key in _portal_ids:
            return _portal_ids[key]
        policy = RetryPolicy(max_attempts=min(2, settings.retry.max_attempts), max_seconds=10)
        try:
            portal = _portal_ids[key] = self.call(account_details_request(), parse_portal_id, policy=policy)
        except HubSpotExportError as err:
            if not err.retryable:  # a token without the access: asking again will not help
                _portal_ids[key] = None
            self.log.info("HubSpot portal id not known (%s): lineage names the HubSpot side 'hubspot'.", err)
            return None
        except Exception as err:  # noqa: BLE001 - a malformed answer: None, and why
            self.log.info("HubSpot portal id not known (%s): lineage names the HubSpot side 'hubspot'.", err)
            return None
        return portal

    def resolve_object_type(self, object_type: str) -> str:
        """The ``objectType`` an export takes: a standard object's name (in capitals) or an
        objectTypeId as given; a custom object's name, fully qualified name or plural label looked
        up through ``GET /crm/v3/schemas`` (scope ``crm.schemas.custom.read``), refused listing the
        names that exist when unknown."""
        if not isinstance(object_type, str) or not object_type.strip():
            raise HubSpotExportRequestError(
                f"object_type must be a CRM object such as CONTACT, a custom object's name or its id; got {object_type!r}."
            )
        if not needs_schema_lookup(object_type):
            return normalize_object_type(object_type)
        resolved = self.call(schemas_request(), lambda body: parse_custom_object_type(body, object_type))
        self.log.info("Custom object %r is objectTypeId %s.", object_type, resolved)
        return resolved

    def get_property_names(self, object_type: str) -> list[str]:
        """Every property of ``object_type`` (a standard name or an objectTypeId), custom ones
        included and archived ones not, as HubSpot lists them now (``GET
        /crm/v3/properties/{objectType}``, scope ``crm.schemas.<object>.read``)."""
        names = self.call(
            properties_request(object_type), lambda body: parse_property_names(body, object_type)
        )
        self.log.info("object_properties='ALL': %d properties of %s.", len(names), object_type)
        return names

    def get_export(self, export_id: str | int) -> dict[str, Any]:
        """HubSpot's description of an export (``GET .../export/{exportId}``: its type, object,
        properties, ``recordCount``). HubSpot's documentation names the id an export id; lineage
        passes the export task id ``start_export`` returned, which may not be the same number (not
        verified, see ``api.py``, "Ids"), and does without the description when HubSpot answers 404."""
        payload = self.call(get_export_request(self.settings.api_version, export_id))
        if not isinstance(payload, dict):
            raise HubSpotExportError("HubSpot returned a malformed export description: not an object.")
        return payload

    @accepts_old_task_id
    def download_export(
        self,
        export_task_id: str | int,
        destination: Any,
        unzip: bool = False,
        *,
        overwrite: bool = True,
        filename: str | None = None,
        max_attempts: int | None = None,
        destination_conn_id: str | None = None,
        checksum: str | None = None,
    ) -> list[dict[str, Any]]:
        """Download a COMPLETE export's file into ``destination``; return ``[{path, size, sha256}]``.

        Asks HubSpot for a fresh status first (signed URLs live minutes), streams the file to a
        staging name, checks its length (and a ZIP's CRCs), then renames it into place, or puts it
        whole to object storage. An expired URL, a 5xx or a cut-short download gets a fresh URL and
        another try, within the connection's retry budget (``retry_max_attempts`` attempts in
        ``retry_max_seconds``; ``max_attempts`` overrides the attempts). With ``unzip=True`` a ZIP's
        members are extracted instead, and an archive with any member that would land outside
        ``destination`` is refused. ``filename`` replaces HubSpot's file names (which change with
        every export) by a fixed stem, keeping HubSpot's extension, so that re-runs replace rather
        than add files. ``destination_conn_id`` is the object store's Airflow connection (else the
        one in ``scheme://conn_id@bucket/...``, else the store's default); an unknown id is refused
        before anything is downloaded. ``checksum="sha256"`` computes each landed file's SHA-256
        (for a manifest or to compare copies: HubSpot publishes none to check it against); by
        default ``sha256`` is None and the download costs no hashing. ``task_id=`` is the old name
        of ``export_task_id`` (deprecated). The work is ``hooks.download.download_export``'s.
        """
        from airflow_provider_hubexport.hooks.download import download_export

        return download_export(
            self,
            export_task_id,
            destination,
            unzip,
            overwrite=overwrite,
            filename=filename,
            max_attempts=max_attempts,
            destination_conn_id=destination_conn_id,
            checksum=checksum,
        )

    def test_connection(self) -> tuple[bool, str]:
        """Check the token and the crm.export scope with one status call that must answer 404.

        The UI's Test button should answer in seconds: this one call has a short retry budget of
        its own, and the hook's settings are left as they were.
        """
        try:  # first the form's fields, named as the form the user sees (not the server's random id)
            HubSpotConnectionSettings.from_connection(self.get_connection(self.hubspot_conn_id), None)
        except HubSpotExportRequestError as err:
            return False, str(err)
        except Exception as err:
            return False, f"{type(err).__name__}: {err}"
        try:
            self.call(
                status_request(self.settings.api_version, PROBE_TASK_ID),
                lambda body: parse_status(body, PROBE_TASK_ID),
                policy=RetryPolicy(max_attempts=2, max_seconds=10),
            )
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
