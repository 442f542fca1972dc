"""What an export read and wrote, as OpenLineage reports it: the names (plain strings) and the
``OperatorLineage`` the operators' OpenLineage methods return.

The OpenLineage client is imported only inside :func:`export_lineage` and the facet class's
factory, which Airflow reaches only when the OpenLineage provider is installed and enabled: a DAG
file that imports an operator imports neither. Naming: https://openlineage.io/docs/spec/naming.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

# HubSpot has no entry in OpenLineage's naming spec: a portal is the namespace, as a database
# server is for a table.
HUBSPOT_SCHEME = "hubspot"
_SCHEMES = {"gcs": "gs", "s3a": "s3"}  # fsspec's protocol names, as OpenLineage spells them


def hubspot_dataset(portal_id: int | None, request: Mapping[str, Any]) -> tuple[str, str]:
    """The exported HubSpot data as (namespace, name): ``hubspot://<portal id>`` (``hubspot`` when
    the portal is unknown), and the object type (``CONTACT``, ``2-12345``), or ``lists/<id>`` for
    a list export."""
    namespace = f"{HUBSPOT_SCHEME}://{portal_id}" if portal_id else HUBSPOT_SCHEME
    if str(request.get("exportType", "")).upper() == "LIST" and request.get("listId"):
        return namespace, f"lists/{request['listId']}"
    return namespace, str(request.get("objectType", "")).upper() or "UNKNOWN"


def destination_dataset(local_dir: str | None, remote: Any = None) -> tuple[str, str]:
    """Where the files landed, as (namespace, name): a local directory is ``file`` and its absolute
    path; object storage is ``<scheme>://<bucket>`` and the key (``ObjectStoragePath`` drops the
    leading slash of a ``file:///`` path and has no namespace for a bare path, hence ``local_dir``)."""
    if local_dir is not None:
        return "file", local_dir.rstrip("/") or "/"
    protocol = _SCHEMES.get(remote.protocol, remote.protocol)
    bucket = getattr(remote, "bucket", "")
    key = str(getattr(remote, "key", "")).strip("/")
    return (f"{protocol}://{bucket}" if bucket else protocol), key


# ---------------------------------------------------------------------------------------------
# OpenLineage objects: built only from the operators' OpenLineage methods, which Airflow calls
# only when the OpenLineage provider is installed and enabled.
# ---------------------------------------------------------------------------------------------
RUN_FACET = "hubspotExport"


@functools.cache
def export_run_facet_class() -> type:
    """``HubSpotExportRunFacet``: the export behind a run, so an event can be traced back to HubSpot.
    Made on first use: its base class comes from the OpenLineage client."""
    import attrs
    from airflow.providers.common.compat.openlineage.facet import RunFacet

    @attrs.define
    class HubSpotExportRunFacet(RunFacet):  # type: ignore[misc, valid-type]
        exportTaskId: str  # noqa: N815 - OpenLineage facets are camelCase
        objectType: str | None = attrs.field(default=None)  # noqa: N815
        exportType: str | None = attrs.field(default=None)  # noqa: N815
        format: str | None = attrs.field(default=None)
        listId: str | None = attrs.field(default=None)  # noqa: N815
        files: list[str] = attrs.field(factory=list)  # where they landed; never the signed URL
        # An incremental export's window: property, startMs, endMs, start, end (ISO), lookbackSeconds.
        window: dict[str, Any] | None = attrs.field(default=None)
        _additional_skip_redact = [
            "exportTaskId",
            "objectType",
            "exportType",
            "format",
            "listId",
            "files",
            "window",
        ]

        @staticmethod
        def _get_schema() -> str:
            return SCHEMA_URL

    return HubSpotExportRunFacet


