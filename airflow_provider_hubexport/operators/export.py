"""Start an export, download its file, or both with the wait in between, as Airflow tasks.

DAG files import this module on every parse: it imports no HTTP library and not the hook.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from airflow_provider_hubexport.api import ALL_PROPERTIES, needs_schema_lookup
from airflow_provider_hubexport.compat import (
    BaseOperator,
    BaseOperatorMeta,
    ResumableJobMixin,
    conf,
    schedule_fields,
)
from airflow_provider_hubexport.exceptions import HubSpotExportLimitError, HubSpotExportRequestError
from airflow_provider_hubexport.lazy_hook import LazyHubSpotHook
from airflow_provider_hubexport.polling import (
    DEFAULT_MAX_TRANSIENT_ERRORS,
    DEFAULT_POLL_INTERVAL,
    DEFAULT_TIMEOUT,
    PollState,
    check_event,
    complete_from_event,
    export_task_id_of,
    poll_schedule,
    seconds,
)
from airflow_provider_hubexport.quota import QuotaWait
from airflow_provider_hubexport.validation import validate_checksum, validate_export_request, validate_id
from airflow_provider_hubexport.waiting import check_once, defer_to_trigger, wait_for_export
from airflow_provider_hubexport.window import (
    DEFAULT_LOOKBACK,
    ExportWindow,
    Schedule,
    apply_window,
    incremental_window,
    lookback_ms,
)

if TYPE_CHECKING:
    from airflow.sdk import Context


# Operator keyword -> HubSpot's field in the export request.
REQUEST_FIELDS = {
    "object_type": "objectType",
    "object_properties": "objectProperties",
    "export_type": "exportType",
    "file_format": "format",
    "language": "language",
    "export_name": "exportName",
    "list_id": "listId",
    "associated_object_types": "associatedObjectType",
    "include_labeled_associations": "includeLabeledAssociations",
    "export_internal_values_options": "exportInternalValuesOptions",
    "override_associated_objects_per_definition_per_row_limit": "overrideAssociatedObjectsPerDefinitionPerRowLimit",
}
# Operator keyword -> field of the request's publicCrmSearchRequest.
SEARCH_FIELDS = {"filters": "filters", "filter_groups": "filterGroups", "query": "query", "sorts": "sorts"}
REQUEST_DEFAULTS = {"exportType": "VIEW", "format": "CSV", "language": "EN"}


def build_export_request(
    export_request: dict[str, Any] | None, fields: dict[str, Any], default_name: str
) -> dict[str, Any]:
    """Merge ``export_request`` and the keyword fields into one checked request.

    A field given both ways with different values is refused rather than silently picked.
    """
    return validate_export_request(*merge_export_request(export_request, fields, default_name))


def merge_export_request(
    export_request: dict[str, Any] | None, fields: dict[str, Any], default_name: str
) -> tuple[dict[str, Any], dict[str, str]]:
    """The request and, per HubSpot field, the operator keyword it came from (for messages)."""
    if export_request is not None and not isinstance(export_request, dict):
        raise HubSpotExportRequestError(
            f"export_request must be a dict in HubSpot's camelCase shape, got {type(export_request).__name__}."
        )
    request = dict(export_request or {})
    search = dict(request.get("publicCrmSearchRequest") or {})
    keywords: dict[str, str] = {}
    for table, target, prefix in (
        (REQUEST_FIELDS, request, ""),
        (SEARCH_FIELDS, search, "publicCrmSearchRequest."),
    ):
        for keyword, wire in table.items():
            value = fields.get(keyword)
            if value is None:
                continue
            if wire in target and target[wire] != value:
                raise HubSpotExportRequestError(
                    f"{keyword}={value!r} conflicts with export_request's {wire}={target[wire]!r}: give it once."
                )
            target[wire] = value
            keywords[prefix + wire] = keyword
    if search:
        request["publicCrmSearchRequest"] = search
    for wire, default in REQUEST_DEFAULTS.items():
        request.setdefault(wire, default)
    request.setdefault("exportName", default_name[:200])
    return request, keywords


def prepare_export_request(
    export_request: dict[str, Any] | None,
    fields: dict[str, Any],
    default_name: str,
    hook: Any,
    window: Callable[[str], ExportWindow] | None = None,
) -> tuple[dict[str, Any], ExportWindow | None]:
    """The request to send, and its incremental window: everything the user gave is checked first
    (with stand-ins for what HubSpot resolves), so bad input fails before any request leaves;
    then a custom object's name and ``object_properties="ALL"`` are resolved through the hook (once,
    when the task runs), and the window, computed from the object type, is ANDed in."""
    request, keywords = merge_export_request(export_request, fields, default_name)
    object_type = request.get("objectType")
    want_all = request.get("objectProperties") == ALL_PROPERTIES
    lookup = isinstance(object_type, str) and object_type.strip() and needs_schema_lookup(object_type)
    draft = {
        **request,
        **({"objectType": "CONTACT"} if lookup else {}),
        **({"objectProperties": ["hs_object_id"]} if want_all else {}),
    }
    validate_export_request(draft, keywords)
    chosen = window(object_type) if window is not None else None
    if chosen is not None and str(request.get("exportType")).upper() == "LIST":
        raise HubSpotExportRequestError(
            "incremental=True filters a VIEW export by its records' modification time; a LIST export "
            "takes the list's members as they are. Export the object (export_type='VIEW') instead."
        )
    if chosen is not None:
        apply_window(draft, chosen)  # HubSpot's limits with the window, refused before any call
    request["objectType"] = hook.resolve_object_type(object_type)
    if want_all:
        request["objectProperties"] = hook.get_property_names(request["objectType"])
    request = validate_export_request(request, keywords)
    if chosen is not None:
        request = validate_export_request(apply_window(request, chosen), keywords)
    return request, chosen


class ReportsLineage:
    """OpenLineage for the export operators (called by Airflow only when the OpenLineage provider is
    installed and enabled): the HubSpot object in, the landed files out, the export in a run facet.

    What the method reads is set by assignment during the run, after the export started and after
    the download (``execute_complete`` too): a deferred task resumes as a new operator built from
    its arguments, with nothing of what it held before deferring.
    """

    _ol_export_task_id: str | None = None
    _ol_landed: list[dict[str, Any]] | None = None

    def _lineage_request(self) -> Mapping[str, Any] | None:
        """What was exported, when the operator knows it from its own arguments."""
        return None

    def _lineage_window(self) -> Mapping[str, Any] | None:
        """The incremental window of the export, when the operator started it."""
        return None

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        return self._lineage(failed=False)

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> Any:
        return self._lineage(failed=True)

    def _lineage(self, *, failed: bool) -> Any:
        from airflow_provider_hubexport.lineage import task_lineage

        return task_lineage(
            self.hook,  # type: ignore[attr-defined]
            export_task_id=self._ol_export_task_id,
            request=self._lineage_request(),
            landed=self._ol_landed,
            destination=getattr(self, "destination", None),
            failed=failed,
            window=self._lineage_window(),
        )


class HubSpotStartExportOperator(ReportsLineage, LazyHubSpotHook, ResumableJobMixin, BaseOperator):
    """Starts a HubSpot CRM export; its XCom value is the export's task id.

    Give the request in HubSpot's own shape (``export_request``), with keyword arguments for the
    common fields, or both. It is checked before anything is sent. A retry reconnects to the export
    this task already started (Airflow 3.3's ``task_state_store``) instead of starting another:
    HubSpot allows 30 exports a day and runs one at a time. A start refused for that limit waits
    for the window to free up (on the triggerer when deferrable) and tries again, so a backfill of
    more days than the limit runs unattended.

    :param export_request: the request body, e.g. ``{"exportType": "VIEW", "format": "CSV",
        "objectType": "CONTACT", "objectProperties": ["email"]}`` (templated).
    :param object_type: ``objectType``: CONTACT, COMPANY, DEAL, TICKET, a custom object's id
        (``2-1234567``) or its name, fully qualified name or plural label, which the task resolves
        through HubSpot's schemas API (an unknown name fails before the export starts, listing those
        that exist).
    :param object_properties: ``objectProperties``: the properties (columns) to export, or ``"ALL"``:
        every property HubSpot lists for the object when the task runs (custom ones included; one
        extra API call), recorded in XCom (key ``export``) and the lineage schema facet.
    :param export_type: ``exportType``: VIEW (default) or LIST.
    :param file_format: ``format``: CSV (default), XLSX or XLS.
    :param language: ``language``: EN (default), DE, ES, FR, JA, NL, PT_BR, IT, PL, SV, FI, ZH_TW, DA_DK, NO.
    :param export_name: ``exportName`` (default: the DAG, task, run and try, e.g.
        ``daily.start scheduled__2026-11-27T00:00:00+00:00 try 1``, so a second export started by a
        resend or a retry is easy to spot in HubSpot's export history).
    :param resend_uncertain_start: resend a start that failed after HubSpot may have acted on it
        (a 500, a 504, a timeout after sending), with a warning: it may start a second export.
        Default: the connection's ``resend_uncertain_start`` extra, else True; False fails instead.
        A start that never reached HubSpot (502, 503, a refused connection) is always resent.
    :param deferrable: wait out HubSpot's daily limit on the triggerer, holding no worker slot
        (default from ``[operators] default_deferrable``); otherwise the task sleeps between tries.
    :param wait_for_quota: when HubSpot refuses the start for its limit of 30 exports per rolling
        24 hours, try again every ``quota_retry_interval`` seconds until it is accepted or
        ``quota_wait_timeout`` seconds have passed (default True); False fails at once.
    :param quota_retry_interval: seconds between tries (default: the connection's extra, else 900);
        a minute or more when deferring: Airflow 3.3.2 and before may fail a task whose trigger
        fires within seconds of its deferral (apache/airflow#72716).
    :param quota_wait_timeout: seconds to keep trying (default: the connection's extra, else 86400).
    :param list_id: ``listId``, for LIST exports.
    :param associated_object_types: ``associatedObjectType``: associated objects to include.
    :param filters: ``publicCrmSearchRequest.filters``, e.g. ``[{"propertyName": "lastmodifieddate",
        "operator": "BETWEEN", "value": "...", "highValue": "..."}]``.
    :param filter_groups: ``publicCrmSearchRequest.filterGroups``.
    :param query: ``publicCrmSearchRequest.query``.
    :param sorts: ``publicCrmSearchRequest.sorts``.
    :param include_labeled_associations: ``includeLabeledAssociations``: the associations' labels too.
    :param export_internal_values_options: ``exportInternalValuesOptions``: ``["NAMES"]`` for internal
        property names as column headers (``hs_object_id`` rather than ``Record ID``, whatever the
        ``language``), ``"VALUES"`` for internal values (``lead`` rather than ``Lead``), or both.
    :param override_associated_objects_per_definition_per_row_limit:
        ``overrideAssociatedObjectsPerDefinitionPerRowLimit``: lift HubSpot's cap on associated
        records per row.
    :param incremental: export only the records whose last-modified property falls in the run's
        data interval, widened back by ``lookback``: ``[data_interval_start - lookback,
        data_interval_end)``, half-open, epoch milliseconds UTC. The window is ANDed into every
        filter group; ``hs_object_id`` and the modified property are added to the columns so the
        overlap can be de-duplicated (keep the latest per ``hs_object_id``). A run whose interval is
        a point (Airflow 3's ``@daily``) starts at its schedule's previous point; a run without an
        interval fails naming the fixes. The window is in XCom (key ``export``), the outlet Assets'
        events and the OpenLineage run facet.
    :param lookback: how far back each window reaches before its interval (a ``timedelta`` or
        seconds; default one hour): HubSpot's search index, which exports read, lags behind edits
        by an undocumented amount. 0 for none.
    :param modified_property: the property the window filters on (templated); default
        ``lastmodifieddate`` for contacts, ``hs_lastmodifieddate`` for every other object.
    :param modified_since: the window's start instead of the data interval's (templated: a
        datetime, ISO 8601 text or epoch milliseconds; naive is UTC); the lookback still applies.
    :param modified_until: the window's end instead of the data interval's (templated).
    """

    template_fields: Sequence[str] = (
        "export_request",
        *REQUEST_FIELDS,
        *SEARCH_FIELDS,
        "modified_property",
        "modified_since",
        "modified_until",
        "hubspot_conn_id",
    )
    template_fields_renderers = {"export_request": "json", "filters": "json", "filter_groups": "json"}
    ui_color = "#ff7a59"
    external_id_key = "hubspot_export_task_id"

    def __init__(
        self,
        *,
        export_request: dict[str, Any] | None = None,
        object_type: str | None = None,
        object_properties: list[str] | None = None,
        export_type: str | None = None,
        file_format: str | None = None,
        language: str | None = None,
        export_name: str | None = None,
        list_id: str | int | None = None,
        associated_object_types: list[str] | None = None,
        filters: list[dict[str, Any]] | None = None,
        filter_groups: list[dict[str, Any]] | None = None,
        query: str | None = None,
        sorts: list[Any] | None = None,
        include_labeled_associations: bool | None = None,
        export_internal_values_options: list[str] | None = None,
        override_associated_objects_per_definition_per_row_limit: bool | None = None,
        incremental: bool = False,
        lookback: float | timedelta = DEFAULT_LOOKBACK,
        modified_property: str | None = None,
        modified_since: Any = None,
        modified_until: Any = None,
        hubspot_conn_id: str = "hubspot_default",
        resend_uncertain_start: bool | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        wait_for_quota: bool = True,
        quota_retry_interval: float | None = None,
        quota_wait_timeout: float | timedelta | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.resend_uncertain_start = resend_uncertain_start
        self.deferrable = deferrable
        self.wait_for_quota = wait_for_quota
        self.quota_retry_interval = quota_retry_interval
        self.quota_wait_timeout = (
            quota_wait_timeout.total_seconds()
            if isinstance(quota_wait_timeout, timedelta)
            else quota_wait_timeout
        )
        self.export_request = export_request
        self.object_type = object_type
        self.object_properties = object_properties
        self.export_type = export_type
        self.file_format = file_format
        self.language = language
        self.export_name = export_name
        self.list_id = list_id
        self.associated_object_types = associated_object_types
        self.filters = filters
        self.filter_groups = filter_groups
        self.query = query
        self.sorts = sorts
        self.include_labeled_associations = include_labeled_associations
        self.export_internal_values_options = export_internal_values_options
        self.override_associated_objects_per_definition_per_row_limit = (
            override_associated_objects_per_definition_per_row_limit
        )
        if not incremental and (modified_since is not None or modified_until is not None):
            raise HubSpotExportRequestError(
                "modified_since and modified_until set an incremental window: pass incremental=True with them."
            )
        lookback_ms(lookback)  # refused at parse time, not at 2 a.m.
        self.incremental = incremental
        self.lookback = lookback
        self.modified_property = modified_property
        self.modified_since = modified_since
        self.modified_until = modified_until
        self.hubspot_conn_id = hubspot_conn_id
        self._request: dict[str, Any] = {}
        self._export: dict[str, Any] | None = None  # what XCom's "export" holds, once started
        self._quota: QuotaWait | None = None

    def execute(self, context: Context) -> Any:
        fields = {k: getattr(self, k) for k in (*REQUEST_FIELDS, *SEARCH_FIELDS)}
        run_id = context["run_id"] if "run_id" in context else ""
        ti = context["ti"] if "ti" in context else None
        attempt = f" try {ti.try_number}" if ti is not None and getattr(ti, "try_number", None) else ""
        self._request, window = prepare_export_request(
            self.export_request,
            fields,
            f"{self.dag_id}.{self.task_id} {run_id}{attempt}",
            self.hook,
            (lambda object_type: self._window(context, object_type)) if self.incremental else None,
        )
        self._export = {
            "object_type": self._request["objectType"],
            "object_properties": list(self._request["objectProperties"]),
            "window": window.to_dict() if window is not None else None,
        }
        if window is not None:
            self.log.info(
                "Incremental window: %s in [%s, %s) (lookback %g s).",
                window.property,
                self._export["window"]["start"],
                self._export["window"]["end"],
                window.lookback_ms / 1000,
            )
        return self.execute_resumable(context)

    def _window(self, context: Context, object_type: str) -> ExportWindow:
        dag = context.get("dag") if hasattr(context, "get") else None
        return incremental_window(
            object_type=object_type,
            modified_property=self.modified_property or None,
            data_interval_start=context.get("data_interval_start"),
            data_interval_end=context.get("data_interval_end"),
            lookback=self.lookback,
            modified_since=self.modified_since,
            modified_until=self.modified_until,
            schedule=Schedule.from_fields(schedule_fields(getattr(dag, "timetable", None))),
        )

    def _record_export(self, context: Context, export_task_id: str) -> None:
        """XCom ``export``: the export's id, object, columns and window, pushed once the export is
        known (before any wait, so a task resumed after deferring reads it back)."""
        if self._export is None or self._export.get("export_task_id") == export_task_id:
            return
        self._export["export_task_id"] = export_task_id
        ti = context["ti"] if "ti" in context else None
        if ti is not None:
            ti.xcom_push(key="export", value=self._export)

    def _recall_export(self, context: Context) -> dict[str, Any] | None:
        """A resumed task holds nothing from before deferring: XCom's ``export`` is kept across a
        deferral (Airflow clears a task's XComs when it starts, not when it resumes)."""
        if self._export is None and "ti" in context:
            ti = context["ti"]
            value = ti.xcom_pull(
                task_ids=ti.task_id, key="export", map_indexes=getattr(ti, "map_index", None)
            )
            self._export = value if isinstance(value, dict) else None
            if self._export is None:
                self.log.warning(
                    "XCom 'export' of this task is gone (pushed before deferring): the asset event and "
                    "lineage go without the export's window and resolved columns."
                )
        return self._export

    def execute_after_quota_wait(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """Back from a deferred wait for HubSpot's daily limit: the same task, trying the start again."""
        self._quota = QuotaWait.from_kwargs((event or {}).get("quota"))
        return self.execute(context)

    # -- ResumableJobMixin -----------------------------------------------------------------------
    def submit_job(self, context: Context) -> str:
        while True:
            try:
                return self.hook.start_export(
                    self._request, resend_uncertain_start=self.resend_uncertain_start
                )
            except HubSpotExportLimitError as refused:
                if not self.wait_for_quota:
                    raise
                seconds = self._next_quota_try(refused)
            if self.deferrable:
                self._defer_quota_wait(seconds)
            time.sleep(seconds)

    def _next_quota_try(self, refused: HubSpotExportLimitError) -> float:
        """Seconds until the next try of a start refused for the daily limit; raises once the wait
        has run out. Logs one line per refused try, so at most one per interval."""
        settings = self.hook.settings
        interval = (
            settings.quota_retry_interval if self.quota_retry_interval is None else self.quota_retry_interval
        )
        timeout = settings.quota_wait_timeout if self.quota_wait_timeout is None else self.quota_wait_timeout
        now = time.time()
        self._quota, seconds = (self._quota or QuotaWait.begin(now, interval, timeout)).after_refusal(now)
        if seconds is None:
            raise HubSpotExportLimitError(
                f"{refused.hubspot_message} Still refused after waiting {timeout:g} s "
                f"({self._quota.refused} tries); raise quota_wait_timeout to wait longer.",
                status_code=refused.status_code,
                category=refused.category,
                sub_category=refused.sub_category,
                correlation_id=refused.correlation_id,
            )
        self.log.warning(
            "HubSpot refused the start: its limit of 30 exports per rolling 24 hours is reached "
            "(refused %d time(s) so far). Trying again in %.1f s, until %s (quota_wait_timeout).",
            self._quota.refused,
            seconds,
            datetime.fromtimestamp(self._quota.deadline, tz=timezone.utc).isoformat(timespec="seconds"),
        )
        return seconds

    def _defer_quota_wait(self, seconds: float) -> None:
        from airflow_provider_hubexport.triggers.quota import HubSpotQuotaWaitTrigger

        assert self._quota is not None
        self.defer(
            trigger=HubSpotQuotaWaitTrigger(time.time() + seconds, self._quota.to_kwargs()),
            method_name="execute_after_quota_wait",
        )

    def get_job_status(self, external_id: Any, context: Context) -> str:
        return self.hook.get_export_status(external_id).status

    def is_job_active(self, status: str) -> bool:
        return status in ("PENDING", "PROCESSING")

    def is_job_succeeded(self, status: str) -> bool:
        return status == "COMPLETE"

    def poll_until_complete(self, external_id: Any, context: Context) -> Any:
        # Starting is the whole job. The mixin returns this method's value when it reconnects to a
        # running export, so it returns the result rather than None.
        return self.get_job_result(external_id, context)

    def get_job_result(self, external_id: Any, context: Context) -> Any:
        self._ol_export_task_id = validate_id(external_id, "export_task_id")
        self._record_export(context, self._ol_export_task_id)
        return self._ol_export_task_id

    def _lineage_request(self) -> Mapping[str, Any] | None:
        if self._request:
            return self._request
        try:  # resumed after a deferral: the same arguments give the same request (but its name)
            fields = {k: getattr(self, k) for k in (*REQUEST_FIELDS, *SEARCH_FIELDS)}
            request, _ = merge_export_request(self.export_request, fields, self.task_id)
            if self._export:  # what the task resolved before deferring: the object, the columns
                request["objectType"] = self._export["object_type"]
                request["objectProperties"] = self._export["object_properties"]
            return validate_export_request(request)
        except HubSpotExportRequestError:
            return None

    def _lineage_window(self) -> Mapping[str, Any] | None:
        return (self._export or {}).get("window")


class LandsExportFiles:
    """The download step, declared once for the download and the all-in-one operators: its
    arguments (``destination``, ``unzip``, ``overwrite``, ``filename``, ``destination_conn_id``,
    ``checksum``; see ``HubSpotDownloadExportOperator``) and the call that lands the files and describes them on
    the outlet Assets' events and in lineage."""

    landing_template_fields: tuple[str, ...] = ("destination", "destination_conn_id", "filename")

    # Not a BaseOperator: its __init__ gets default_args applied as ResumableJobMixin's does.
    @BaseOperatorMeta._apply_defaults  # type: ignore[type-var]
    def __init__(
        self,
        *,
        destination: Any,
        unzip: bool = False,
        overwrite: bool = True,
        filename: str | None = None,
        destination_conn_id: str | None = None,
        checksum: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.checksum = validate_checksum(checksum)  # when the DAG is parsed
        self.destination = destination
        self.destination_conn_id = destination_conn_id
        self.unzip = unzip
        self.overwrite = overwrite
        self.filename = filename

    def land(self, context: Context, export_task_id: str) -> list[dict[str, Any]]:
        landed = self.hook.download_export(  # type: ignore[attr-defined]
            export_task_id,
            self.destination,
            unzip=self.unzip,
            overwrite=self.overwrite,
            filename=self.filename,
            destination_conn_id=self.destination_conn_id,
            checksum=self.checksum,
        )
        window = self._lineage_window()  # type: ignore[attr-defined]
        if window:  # in the XCom value too: each file says which window it holds (an added key)
            landed = [{**item, "window": dict(window)} for item in landed]
        record_outlet_events(context, self.outlets, export_task_id, landed, window)  # type: ignore[attr-defined]
        self._ol_export_task_id, self._ol_landed = export_task_id, landed
        return landed


class HubSpotDownloadExportOperator(ReportsLineage, LazyHubSpotHook, LandsExportFiles, BaseOperator):
    """Downloads a COMPLETE export's file to a local directory or object storage.

    The XCom value is ``[{"path", "size", "sha256"}]`` for what landed (``sha256`` None unless
    ``checksum="sha256"``; plus ``window`` for an incremental export). Files land atomically: a
    reader never sees a partial file at its final name. Set ``outlets`` to an Asset for the
    destination so downstream DAGs can be scheduled on it.

    :param export_task_id: the export's task id (templated), e.g.
        ``"{{ ti.xcom_pull(task_ids='start_export') }}"``, or the sensor's XCom value (a dict with
        ``export_task_id``), e.g. ``wait.output``.
    :param destination: a local directory, or an ``ObjectStoragePath`` URI such as
        ``s3://bucket/hubspot/{{ ds }}/`` (templated).
    :param destination_conn_id: the Airflow connection of the object store (an ``aws`` connection
        for ``s3://``, ...; templated); default: the one in a ``s3://conn_id@bucket/...`` URI, else
        the store's default connection. An id Airflow does not know fails the task before anything
        is downloaded.
    :param unzip: extract a ZIP's files into ``destination`` instead of landing the ZIP.
    :param overwrite: replace files already at the destination (default True, so re-runs and
        backfills are idempotent); False fails instead.
    :param filename: a fixed name (stem) for what lands, instead of HubSpot's, which changes with
        every export; HubSpot's extension is kept, and several files get ``-1``, ``-2``... (templated).
    :param checksum: ``"sha256"`` to compute each landed file's SHA-256 into the XCom value, for a
        manifest or to compare copies downstream (not templated: checked when the DAG is parsed).
        Default None: no digest (``sha256`` is None).
        HubSpot publishes no checksum to verify against; TLS, the length check and a ZIP's CRC-32s
        (checked on unzip) guard the transfer, and hashing costs about 0.6 s of CPU per GiB.
    """

    template_fields: Sequence[str] = (
        "export_task_id",
        *LandsExportFiles.landing_template_fields,
        "hubspot_conn_id",
    )
    ui_color = "#ff7a59"

    def __init__(
        self,
        *,
        export_task_id: str | int | Mapping[str, Any],
        hubspot_conn_id: str = "hubspot_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.export_task_id = export_task_id
        self.hubspot_conn_id = hubspot_conn_id

    _ol_window: Mapping[str, Any] | None = None

    def execute(self, context: Context) -> list[dict[str, Any]]:
        given = self.export_task_id
        if isinstance(given, Mapping):  # the sensor's XCom value, in this release's shape or 0.1.0's
            given = export_task_id_of(given)
        self._ol_export_task_id = validate_id(given, "export_task_id")
        self._ol_window = self._upstream_window(context, self._ol_export_task_id)
        return self.land(context, self._ol_export_task_id)

    def _upstream_window(self, context: Context, export_task_id: str) -> Mapping[str, Any] | None:
        """The window of the export, when a start operator upstream of this task started it (its
        XCom ``export``): so the asset event and lineage of a start -> wait -> download pipeline
        carry it too. One XCom read; None when no upstream task recorded this export."""
        ti = context["ti"] if "ti" in context else None
        upstream = sorted(self.get_flat_relative_ids(upstream=True))
        if ti is None or not upstream:
            return None
        found = ti.xcom_pull(task_ids=upstream, key="export")
        for value in found if isinstance(found, list) else [found]:
            if isinstance(value, Mapping) and value.get("export_task_id") == export_task_id:
                return value.get("window")
        return None

    def _lineage_window(self) -> Mapping[str, Any] | None:
        return self._ol_window


def record_outlet_events(
    context: Any,
    outlets: Any,
    export_task_id: str,
    landed: list[dict[str, Any]],
    window: Mapping[str, Any] | None = None,
) -> None:
    """Describe what landed on each outlet Asset's event, for consumers scheduled on it: the files
    and, for an incremental export, its window (what a consumer de-duplicates over)."""
    events = context.get("outlet_events") if hasattr(context, "get") else None
    if events is None or not outlets:  # the accessors fill lazily: an empty one is still usable
        return
    for outlet in outlets:
        try:
            extra: dict[str, Any] = {
                "hubspot_export_task_id": export_task_id,
                "files": [f["path"] for f in landed],
            }
            if window:
                extra["window"] = dict(window)
            events[outlet].extra = extra
        except (KeyError, TypeError, AttributeError):
            continue  # not an Asset (e.g. an alias); Airflow records its event as usual


class WaitsForExport:
    """The wait of the all-in-one operator, with the sensor's arguments and the sensor's code
    (``poll_schedule``, ``check_once``, ``defer_to_trigger``): see ``HubSpotExportSensor`` for
    ``poke_interval``, ``backoff_factor``, ``max_poke_interval``, ``timeout``, ``accept_errors``
    and ``max_transient_errors``; durations as seconds or ``timedelta``, as the sensor takes them."""

    @BaseOperatorMeta._apply_defaults  # type: ignore[type-var]
    def __init__(
        self,
        *,
        poke_interval: float | timedelta = DEFAULT_POLL_INTERVAL,
        backoff_factor: float | None = None,
        max_poke_interval: float | timedelta | None = None,
        timeout: float | timedelta = DEFAULT_TIMEOUT,
        accept_errors: bool = False,
        max_transient_errors: int = DEFAULT_MAX_TRANSIENT_ERRORS,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.schedule = poll_schedule(poke_interval, backoff_factor, max_poke_interval)
        self.timeout = seconds(timeout, "timeout")
        self.accept_errors = accept_errors
        self.max_transient_errors = max_transient_errors

    def wait(self, context: Context, export_task_id: str) -> None:
        """Until the export is final, in this task or (deferrable) on the triggerer."""
        state = PollState(
            export_task_id,
            self.schedule,
            max_transient_errors=self.max_transient_errors,
            log=self.log,  # type: ignore[attr-defined]
        )

        def get_status() -> Any:
            return self.hook.get_export_status(export_task_id)  # type: ignore[attr-defined]

        if self.deferrable:  # type: ignore[attr-defined]
            # The sensor's routine: check once (a transient error there means "poll again"), then defer.
            if check_once(get_status, state, accept_errors=self.accept_errors) is None:
                defer_to_trigger(self, state, self.hubspot_conn_id, timeout=self.timeout)  # type: ignore[attr-defined]
        else:
            wait_for_export(get_status, state, timeout=self.timeout, accept_errors=self.accept_errors)


class HubSpotExportOperator(LandsExportFiles, WaitsForExport, HubSpotStartExportOperator):
    """Starts an export, waits for it and downloads its file, in one task.

    Takes the start operator's request arguments, the sensor's waiting arguments (``WaitsForExport``)
    and the download operator's destination arguments (``LandsExportFiles``), declared once and run
    by the same code. The XCom value is the download's list of ``{"path", "size", "sha256"}``
    (``sha256`` None unless ``checksum="sha256"``). A
    retry reconnects to the export already started (running or COMPLETE) rather than starting
    another; after a failed download it only downloads again.

    :param destination: where the file lands, and ``destination_conn_id`` its store's connection
        (see ``HubSpotDownloadExportOperator``); both are checked before the export starts.
    :param deferrable: wait on the triggerer, for the export and for HubSpot's daily limit (default
        from ``[operators] default_deferrable``); ``wait_for_quota`` and its two settings are the start
        operator's.
    :param poke_interval: first wait between status checks (seconds or a ``timedelta``), growing by
        ``backoff_factor`` up to ``max_poke_interval``; ``timeout`` bounds the whole wait;
        ``accept_errors`` accepts a COMPLETE export with errors (see ``HubSpotExportSensor``).
    """

    template_fields: Sequence[str] = (
        *HubSpotStartExportOperator.template_fields,
        *LandsExportFiles.landing_template_fields,
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._landed: dict[str, list[dict[str, Any]]] = {}

    def execute(self, context: Context) -> Any:
        # Before an export (one of 30 a day) is spent: a destination it could not land in.
        from airflow_provider_hubexport.landing import Destination

        Destination(self.destination, self.destination_conn_id).check_connection()
        return super().execute(context)

    def poll_until_complete(self, external_id: Any, context: Context) -> Any:
        export_task_id = self._ol_export_task_id = validate_id(external_id, "export_task_id")
        self._record_export(context, export_task_id)
        self.wait(context, export_task_id)
        return self.get_job_result(export_task_id, context)

    def get_job_result(self, external_id: Any, context: Context) -> Any:
        # The mixin may ask twice (after polling, and again for its return value): download once.
        export_task_id = validate_id(external_id, "export_task_id")
        self._record_export(context, export_task_id)
        if export_task_id not in self._landed:
            self._landed[export_task_id] = self.land(context, export_task_id)
        self._ol_export_task_id, self._ol_landed = export_task_id, self._landed[export_task_id]
        return self._landed[export_task_id]

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        export_task_id = validate_id(check_event(event).get("export_task_id"), "export_task_id")
        self._ol_export_task_id = export_task_id  # a resumed task holds nothing from before deferring
        self._recall_export(context)
        complete_from_event(event, export_task_id, accept_errors=self.accept_errors, log=self.log)
        return self.get_job_result(export_task_id, context)
