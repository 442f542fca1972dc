"""What an export asks for: its start request read against the CRM's schema into a ``Query``, or
refused with the 400 VALIDATION_ERROR HubSpot would give (``QueryError``).

Checked here: the object type (a custom object only by its type id), the properties (each defined
and not archived), the search (``search.read_search``), ``associatedObjectType`` (at most 4 known
types), ``exportInternalValuesOptions`` (NAMES and/or VALUES) and the three boolean options.
The basic shape (exportType, format, a non-empty property list) is ``api.invalid_request``'s.

A LIST export's members are every record of the type the export may see (the sandbox keeps no
lists): its ``listId`` picks nothing, and a ``publicCrmSearchRequest`` beside it is ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_hubexport.sandbox.schema import (
    CustomObjectByName,
    ObjectType,
    Property,
    Schema,
    UnknownObjectType,
)
from airflow_provider_hubexport.sandbox.search import QueryError, Search, read_search

MAX_ASSOCIATED_TYPES = 4
INTERNAL_VALUES_OPTIONS = ("NAMES", "VALUES")
BOOLEAN_OPTIONS = (
    "includeLabeledAssociations",
    "overrideAssociatedObjectsPerDefinitionPerRowLimit",
    "includePrimaryDisplayPropertyForAssociatedObjects",
)


@dataclass
class Query:
    """An export's request, read: what its file holds and how it is written."""

    object_type: ObjectType
    columns: list[Property]  # objectProperties, in the order asked (repeats kept)
    export_type: str = "VIEW"
    search: Search = field(default_factory=Search)
    associated: list[ObjectType] = field(default_factory=list)  # a column each, after the properties
    names: bool = False  # NAMES: internal names in the header row, else labels
    internal_values: bool = False  # VALUES: enumerations' internal values, else their labels
    options: dict[str, bool] = field(default_factory=dict)  # the boolean options, as given

    def header(self) -> list[str]:
        cells = [p.name if self.names else p.label for p in self.columns]
        return cells + [f"Associated {t.singular} IDs" for t in self.associated]


def object_type_for_export(schema: Schema, spelling: Any) -> ObjectType:
    try:
        return schema.for_export(spelling)
    except (UnknownObjectType, CustomObjectByName) as err:
        raise QueryError(str(err), "INVALID_OBJECT_TYPE") from None


def read_query(schema: Schema, body: Mapping[str, Any]) -> Query:
    """``body`` (already of the basic shape) as a ``Query``, or ``QueryError``."""
    object_type = object_type_for_export(schema, body.get("objectType"))
    names = body.get("objectProperties") or []
    unknown = [str(n) for n in names if not isinstance(n, str) or object_type.live(n) is None]
    if unknown:
        raise QueryError(
            f"Unknown properties for {object_type.name}: {', '.join(unknown)}. Every one of "
            "objectProperties must be a property of the object type.",
            "PROPERTY_DOESNT_EXIST",
            propertyName=unknown,
        )
    query = Query(
        object_type, [object_type.properties[n] for n in names], str(body.get("exportType", "VIEW"))
    )
    query.associated = _associated(schema, body.get("associatedObjectType"))
    options = body.get("exportInternalValuesOptions")
    if options is not None:
        if not isinstance(options, list) or not all(o in INTERNAL_VALUES_OPTIONS for o in options):
            raise QueryError(
                f"exportInternalValuesOptions must be a list of {' and/or '.join(INTERNAL_VALUES_OPTIONS)}; "
                f"got {options!r}.",
                "INVALID_INTERNAL_VALUES_OPTION",
            )
        query.names = "NAMES" in options
        query.internal_values = "VALUES" in options
    for key in BOOLEAN_OPTIONS:
        if key in body:
            if not isinstance(body[key], bool):
                raise QueryError(f"{key} must be true or false; got {body[key]!r}.", "INVALID_BOOLEAN")
            query.options[key] = body[key]
    if query.export_type == "VIEW":
        query.search = read_search(object_type, body.get("publicCrmSearchRequest"))
    return query


def _associated(schema: Schema, given: Any) -> list[ObjectType]:
    if given is None:
        return []
    spellings = [given] if isinstance(given, str) else given
    if not isinstance(spellings, list):
        raise QueryError(f"associatedObjectType must be a list of object types; got {given!r}.")
    if len(spellings) > MAX_ASSOCIATED_TYPES:
        raise QueryError(
            f"associatedObjectType has {len(spellings)} object types; at most {MAX_ASSOCIATED_TYPES} "
            "associated object types can be exported.",
            "TOO_MANY_ASSOCIATED_OBJECT_TYPES",
        )
    return [object_type_for_export(schema, s) for s in spellings]
