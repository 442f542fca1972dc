"""HubSpot's properties and schemas APIs over the CRM's object types: the API host's handlers for
``GET /crm/v3/properties/{objectType}`` and ``GET /crm/v3/schemas`` (and their date-versioned
twins, ``/crm/properties/2026-03/{objectType}`` and ``/crm/schemas/2026-03``), in HubSpot's shapes.

Each wants a scope for the object type it reads, as HubSpot does: the type's schema scope or its
objects scope (``crm.schemas.contacts.read`` or ``crm.objects.contacts.read``, ...; custom objects:
``crm.schemas.custom.read`` or ``crm.objects.custom.read``); the schemas list wants
``crm.schemas.custom.read``. The sandbox's default token has the schema scopes.
"""

from __future__ import annotations

from typing import Any, Protocol

from aiohttp import web

from airflow_provider_hubexport.sandbox.auth import check_bearer
from airflow_provider_hubexport.sandbox.crm import Crm
from airflow_provider_hubexport.sandbox.schema import ObjectType, Property, UnknownObjectType
from airflow_provider_hubexport.sandbox.wire import hubspot_error, iso

PROPERTIES_PATHS = (
    "/crm/v3/properties/{object_type}",
    r"/crm/properties/{version:\d{4}-\d{2}}/{object_type}",
)
SCHEMAS_PATHS = ("/crm/v3/schemas", r"/crm/schemas/{version:\d{4}-\d{2}}")
# Paths whose scope depends on the object type: the middleware checks only the token for them.
PREFIXES = ("/crm/v3/properties/", "/crm/properties/", "/crm/v3/schemas", "/crm/schemas/")
SCHEMAS_SCOPE = "crm.schemas.custom.read"


def read_scopes(object_type: ObjectType) -> tuple[str, ...]:
    """The scopes any one of which lets a token read ``object_type``'s properties."""
    kind = "custom" if object_type.custom else object_type.name
    return (f"crm.schemas.{kind}.read", f"crm.objects.{kind}.read")


class CatalogSettings(Protocol):
    """What the handlers read from the sandbox, on each request."""

    tokens: dict[str, dict[str, Any]]
    portal_id: int | None


def property_json(prop: Property) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": prop.name,
        "label": prop.label,
        "type": prop.type,
        "fieldType": prop.field_type,
        "groupName": prop.group,
        "description": "",
        "hidden": False,
        "archived": prop.archived,
        "calculated": False,
        "hasUniqueValue": prop.unique,
        "displayOrder": prop.display_order,
        "formField": True,
        "options": [
            {"label": o.label, "value": o.value, "displayOrder": n, "hidden": False, "description": ""}
            for n, o in enumerate(prop.options)
        ],
        "createdAt": iso(prop.created_ms / 1000),
        "updatedAt": iso(prop.updated_ms / 1000),
    }
    if prop.archived_ms is not None:
        body["archivedAt"] = iso(prop.archived_ms / 1000)
    return body


def schema_json(object_type: ObjectType, portal_id: int | None, properties: list[Property]) -> dict[str, Any]:
    t = object_type
    created = min(p.created_ms for p in t.properties.values())
    return {
        "id": t.type_id.split("-", 1)[1],
        "name": t.name,
        "fullyQualifiedName": t.fully_qualified_name(portal_id),
        "objectTypeId": t.type_id,
        "labels": {"singular": t.singular, "plural": t.plural},
        "primaryDisplayProperty": t.primary_display,
        "requiredProperties": [t.primary_display],
        "searchableProperties": list(t.searchable),
        "secondaryDisplayProperties": [n for n in t.searchable if n != t.primary_display][:1],
        "properties": [property_json(p) for p in properties],
        "associations": [],
        "archived": False,
        "metaType": "PORTAL_SPECIFIC",
        "createdAt": iso(created / 1000),
        "updatedAt": iso(max(p.updated_ms for p in t.properties.values()) / 1000),
    }


class CatalogHandlers:
    def __init__(self, settings: CatalogSettings, crm: Crm) -> None:
        self.settings = settings
        self.crm = crm

    def routes(self, app: web.Application, moved: str) -> None:
        for path in PROPERTIES_PATHS:
            app.router.add_get(f"{moved}{path}", self.properties)
        for path in SCHEMAS_PATHS:
            app.router.add_get(f"{moved}{path}", self.schemas)

    async def properties(self, request: web.Request) -> web.Response:
        """``GET /crm/v3/properties/{objectType}``: live properties, or with ``archived=true`` the
        archived ones only."""
        spelling = request.match_info["object_type"]
        try:
            object_type = self.crm.object_type(spelling)
        except UnknownObjectType as err:
            return hubspot_error(400, str(err), "VALIDATION_ERROR")
        denied = check_bearer(
            self.settings.tokens, request.headers.get("Authorization", ""), read_scopes(object_type)
        )
        if denied is not None:
            return denied
        archived = request.query.get("archived", "false").lower() == "true"
        results = [property_json(p) for p in self.crm.properties(object_type.name, archived=archived)]
        return web.json_response({"results": results})

    async def schemas(self, request: web.Request) -> web.Response:
        """``GET /crm/v3/schemas``: the portal's custom object types."""
        denied = check_bearer(
            self.settings.tokens, request.headers.get("Authorization", ""), (SCHEMAS_SCOPE,)
        )
        if denied is not None:
            return denied
        portal = self.settings.portal_id
        results = [
            schema_json(t, portal, self.crm.properties(t.name)) for t in self.crm.object_types() if t.custom
        ]
        return web.json_response({"results": results})