def facet_window(window: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The window (``window.ExportWindow.to_dict``) in OpenLineage's camelCase."""
    if not window:
        return None
    return {
        "property": window["property"],
        "startMs": window["start_ms"],
        "endMs": window["end_ms"],
        "start": window["start"],
        "end": window["end"],
        "lookbackSeconds": window["lookback_seconds"],
    }


SCHEMA_URL = (
    "https://raw.githubusercontent.com/airflow-provider-hubexport/airflow-provider-hubexport/main/"
    "airflow_provider_hubexport/HubSpotExportRunFacet.json"
)


# OpenLineage's listener reports from a forked process it stops after ``[openlineage]
# execution_timeout`` (10 s by default), losing the whole event: its calls to HubSpot are one try
# each, with short timeouts (connect, read), two calls at most.
LINEAGE_TIMEOUTS = (2.0, 2.5)


def task_lineage(
    hook: Any,
    *,
    export_task_id: str | None,
    request: Mapping[str, Any] | None,
    landed: Any,
    destination: Any,
    failed: bool = False,
    window: Mapping[str, Any] | None = None,
) -> Any:
    """What an operator's OpenLineage methods return, from the task's own result (``landed``, set
    after the download, also after a deferral) and, for a task that succeeded, at most two quick
    calls: the portal id (unless the connection's ``portal_id`` extra gives it) and, once files
    landed, the export's description (its record count; what was exported when the task did not
    start the export itself; asked under the export task id, see below). A failed task makes no
    call: HubSpot may be why it failed."""
    import dataclasses

    from airflow_provider_hubexport.hooks.retry import RetryPolicy
    from airflow_provider_hubexport.landing import Destination

    settings = hook.settings
    portal_id = settings.portal_id
    description: Mapping[str, Any] = {}
    if not failed:
        quick = type(hook)(hook.hubspot_conn_id)
        quick.settings = dataclasses.replace(
            settings,
            connect_timeout=LINEAGE_TIMEOUTS[0],
            read_timeout=LINEAGE_TIMEOUTS[1],
            retry=RetryPolicy(max_attempts=1, max_seconds=0),
        )
        portal_id = quick.get_portal_id()
        if export_task_id and landed is not None:
            # Asked under the export task id: HubSpot's documentation takes an export id here, and
            # whether the two are the same number is not verified (api.py, "Ids"). A 404 (or any
            # other failure) leaves lineage without the description, never the task failed.
            try:
                description = quick.get_export(export_task_id)
            except Exception as err:  # noqa: BLE001 - lineage without it rather than no lineage
                hook.log.info(
                    "Export %s not described by HubSpot (%s): lineage without its rows.", export_task_id, err
                )
    dest = None
    if landed is not None:
        where = Destination(destination)
        dest = destination_dataset(where.local_dir, where.remote)
    count = description.get("recordCount")
    return export_lineage(
        portal_id=portal_id,
        # A failed task asks nothing: without the portal it names no input rather than a second
        # dataset ('hubspot') for what its successes name 'hubspot://<portal id>'.
        name_input=portal_id is not None or not failed,
        export_task_id=export_task_id,
        request=request or description or None,
        landed=landed,
        destination=dest,
        record_count=count if isinstance(count, int) and not isinstance(count, bool) else None,
        window=window,
    )


def export_lineage(
    *,
    portal_id: int | None,
    export_task_id: str | None,
    request: Mapping[str, Any] | None,
    landed: list[dict[str, Any]] | None,
    destination: tuple[str, str] | None,
    record_count: int | None = None,
    name_input: bool = True,
    window: Mapping[str, Any] | None = None,
) -> Any:
    """The ``OperatorLineage`` of an export task: HubSpot's object in, the landed files out.

    ``request``: what was exported (HubSpot's camelCase request or export description; None:
    unknown, no input). ``landed``: the task's result (None: nothing landed, no output).
    """
    from airflow.providers.common.compat.openlineage.facet import (
        InputDataset,
        OutputDataset,
        OutputStatisticsOutputDatasetFacet,
        SchemaDatasetFacet,
        SchemaDatasetFacetFields,
    )
    from airflow.providers.openlineage.extractors import OperatorLineage

    inputs = []
    if request and name_input:
        namespace, name = hubspot_dataset(portal_id, request)
        properties = [str(p) for p in request.get("objectProperties") or []]
        facets = {"schema": SchemaDatasetFacet(fields=[SchemaDatasetFacetFields(name=p) for p in properties])}
        inputs.append(InputDataset(namespace=namespace, name=name, facets=facets if properties else {}))
    outputs = []
    if landed is not None and destination is not None:
        statistics = OutputStatisticsOutputDatasetFacet(
            rowCount=record_count, size=sum(int(f["size"]) for f in landed), fileCount=len(landed)
        )
        outputs.append(
            OutputDataset(
                namespace=destination[0], name=destination[1], outputFacets={"outputStatistics": statistics}
            )
        )
    run_facets = {}
    if export_task_id:
        request = request or {}
        run_facets[RUN_FACET] = export_run_facet_class()(
            exportTaskId=str(export_task_id),
            objectType=request.get("objectType"),
            exportType=request.get("exportType"),
            format=request.get("format"),
            listId=str(request["listId"]) if request.get("listId") else None,
            files=[str(f["path"]) for f in landed or []],
            window=facet_window(window),
        )
    return OperatorLineage(inputs=inputs, outputs=outputs, run_facets=run_facets)
