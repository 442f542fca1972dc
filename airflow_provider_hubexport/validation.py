"""What the provider accepts before any request leaves the machine: HubSpot's enumerations and
limits, and the checks of ids and export requests. No I/O.

Import direction: validation <- api <- errors; this module imports none of the other two.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from airflow_provider_hubexport.exceptions import HubSpotExportRequestError

EXPORT_TYPES = ("VIEW", "LIST")
FORMATS = ("CSV", "XLS", "XLSX")
LANGUAGES = ("EN", "DE", "ES", "FR", "JA", "NL", "PT_BR", "IT", "PL", "SV", "FI", "ZH_TW", "DA_DK", "NO")
FILTER_OPERATORS = (
    "EQ",
    "NEQ",
    "LT",
    "LTE",
    "GT",
    "GTE",
    "BETWEEN",
    "IN",
    "NOT_IN",
    "HAS_PROPERTY",
    "NOT_HAS_PROPERTY",
    "CONTAINS_TOKEN",
    "NOT_CONTAINS_TOKEN",
)
# HubSpot's CRM search limits, which the export's publicCrmSearchRequest shares.
MAX_FILTER_GROUPS = 5
MAX_FILTERS_PER_GROUP = 6
MAX_FILTERS_TOTAL = 18

# HubSpot's export options for associations and internal values.
MAX_ASSOCIATED_OBJECT_TYPES = 4
INTERNAL_VALUES_OPTIONS = ("NAMES", "VALUES")
BOOLEAN_FIELDS = (
    "includeLabeledAssociations",
    "includePrimaryDisplayPropertyForAssociatedObjects",
    "overrideAssociatedObjectsPerDefinitionPerRowLimit",
)

API_VERSIONS = ("v3", "2026-03")
DEFAULT_API_VERSION = "v3"
# HubSpot ids are 64-bit; anything longer is not an id but an accident or an attack.
MAX_ID_DIGITS = 19

# Where a good id of each kind is found: the advice a bad one gets.
_EXPORT_ID_ADVICE = "Pass the id HubSpot returned when the export started (the start task's XCom value)."
ID_ADVICE = {
    "export_task_id": _EXPORT_ID_ADVICE,
    "export_id": _EXPORT_ID_ADVICE,
    "listId": "Pass the list's id: the number at the end of the list's address in HubSpot (CRM > Lists), "
    "such as 123.",
}


def validate_id(value: Any, field_name: str = "export_task_id", *, label: str | None = None) -> str:
    """Return a HubSpot id as a digit string, or refuse it with a message naming the field.

    Ids go into URL paths, so anything but plain digits (``../1``, ``1%2F..``) is refused rather
    than escaped. ``label`` names the field as the caller's user wrote it (``list_id`` for the
    operators' keyword); the advice follows the kind of id, ``field_name``.
    """
    label = label or field_name
    advice = ID_ADVICE.get(field_name, "Pass the id HubSpot shows for it, a number such as 12345.")
    if isinstance(value, bool) or value is None:
        raise HubSpotExportRequestError(
            f"{label} must be a positive integer (an int or a string of digits), got {value!r}. {advice}"
        )
    if isinstance(value, int):
        text = str(value)
    elif isinstance(value, str):
        text = value.strip()
    else:
        raise HubSpotExportRequestError(
            f"{label} must be a positive integer (an int or a string of digits), "
            f"got a {type(value).__name__}. {advice}"
        )
    if not text.isascii() or not text.isdigit() or int(text) <= 0 or len(text) > MAX_ID_DIGITS:
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise HubSpotExportRequestError(
            f"{label} must be a positive integer of at most {MAX_ID_DIGITS} digits, got {shown!r}. {advice}"
        )
    return str(int(text))


CHECKSUMS = ("sha256",)


def validate_checksum(value: Any) -> str | None:
    """``checksum`` of the download: None (the default: no digest) or an algorithm we compute."""
    if value is None or value in CHECKSUMS:
        return value
    raise HubSpotExportRequestError(
        f"checksum must be None or one of {', '.join(map(repr, CHECKSUMS))}; got {value!r}. Pass "
        "checksum='sha256' to record each landed file's SHA-256 (its 'sha256' key), or leave it out."
    )


def _field(key: str, keywords: Mapping[str, str]) -> str:
    """A request field as its user gave it: an operator keyword, or a key of the request dict."""
    return f"{keywords[key]} (HubSpot's {key})" if key in keywords else f"Export request field {key!r}"


def _choice(
    request: Mapping[str, Any],
    key: str,
    allowed: tuple[str, ...],
    keywords: Mapping[str, str],
    *,
    required: bool = True,
) -> None:
    value = request.get(key)
    if value is None and not required:
        return
    if value not in allowed:
        raise HubSpotExportRequestError(
            f"{_field(key, keywords)} must be one of {', '.join(allowed)}; got {value!r}. Use one of "
            "those, in capitals."
        )


_FILTER_EXAMPLE = "{'propertyName': 'email', 'operator': 'HAS_PROPERTY'}"


def _validate_filters(filters: Any, where: str) -> int:
    if not isinstance(filters, list):
        raise HubSpotExportRequestError(
            f"{where} must be a list of filters such as [{_FILTER_EXAMPLE}], got {type(filters).__name__}."
        )
    for i, flt in enumerate(filters):
        if not isinstance(flt, Mapping):
            raise HubSpotExportRequestError(
                f"{where}[{i}] must be an object with propertyName and operator, such as {_FILTER_EXAMPLE}."
            )
        if not isinstance(flt.get("propertyName"), str) or not flt.get("propertyName"):
            raise HubSpotExportRequestError(
                f"{where}[{i}].propertyName must be a non-empty string: the property to filter on, such as 'email'."
            )
        if flt.get("operator") not in FILTER_OPERATORS:
            raise HubSpotExportRequestError(
                f"{where}[{i}].operator must be one of {', '.join(FILTER_OPERATORS)}; "
                f"got {flt.get('operator')!r}. Use one of those, in capitals."
            )
    return len(filters)


def _validate_search(search: Any, keywords: Mapping[str, str]) -> None:
    where = "publicCrmSearchRequest"
    if not isinstance(search, Mapping):
        raise HubSpotExportRequestError(
            f"{where} must be an object such as {{'filterGroups': [{{'filters': [{_FILTER_EXAMPLE}]}}]}}, "
            f"got {type(search).__name__}."
        )
    total = 0
    if "filters" in search:
        total += _validate_filters(search["filters"], keywords.get(f"{where}.filters", f"{where}.filters"))
    if "filterGroups" in search:
        groups = search["filterGroups"]
        groups_where = keywords.get(f"{where}.filterGroups", f"{where}.filterGroups")
        if not isinstance(groups, list):
            raise HubSpotExportRequestError(
                f"{groups_where} must be a list of groups such as [{{'filters': [{_FILTER_EXAMPLE}]}}], "
                f"got {type(groups).__name__}."
            )
        if len(groups) > MAX_FILTER_GROUPS:
            raise HubSpotExportRequestError(
                f"{groups_where} has {len(groups)} groups; HubSpot allows at most {MAX_FILTER_GROUPS}: "
                "merge groups, or split the export into several."
            )
        for i, group in enumerate(groups):
            if not isinstance(group, Mapping):
                raise HubSpotExportRequestError(
                    f"{groups_where}[{i}] must be an object with filters, such as {{'filters': [{_FILTER_EXAMPLE}]}}."
                )
            n = _validate_filters(group.get("filters", []), f"{groups_where}[{i}].filters")
            if n > MAX_FILTERS_PER_GROUP:
                raise HubSpotExportRequestError(
                    f"{groups_where}[{i}] has {n} filters; HubSpot allows at most "
                    f"{MAX_FILTERS_PER_GROUP} per group: move some into another group, or split the export."
                )
            total += n
    if total > MAX_FILTERS_TOTAL:
        raise HubSpotExportRequestError(
            f"{where} has {total} filters in all; HubSpot allows at most {MAX_FILTERS_TOTAL}: drop some, "
            "or split the export into several."
        )


def validate_export_request(request: Any, keywords: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Check an export request in HubSpot's camelCase shape and return a copy to send.

    Only the fields HubSpot documents are checked; unknown keys pass through untouched, since
    HubSpot adds fields over time and a provider should not stand in the way of them.
    ``keywords`` maps a field to the operator keyword it came from, so a message names what the
    user wrote.
    """
    keywords = keywords or {}
    if not isinstance(request, Mapping):
        raise HubSpotExportRequestError(
            f"The export request must be a dict in HubSpot's camelCase shape, got {type(request).__name__}."
        )
    _choice(request, "exportType", EXPORT_TYPES, keywords)
    _choice(request, "format", FORMATS, keywords)
    _choice(request, "language", LANGUAGES, keywords, required=False)
    object_type = request.get("objectType")
    if not isinstance(object_type, str) or not object_type.strip():
        raise HubSpotExportRequestError(
            f"{_field('objectType', keywords)} is required: give a CRM object such as CONTACT, COMPANY, "
            f"DEAL or a custom object's id like 2-1234567; got {object_type!r}."
        )
    props = request.get("objectProperties")
    if not isinstance(props, list) or not props or not all(isinstance(p, str) and p.strip() for p in props):
        raise HubSpotExportRequestError(
            f"{_field('objectProperties', keywords)} must be a non-empty list of property names "
            f"(strings), for example ['email', 'firstname']; got {props!r}."
        )
    if request.get("exportType") == "LIST":
        list_id = request.get("listId")
        if list_id is None or list_id == "":
            raise HubSpotExportRequestError(
                f"{_field('listId', keywords)} is required when exportType is LIST: give the id of the "
                "list to export (the operators' list_id)."
            )
        validate_id(list_id, "listId", label=_field("listId", keywords))
    if "exportName" in request and not isinstance(request["exportName"], str):
        raise HubSpotExportRequestError(
            f"{_field('exportName', keywords)} must be a string, such as 'daily contacts'; "
            f"got a {type(request['exportName']).__name__}."
        )
    if "publicCrmSearchRequest" in request:
        _validate_search(request["publicCrmSearchRequest"], keywords)
    _validate_associations(request, keywords)
    return json.loads(json.dumps(dict(request)))


