"""Every message the provider gives for input a user got wrong names the field and a fix that fits it.

The table below triggers each such refusal once; the last test reads the package's source and fails
when a new refusal (``raise HubSpotExportRequestError`` or ``raise ValueError``) has no row here, so
no message escapes the check.
"""

from __future__ import annotations

import ast
import json
import os
import re
import traceback
import zipfile
from pathlib import Path

import pytest

import airflow_provider_hubexport
from airflow_provider_hubexport.exceptions import HubSpotExportRequestError

PACKAGE = Path(airflow_provider_hubexport.__file__).parent
CONTACTS = {"exportType": "VIEW", "format": "CSV", "objectType": "CONTACT", "objectProperties": ["email"]}
FILTER = {"propertyName": "email", "operator": "HAS_PROPERTY"}


def _request(**changes):
    return {**CONTACTS, **changes}


def _validate_request(request):
    from airflow_provider_hubexport.validation import validate_export_request

    validate_export_request(request)


def _validate(**changes):
    _validate_request(_request(**changes))


def _search(search):
    _validate(publicCrmSearchRequest=search)


def _build(export_request=None, **fields):
    from airflow_provider_hubexport.operators.export import build_export_request

    build_export_request(
        export_request, {"object_type": "CONTACT", "object_properties": ["email"], **fields}, "x"
    )


def _settings(conn_id="hubspot_x", password="pat-na1-token", host=None, **extra):
    from airflow.sdk import Connection

    from airflow_provider_hubexport.hooks.connection import HubSpotConnectionSettings

    conn = Connection(
        conn_id=conn_id,
        conn_type="hubspot",
        host=host,
        password=password,
        extra=json.dumps(extra) if extra else None,
    )
    HubSpotConnectionSettings.from_connection(conn, conn_id)


def _endpoint(endpoint="/crm/v3/objects/contacts", method="GET", **kwargs):
    from airflow_provider_hubexport.hooks.endpoint import endpoint_request

    endpoint_request(endpoint, method, **kwargs)


def _destination(destination, conn_id=None):
    from airflow_provider_hubexport.landing import Destination

    return Destination(destination, conn_id)


def _window(**kw):
    from test_window import window  # a day's window, with the arguments a test changes

    return window(**kw)


def _apply_window(search):
    from airflow_provider_hubexport.window import ExportWindow, apply_window

    apply_window(_request(publicCrmSearchRequest=search), ExportWindow("lastmodifieddate", 1, 2))


def _filters(n):
    return [FILTER] * n


def _custom_object(name):
    from airflow_provider_hubexport.api import parse_custom_object_type

    schema = {"name": "vehicles", "objectTypeId": "2-1", "labels": {"plural": "Vehicles"}}
    parse_custom_object_type({"results": [schema]}, name)


def _properties_of(object_type):
    from airflow_provider_hubexport.api import properties_request

    properties_request(object_type)


def _resolve(object_type):
    from airflow_provider_hubexport.hooks.hubspot import HubSpotHook

    HubSpotHook("hubspot_x").resolve_object_type(object_type)


def _incremental_list_export():
    from airflow_provider_hubexport.operators.export import prepare_export_request

    fields = {"object_type": "CONTACT", "object_properties": ["email"], "export_type": "LIST", "list_id": 7}
    prepare_export_request(None, fields, "x", hook=None, window=lambda object_type: _window())


def _since_without_incremental():
    from airflow_provider_hubexport.operators.export import HubSpotStartExportOperator

    HubSpotStartExportOperator(
        task_id="t", object_type="CONTACT", object_properties=["email"], modified_since="2026-01-01"
    )


def _unwritable(tmp_path, monkeypatch):
    # As root every directory is writable, so the refusal an ordinary user meets is simulated.
    monkeypatch.setattr(os, "access", lambda *a, **k: False)
    _destination(str(tmp_path)).prepare("1")


def _uncreatable(tmp_path, monkeypatch):
    (tmp_path / "a-file").write_text("x")
    _destination(str(tmp_path / "a-file" / "sub")).prepare("1")


def _land_over(tmp_path, monkeypatch):
    from airflow_provider_hubexport.landing import StagedFile

    (tmp_path / "contacts.csv").write_text("old")
    staged = tmp_path / "staged.part"
    staged.write_text("new")
    _destination(str(tmp_path)).land(StagedFile(str(staged), 3, "0" * 64), ["contacts.csv"], overwrite=False)


