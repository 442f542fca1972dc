"""The CRM's object types and their property definitions: what HubSpot's properties and schemas
APIs describe, what an export may name, and how each property's value is made up for generated
records (``Gen``; the making is ``generated``'s). No records, no I/O.

Four object types, as a HubSpot portal has them: contacts, companies and deals (HubSpot's own), and
one custom object, ``vehicles``. Each is named several ways, and HubSpot accepts different names in
different places (``ObjectType.names``, ``Schema.find``, ``Schema.for_export``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

DEFAULT_PORTAL_ID = 4242  # the custom object's fully qualified name when the sandbox has no portal id
BUILT_IN_AT_MS = 1_577_836_800_000  # 2020-01-01T00:00:00Z: when the built-in properties were "created"
PROPERTY_TYPES = ("string", "number", "datetime", "enumeration", "bool")
DAY_MS = 86_400_000


@dataclass(frozen=True)
class Gen:
    """How generated records get a value for a property (``generated`` reads it):

    - ``id``: the record id
    - ``numbered``: ``arg`` is a %-template of the id (one ``%d``, no CSV-special characters)
    - ``choice``: one of ``arg`` (a tuple of strings), drawn per ``id % 1000``
    - ``option``: one of the property's enumeration options, drawn per ``id % 1000``
    - ``decimal`` / ``integer``: a number in ``arg = (low, high)``, drawn per ``id % 1000``
    - ``time``: the record's modification time (``generated.Timeline``) plus ``arg`` milliseconds
    """

    kind: str
    arg: Any = None


@dataclass(frozen=True)
class Option:
    value: str  # the internal value (exported with VALUES, and what filters compare)
    label: str


@dataclass
class Property:
    """One property definition. ``gen`` None: generated records have no value for it (a property
    created later, ``Crm.add_property``)."""

    name: str
    label: str
    type: str  # string | number | datetime | enumeration | bool
    field_type: str
    group: str
    gen: Gen | None = None
    options: tuple[Option, ...] = ()
    unique: bool = False
    display_order: int = -1
    archived: bool = False
    created_ms: int = BUILT_IN_AT_MS
    updated_ms: int = BUILT_IN_AT_MS
    archived_ms: int | None = None

    def option_label(self, value: str) -> str:
        for option in self.options:
            if option.value == value:
                return option.label
        return value


@dataclass
class ObjectType:
    """An object type: its names, labels, the properties that carry its times, and its definitions."""

    name: str  # plural, lower case: "contacts" (the properties API's spelling)
    type_id: str  # "0-1", "2-4242001"
    export_name: str | None  # "CONTACT"; None: a custom object, exported only by its type id
    singular: str
    plural: str
    modified: str  # the property that holds the last modification time
    created: str
    properties: dict[str, Property] = field(default_factory=dict)  # in display order
    searchable: tuple[str, ...] = ()  # the properties a search's ``query`` looks in
    primary_display: str = "hs_object_id"
    custom: bool = False

    def fully_qualified_name(self, portal_id: int | None) -> str:
        if not self.custom:
            return self.name
        return f"p{portal_id or DEFAULT_PORTAL_ID}_{self.name}"

    def live(self, name: str) -> Property | None:
        """The property ``name`` if it is defined and not archived."""
        prop = self.properties.get(name)
        return prop if prop is not None and not prop.archived else None


def _p(
    name: str, label: str, type_: str, field_type: str, group: str, gen: Gen | None, **kw: Any
) -> Property:
    return Property(name, label, type_, field_type, group, gen, **kw)


FIRST_NAMES = ("Ada", "Zoë", "José", "Søren", "李", "Renée", "O'Brien", "Łukasz", "Ngozi", "Émile")
LAST_NAMES = ("Lovelace", "Müller", "García, Jr.", 'the "Hammer"', "Ångström", "Nakamura", "Okafor")
COMPANIES = ("Acme, Inc.", "Globex", 'Initech "Labs"', "Umbrella\nHoldings", "Stark Industries", "Wayne Ent.")
NOTES = ("plain", "two\nlines", 'said "hi", left', "emoji 🚀 ok", "")  # "": no value
CITIES = ("Berlin", "São Paulo", "Kraków", "Zürich", "Cambridge, MA", "東京")
MAKES = ("Volvo", "Škoda", "Toyota", "Mercedes-Benz", "Citroën", "Ford")


def _options(*pairs: tuple[str, str]) -> tuple[Option, ...]:
    return tuple(Option(value, label) for value, label in pairs)


LIFECYCLE_STAGES = _options(
    ("subscriber", "Subscriber"),
    ("lead", "Lead"),
    ("marketingqualifiedlead", "Marketing Qualified Lead"),
    ("salesqualifiedlead", "Sales Qualified Lead"),
    ("opportunity", "Opportunity"),
    ("customer", "Customer"),
    ("evangelist", "Evangelist"),
    ("other", "Other"),
)
INDUSTRIES = _options(
    ("COMPUTER_SOFTWARE", "Computer Software"),
    ("FINANCIAL_SERVICES", "Financial Services"),
    ("HOSPITAL_HEALTH_CARE", "Hospital & Health Care"),
    ("RETAIL", "Retail"),
    ("AUTOMOTIVE", "Automotive"),
)
DEAL_STAGES = _options(
    ("appointmentscheduled", "Appointment Scheduled"),
    ("qualifiedtobuy", "Qualified To Buy"),
    ("presentationscheduled", "Presentation Scheduled"),
    ("decisionmakerboughtin", "Decision Maker Bought-In"),
    ("contractsent", "Contract Sent"),
    ("closedwon", "Closed Won"),
    ("closedlost", "Closed Lost"),
)

_ID = Gen("id")
_MODIFIED = Gen("time", 0)
_CREATED = Gen("time", -DAY_MS)  # created a day before the (generated) last modification


def _contacts() -> ObjectType:
    g = "contactinformation"
    props = [
        _p("hs_object_id", "Record ID", "number", "number", g, _ID, unique=True),
        _p("email", "Email", "string", "text", g, Gen("numbered", "user%d@example.com")),
        _p("firstname", "First Name", "string", "text", g, Gen("choice", FIRST_NAMES)),
        _p("lastname", "Last Name", "string", "text", g, Gen("choice", LAST_NAMES)),
        _p("company", "Company Name", "string", "text", g, Gen("choice", COMPANIES)),
        _p("phone", "Phone Number", "string", "phonenumber", g, Gen("numbered", "+1-555-%d")),
        _p("notes", "Notes", "string", "textarea", g, Gen("choice", NOTES)),
        _p(
            "lifecyclestage",
            "Lifecycle Stage",
            "enumeration",
            "radio",
            g,
            Gen("option"),
            options=LIFECYCLE_STAGES,
        ),  # fmt: skip
        # Not a HubSpot contact property: the benchmarks export it (a wide numeric column).
        _p("amount", "Amount", "number", "number", g, Gen("decimal", (0, 10_000_000))),
        _p("createdate", "Create Date", "datetime", "date", g, _CREATED),
        _p("lastmodifieddate", "Last Modified Date", "datetime", "date", g, _MODIFIED),
        # HubSpot's trap: contacts define it, but their modifications set lastmodifieddate, never
        # this; no contact has a value for it, so a filter on it matches nothing (no 400 either).
        _p("hs_lastmodifieddate", "Object last modified date/time", "datetime", "date", g, None),
    ]
    return ObjectType(
        "contacts", "0-1", "CONTACT", "Contact", "Contacts", "lastmodifieddate", "createdate",
        _by_name(props), searchable=("firstname", "lastname", "email", "company", "phone"),
        primary_display="email",
    )  # fmt: skip


def _companies() -> ObjectType:
    g = "companyinformation"
    props = [
        _p("hs_object_id", "Record ID", "number", "number", g, _ID, unique=True),
        _p("name", "Company name", "string", "text", g, Gen("choice", COMPANIES)),
        _p("domain", "Company Domain Name", "string", "text", g, Gen("numbered", "company%d.example.com")),
        _p("industry", "Industry", "enumeration", "select", g, Gen("option"), options=INDUSTRIES),
        _p("city", "City", "string", "text", g, Gen("choice", CITIES)),
        _p("createdate", "Create Date", "datetime", "date", g, _CREATED),
        _p("hs_lastmodifieddate", "Last Modified Date", "datetime", "date", g, _MODIFIED),
    ]
    return ObjectType(
        "companies", "0-2", "COMPANY", "Company", "Companies", "hs_lastmodifieddate", "createdate",
        _by_name(props), searchable=("name", "domain", "city"), primary_display="name",
    )  # fmt: skip


def _deals() -> ObjectType:
    g = "dealinformation"
    props = [
        _p("hs_object_id", "Record ID", "number", "number", g, _ID, unique=True),
        _p("dealname", "Deal Name", "string", "text", g, Gen("numbered", "Deal %d")),
        _p("amount", "Amount", "number", "number", g, Gen("decimal", (0, 10_000_000))),
        _p("dealstage", "Deal Stage", "enumeration", "radio", g, Gen("option"), options=DEAL_STAGES),
        _p("closedate", "Close Date", "datetime", "date", g, Gen("time", 30 * DAY_MS)),
        _p("createdate", "Create Date", "datetime", "date", g, _CREATED),
        _p("hs_lastmodifieddate", "Last Modified Date", "datetime", "date", g, _MODIFIED),
    ]
    return ObjectType(
        "deals", "0-3", "DEAL", "Deal", "Deals", "hs_lastmodifieddate", "createdate",
        _by_name(props), searchable=("dealname",), primary_display="dealname",
    )  # fmt: skip


VEHICLES_TYPE_ID = "2-4242001"


def _vehicles() -> ObjectType:
    g = "vehicle_information"
    props = [
        _p("hs_object_id", "Record ID", "number", "number", g, _ID, unique=True),
        _p("vehicle_name", "Vehicle Name", "string", "text", g, Gen("numbered", "Vehicle %d")),
        _p("make", "Make", "string", "text", g, Gen("choice", MAKES)),
        _p("model_year", "Model Year", "number", "number", g, Gen("integer", (1990, 2026))),
        _p("hs_createdate", "Object create date/time", "datetime", "date", g, _CREATED),
        _p("hs_lastmodifieddate", "Object last modified date/time", "datetime", "date", g, _MODIFIED),
    ]
    return ObjectType(
        "vehicles", VEHICLES_TYPE_ID, None, "Vehicle", "Vehicles", "hs_lastmodifieddate", "hs_createdate",
        _by_name(props), searchable=("vehicle_name", "make"), primary_display="vehicle_name", custom=True,
    )  # fmt: skip


def _by_name(props: list[Property]) -> dict[str, Property]:
    for order, prop in enumerate(props):
        prop.display_order = order
    return {p.name: p for p in props}


class UnknownObjectType(LookupError):
    """HubSpot's answer to a name it cannot map to an object type (its message, verbatim)."""

    def __init__(self, spelling: object) -> None:
        super().__init__(f"Unable to infer object type from: {spelling}")