def _validate_associations(request: Mapping[str, Any], keywords: Mapping[str, str]) -> None:
    """HubSpot's options for associated objects and internal values, as its reference documents them."""
    associated = request.get("associatedObjectType")
    if associated is not None:
        names = [associated] if isinstance(associated, str) else associated
        if not isinstance(names, list) or not all(isinstance(n, str) and n.strip() for n in names):
            raise HubSpotExportRequestError(
                f"{_field('associatedObjectType', keywords)} must be a list of object types such as "
                f"['COMPANY', 'DEAL']; got {associated!r}."
            )
        if len(names) > MAX_ASSOCIATED_OBJECT_TYPES:
            raise HubSpotExportRequestError(
                f"{_field('associatedObjectType', keywords)} has {len(names)} object types; HubSpot exports "
                f"at most {MAX_ASSOCIATED_OBJECT_TYPES} associated types: drop some, or export them separately."
            )
    options = request.get("exportInternalValuesOptions")
    if options is not None and (
        not isinstance(options, list)
        or not all(o in INTERNAL_VALUES_OPTIONS for o in options)
        or len(set(options)) != len(options)
    ):
        raise HubSpotExportRequestError(
            f"{_field('exportInternalValuesOptions', keywords)} must be a list of {' and/or '.join(INTERNAL_VALUES_OPTIONS)} "
            f"(NAMES: internal property names as the column headers; VALUES: internal values such as "
            f"'lead' instead of labels), each once; got {options!r}."
        )
    for key in BOOLEAN_FIELDS:
        if key in request and not isinstance(request[key], bool):
            raise HubSpotExportRequestError(
                f"{_field(key, keywords)} must be True or False; got {request[key]!r}."
            )