def _extract_over(tmp_path, monkeypatch):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "contacts-1.csv").write_text("old")
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("contacts-1.csv", "email\n")
        zf.writestr("contacts-2.csv", "email\n")
    _destination(str(tmp_path / "out")).extract(str(archive), "1", overwrite=False)


def _renamed(stem):
    from airflow_provider_hubexport.landing import renamed

    renamed(["hubspot.csv"], stem)


def _schedule(*args):
    from airflow_provider_hubexport.polling import PollSchedule

    PollSchedule(*args)


def _poll_schedule(*args, **kwargs):
    from airflow_provider_hubexport.polling import poll_schedule

    poll_schedule(*args, **kwargs)


def _retry(**kwargs):
    from airflow_provider_hubexport.hooks.retry import RetryPolicy

    RetryPolicy(**kwargs)


def _validate_id(value, field):
    from airflow_provider_hubexport.validation import validate_id

    validate_id(value, field)


def _hook(**kwargs):
    from airflow_provider_hubexport.hooks.hubspot import HubSpotHook

    HubSpotHook(**kwargs)


def _async_hook(**kwargs):
    from airflow_provider_hubexport.hooks.hubspot_async import HubSpotAsyncHook

    HubSpotAsyncHook(**kwargs)


def _async_run(*args):
    import asyncio

    from airflow_provider_hubexport.hooks.hubspot_async import HubSpotAsyncHook

    asyncio.run(HubSpotAsyncHook().run(*args))


def _get_conn_with_headers(tmp_path, monkeypatch):
    from airflow_provider_hubexport.hooks.hubspot import HubSpotHook

    HubSpotHook.get_conn(HubSpotHook(), headers={"X-A": "1"})


def _api_version():
    from airflow_provider_hubexport.api import status_request

    status_request("v9", "1")


def _unknown_store_connection():
    from airflow_provider_hubexport.object_store import check_connection

    check_connection("aws_nope", "s3://bucket/x")


# (id, what triggers it, the field the message must name, a regex for the fix it must give)
def _md5_checksum():
    from airflow_provider_hubexport.operators.export import HubSpotDownloadExportOperator

    HubSpotDownloadExportOperator(task_id="d", export_task_id="1", destination="/tmp", checksum="md5")