class CustomObjectByName(LookupError):
    """A custom object named, in an export, by anything but its type id (HubSpot refuses it)."""

    def __init__(self, spelling: str, object_type: ObjectType) -> None:
        super().__init__(
            f"Unable to infer object type from: {spelling}. Custom objects are exported by their "
            f"objectTypeId: use objectType {object_type.type_id!r} for {object_type.name}."
        )
        self.object_type = object_type


_FQN = re.compile(r"p\d+_(\w+)", re.IGNORECASE)


class Schema:
    """The portal's object types (fresh definitions per ``Schema``: properties can be added and
    archived, see ``Crm``)."""

    def __init__(self) -> None:
        self.types: dict[str, ObjectType] = {
            t.name: t for t in (_contacts(), _companies(), _deals(), _vehicles())
        }

    def __iter__(self) -> Iterator[ObjectType]:
        return iter(self.types.values())

    def find(self, spelling: object) -> ObjectType:
        """The object type any of HubSpot's spellings names: the plural name (``contacts``), the type
        id (``0-1``), the export name (``CONTACT``) or singular label, a custom object's fully
        qualified name (``p4242_vehicles``; any portal id). Case-insensitive; else ``UnknownObjectType``."""
        if isinstance(spelling, str):
            text = spelling.strip().lower()
            fqn = _FQN.fullmatch(text)
            for t in self.types.values():
                if text in (t.name, t.type_id, t.singular.lower(), (t.export_name or "").lower()) or (
                    t.custom and fqn is not None and fqn.group(1) == t.name
                ):
                    return t
        raise UnknownObjectType(spelling)

    def for_export(self, spelling: object) -> ObjectType:
        """The object type an export's ``objectType`` names: a HubSpot object by its export name
        (``CONTACT``, any case) or type id (``0-1``), a custom object by its type id only (any other
        name for it: ``CustomObjectByName``); else ``UnknownObjectType``."""
        if isinstance(spelling, str):
            text = spelling.strip()
            for t in self.types.values():
                if text == t.type_id or (t.export_name is not None and text.upper() == t.export_name):
                    return t
            try:
                found = self.find(text)
            except UnknownObjectType:
                found = None
            if found is not None and found.custom:
                raise CustomObjectByName(text, found)
        raise UnknownObjectType(spelling)