CASES = [
    # ids: the advice follows the kind of id
    (
        "export_task_id-none",
        lambda: _validate_id(None, "export_task_id"),
        "export_task_id",
        r"start task's XCom",
    ),
    ("export_id-type", lambda: _validate_id(1.5, "export_id"), "export_id", r"start task's XCom"),
    ("export_task_id-text", lambda: _validate_id("abc", "export_task_id"), "export_task_id", r"XCom value"),
    ("listId-text", lambda: _validate(exportType="LIST", listId="abc"), "'listId'", r"list's address"),
    ("list_id-keyword", lambda: _build(export_type="LIST", list_id="abc"), "list_id", r"list's address"),
    ("listId-missing", lambda: _validate(exportType="LIST"), "'listId'", r"list_id"),
    # the export request
    ("request-type", lambda: _validate_request("x"), "export request", r"dict in HubSpot's camelCase shape"),
    ("format", lambda: _validate(format="PDF"), "'format'", r"one of CSV, XLS, XLSX"),
    ("file_format-keyword", lambda: _build(file_format="PDF"), "file_format", r"one of CSV, XLS, XLSX"),
    ("objectType", lambda: _validate(objectType=""), "'objectType'", r"such as CONTACT"),
    ("objectProperties", lambda: _validate(objectProperties=[]), "'objectProperties'", r"\['email'"),
    ("exportName", lambda: _validate(exportName=3), "'exportName'", r"such as 'daily contacts'"),
    ("search-type", lambda: _search([]), "publicCrmSearchRequest", r"such as \{'filterGroups'"),
    ("filters-type", lambda: _search({"filters": {}}), "publicCrmSearchRequest.filters", r"such as \[\{"),
    ("filters-keyword", lambda: _build(filters={}), "filters must", r"such as \[\{"),
    ("filter-type", lambda: _search({"filters": ["email"]}), "filters[0]", r"such as \{'propertyName'"),
    ("propertyName", lambda: _search({"filters": [{"operator": "EQ"}]}), "propertyName", r"such as 'email'"),
    ("operator", lambda: _search({"filters": [{**FILTER, "operator": "LIKE"}]}), "operator", r"one of EQ"),
    ("filterGroups-type", lambda: _search({"filterGroups": {}}), "filterGroups", r"list of groups such as"),
    ("filter_groups-keyword", lambda: _build(filter_groups={}), "filter_groups", r"list of groups such as"),
    (
        "filterGroups-many",
        lambda: _search({"filterGroups": [{"filters": [FILTER]}] * 6}),
        "filterGroups",
        r"merge groups",
    ),
    ("filterGroup-type", lambda: _search({"filterGroups": ["x"]}), "filterGroups[0]", r"such as \{'filters'"),
    (
        "filterGroup-many",
        lambda: _search({"filterGroups": [{"filters": [FILTER] * 7}]}),
        "filterGroups[0]",
        r"another group",
    ),
    (
        "filters-total",
        lambda: _search({"filterGroups": [{"filters": [FILTER] * 6}] * 4}),
        "publicCrmSearchRequest",
        r"drop some",
    ),
    ("export_request-type", lambda: _build(export_request="x"), "export_request", r"must be a dict"),
    (
        "keyword-conflict",
        lambda: _build(export_request={"objectType": "DEAL"}),
        "object_type=",
        r"give it once",
    ),
    # the connection
    ("host-scheme", lambda: _settings(host="ftp://example.com"), "host", r"Leave the host empty"),
    ("host-plain-http", lambda: _settings(host="http://example.com"), "plain http", r"Use https"),
    ("extra-number", lambda: _settings(retry_max_attempts="many"), "'retry_max_attempts'", r"such as 6"),
    ("extra-negative", lambda: _settings(read_timeout=-1), "'read_timeout'", r"0 or more"),
    ("portal_id", lambda: _settings(portal_id="my portal"), "'portal_id'", r"account menu"),
    (
        "extra-flag",
        lambda: _settings(resend_uncertain_start="maybe"),
        "'resend_uncertain_start'",
        r"true or false.*default \(true\)",
    ),
    ("api_version", lambda: _settings(api_version="v4"), "'api_version'", r"Leave it empty for v3"),
    (
        "verify",
        lambda: _settings(verify="flase"),
        "'verify'",
        r"give the path of your CA bundle, or set false",
    ),
    (
        "oauth-partial",
        lambda: _settings(client_id="id"),
        "client_secret, refresh_token",
        r"Remove all three to use a private app token",
    ),
    ("no-credentials", lambda: _settings(password=None), "password field", r"put a Service Key"),
    ("api_version-request", _api_version, "'api_version'", r"Leave it empty for v3"),
    # the hooks and run()
    ("hook-auth_type", lambda: _hook(auth_type=object), "auth_type", r"remove it"),
    ("async-hook-auth_type", lambda: _async_hook(auth_type=object), "auth_type", r"remove it"),
    ("async-hook-retry_limit", lambda: _async_hook(retry_limit=0), "retry_limit", r"such as 3"),
    ("async-hook-retry_delay", lambda: _async_hook(retry_delay=-1), "retry_delay", r"such as 1\.0"),
    (
        "async-run-endpoint-twice",
        lambda: _async_run("/crm/v3/objects/contacts", {"limit": 10}),
        "endpoint",
        r"run\(endpoint, data=\.\.\.",
    ),
    (
        "async-run-session",
        lambda: _async_run(42, "/x"),
        "session",
        r"run\(session, '/crm/v3/objects/contacts'",
    ),
    ("endpoint-empty", lambda: _endpoint(""), "endpoint", r"for example '/crm/v3/objects/contacts'"),
    ("endpoint-url", lambda: _endpoint("https://evil.example/x"), "endpoint", r"a path on the connection's"),
    ("endpoint-space", lambda: _endpoint("/crm/v3/objects/contacts?q=a b"), "endpoint", r"as data="),
    ("method", lambda: _endpoint(method="FETCH"), "HTTP method", r"one of GET"),
    ("extra_options", lambda: _endpoint(extra_options={"timeout": 1}), "extra_options", r"drop them"),
    ("request-kwargs", lambda: _endpoint(request_kwargs={"params": {}}), "params", r"as data= or json="),
    ("query-type", lambda: _endpoint(data="limit=10"), "data", r"pass a dict such as"),
    (
        "data-and-json",
        lambda: _endpoint(method="POST", data={"a": 1}, json_body={"a": 1}),
        "data=",
        r"not both",
    ),
    ("data-not-json", lambda: _endpoint(method="POST", data="a=1"), "data", r"pass a dict as json="),
    (
        "reserved-header",
        lambda: _endpoint(headers={"Authorization": "Bearer x"}),
        "Authorization",
        r"drop the header",
    ),
    # where files land
    ("destination-empty", lambda: _destination(" "), "destination", r"such as s3://bucket/path"),
    (
        "destination_conn_id-local",
        lambda: _destination("/tmp/x", "aws_a"),
        "destination_conn_id",
        r"drop destination_conn_id",
    ),
    (
        "destination_conn_id-twice",
        lambda: _destination("s3://aws_a@bucket/x", "aws_b"),
        "destination_conn_id",
        r"give the connection in one place",
    ),
    (
        "destination_conn_id-unknown",
        _unknown_store_connection,
        "destination_conn_id 'aws_nope'",
        r"create it",
    ),
    ("destination-uncreatable", _uncreatable, "destination", r"choose a writable directory"),
    ("destination-unwritable", _unwritable, "destination", r"fix its permissions"),
    ("overwrite-file", _land_over, "overwrite=False", r"pass overwrite=True"),
    ("overwrite-members", _extract_over, "overwrite=False", r"pass overwrite=True"),
    ("filename-path", lambda: _renamed("../x"), "filename", r"such as 'contacts'"),
    ("filename-unusable", lambda: _renamed(". .csv"), "filename", r"such as 'contacts'"),
    # waiting and retrying
    ("get_conn-headers", _get_conn_with_headers, "headers", r"pass headers to run\(\)"),
    ("poke_interval", lambda: _schedule(-1), "poke_interval", r"0 or more"),
    ("backoff_factor", lambda: _schedule(5, 0.5), "backoff_factor", r"2 doubles it"),
    ("max_poke_interval", lambda: _schedule(60, 2, 5), "max_poke_interval", r"raise max_poke_interval"),
    ("poll-seconds", lambda: _poll_schedule("soon"), "poke_interval", r"seconds \(a number\) or a timedelta"),
    (
        "exponential_backoff-and-factor",
        lambda: _poll_schedule(5, 2, exponential_backoff=False),
        "backoff_factor=2",
        r"give one of the two",
    ),
    (
        "max_wait-and-max_poke_interval",
        lambda: _poll_schedule(5, 2, 60, max_wait=30),
        "max_wait=30",
        r"give only max_poke_interval",
    ),
    # incremental exports, associations, custom objects, ALL properties
    (
        "window-no-interval",
        lambda: _window(data_interval_start=None, data_interval_end=None),
        "data interval",
        r"pass modified_since and modified_until",
    ),
    (
        "window-point",
        lambda: _window(
            data_interval_end=__import__("datetime").datetime(
                2026, 11, 27, tzinfo=__import__("datetime").timezone.utc
            )
        ),
        "is a point",
        r"CronTriggerTimetable\(\.\.\., interval=timedelta",
    ),
    (
        "window-empty",
        lambda: _window(modified_since="2026-12-01", modified_until="2026-11-30"),
        "modified_since",
        r"must be before modified_until",
    ),
    (
        "window-since-text",
        lambda: _window(modified_since="yesterday"),
        "modified_since",
        r"\{\{ data_interval_start \}\}",
    ),
    (
        "window-since-seconds",
        lambda: _window(modified_since="1795737600"),
        "modified_since=1795737600",
        r"epoch seconds\? Give milliseconds",
    ),
    (
        "window-since-type",
        lambda: _window(modified_since=[1]),
        "modified_since",
        r"ISO 8601 text or epoch milliseconds",
    ),
    ("window-lookback-type", lambda: _window(lookback="1h"), "lookback", r"timedelta\(hours=1\) or 3600"),
    ("window-lookback-negative", lambda: _window(lookback=-1), "lookback", r"Use 0 for none"),
    (
        "window-property",
        lambda: _window(modified_property="a b"),
        "modified_property",
        r"such as 'hs_lastmodifieddate'",
    ),
    (
        "window-group-limit",
        lambda: _apply_window({"filterGroups": [{"filters": _filters(5)}]}),
        "filter_groups[0]",
        r"move some into another group",
    ),
    (
        "window-total-limit",
        lambda: _apply_window({"filters": _filters(17)}),
        "incremental=True",
        r"drop some filters",
    ),
    ("incremental-list", _incremental_list_export, "incremental=True", r"export_type='VIEW'"),
    ("modified_since-alone", _since_without_incremental, "modified_since", r"pass incremental=True"),
    (
        "associated-shape",
        lambda: _build(associated_object_types=[1]),
        "associated_object_types",
        r"such as \['COMPANY', 'DEAL'\]",
    ),
    (
        "associated-limit",
        lambda: _build(associated_object_types=["COMPANY", "DEAL", "TICKET", "PRODUCT", "QUOTE"]),
        "associated_object_types",
        r"at most 4 associated types: drop some",
    ),
    (
        "internal-values",
        lambda: _build(export_internal_values_options=["LABELS"]),
        "export_internal_values_options",
        r"NAMES and/or VALUES",
    ),
    (
        "labeled-associations",
        lambda: _build(include_labeled_associations="yes"),
        "include_labeled_associations",
        r"True or False",
    ),
    (
        "custom-object-unknown",
        lambda: _custom_object("bikes"),
        "object_type 'bikes'",
        r"Custom objects: vehicles \(2-1\)",
    ),
    (
        "properties-of-name",
        lambda: _properties_of("bikes"),
        "object_type 'bikes'",
        r"resolve a custom object's name first",
    ),
    ("resolve-empty", lambda: _resolve(" "), "object_type", r"a custom object's name or its id"),
    ("checksum", _md5_checksum, "checksum", r"checksum='sha256'"),
    ("retry-attempts", lambda: _retry(max_attempts=0), "max_attempts", r"1 means no retry"),
    ("retry-seconds", lambda: _retry(max_seconds=-1), "max_seconds", r"0 means no retry"),
]


def _raise_site(err: BaseException) -> tuple[str, int]:
    """Where in the package the error was raised: the innermost frame in one of its files."""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if f.filename.startswith(str(PACKAGE))]
    assert frames, f"{err!r} was not raised by the package"
    return os.path.relpath(frames[-1].filename, PACKAGE), frames[-1].lineno


def _call(trigger, tmp_path, monkeypatch):
    import inspect

    params = inspect.signature(trigger).parameters
    return trigger(tmp_path, monkeypatch) if params else trigger()


@pytest.mark.parametrize(("trigger", "field", "fix"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_refusal_names_its_field_and_a_fitting_fix(trigger, field, fix, tmp_path, monkeypatch, airflow_db):
    with pytest.raises((HubSpotExportRequestError, ValueError)) as caught:
        _call(trigger, tmp_path, monkeypatch)
    message = str(caught.value)
    assert field in message, f"the message does not name {field!r}: {message}"
    assert re.search(fix, message), f"the message gives no fix matching {fix!r}: {message}"
    if "XCom" in message:  # export-id advice only where an export id was asked for
        assert re.search(r"\bexport_(task_)?id\b", message), message


def _refusal_sites() -> set[tuple[str, range]]:
    sites = set()
    for path in PACKAGE.rglob("*.py"):
        rel = os.path.relpath(path, PACKAGE)
        if rel.startswith("sandbox" + os.sep):
            continue  # the sandbox plays HubSpot; its refusals are HubSpot's, tested in test_sandbox
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                name = getattr(node.exc.func, "id", None)
                if name in ("HubSpotExportRequestError", "ValueError"):
                    sites.add((rel, range(node.lineno, (node.end_lineno or node.lineno) + 1)))
    return sites


def test_every_refusal_in_the_package_is_in_the_table(tmp_path, monkeypatch, airflow_db):
    seen = set()
    for _id, trigger, *_ in CASES:
        with pytest.raises((HubSpotExportRequestError, ValueError)) as caught:
            _call(trigger, _fresh(tmp_path, _id), monkeypatch)
        seen.add(_raise_site(caught.value))
        monkeypatch.undo()
    missing = sorted(
        f"{rel}:{lines.start}"
        for rel, lines in _refusal_sites()
        if not any(s[0] == rel and s[1] in lines for s in seen)
    )
    assert not missing, f"refusals with no row in CASES: {missing}"


def _fresh(root: Path, name: str) -> Path:
    path = root / name
    path.mkdir()
    return path
