"""The sandbox's CRM over HTTP: an export holds exactly the records its request matches, as the CRM
had them at the export's start; the properties and schemas APIs describe the object types.

Most tests use 30 generated contacts under a fixed genesis: record i was last modified at
``at(i) = G - 30 days + (i - 1) days``, one a day, so every boundary below is an exact millisecond.
"""

from __future__ import annotations

import csv
import io
import zipfile
from datetime import datetime, timezone

import pytest
import requests
from conftest import SECRET_TOKEN

from airflow_provider_hubexport.sandbox import Packaging

pytestmark = pytest.mark.no_airflow

AUTH = {"Authorization": f"Bearer {SECRET_TOKEN}"}
G = 1_796_400_000_000  # the CRM's genesis in these tests: 2026-12-04T15:00:00Z
DAY = 86_400_000
EXPORTS = "/crm/v3/exports/export"
CONTACTS = {
    "exportType": "VIEW",
    "format": "CSV",
    "objectType": "CONTACT",
    "objectProperties": ["hs_object_id", "email", "firstname", "lastmodifieddate", "notes", "lifecyclestage"],
    "exportInternalValuesOptions": ["NAMES", "VALUES"],
}


def at(i: int) -> int:
    """When generated contact ``i`` of 30 was last modified."""
    return G - 30 * DAY + (i - 1) * DAY


def iso(ms: int) -> str:
    stamp = datetime.fromtimestamp(ms // 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{ms % 1000:03d}Z"


@pytest.fixture
def crm(sandbox):
    crm = sandbox.crm
    crm.genesis_ms = G
    crm.clock_ms = lambda: G + 3_600_000
    crm.set_population("contacts", 30)
    return crm


def _start(sandbox, body, prefix=EXPORTS, headers=AUTH):
    return requests.post(f"{sandbox.api_url}{prefix}/async", json=body, headers=headers, timeout=30)


def _download(sandbox, task_id) -> bytes:
    status = requests.get(
        f"{sandbox.api_url}{EXPORTS}/async/tasks/{task_id}/status", headers=AUTH, timeout=120
    ).json()
    assert status["status"] == "COMPLETE", status
    return requests.get(status["result"], timeout=60).content


def _table(sandbox, body=None, **fields) -> list[list[str]]:
    """The CSV an export of ``CONTACTS`` (with ``body``, then ``fields``, over it) lands, header first."""
    sandbox.plan_next(pending_polls=0, processing_polls=0)
    started = _start(sandbox, {**CONTACTS, **(body or {}), **fields})
    assert started.status_code == 202, started.text
    content = _download(sandbox, started.json()["id"])
    return list(csv.reader(io.StringIO(content.decode("utf-8"), newline="")))


def _ids(sandbox, filters=(), groups=None, **fields) -> list[int]:
    """The ids an export with these filters (and groups) holds; or pass ``publicCrmSearchRequest``."""
    if "publicCrmSearchRequest" not in fields:
        search: dict = {"filters": list(filters)}
        if groups is not None:
            search["filterGroups"] = [{"filters": list(g)} for g in groups]
        fields["publicCrmSearchRequest"] = search
    return [int(row[0]) for row in _table(sandbox, **fields)[1:]]


def f(prop, op, value=None, **extra) -> dict:
    out = {"propertyName": prop, "operator": op, **extra}
    if value is not None:
        out["value"] = value
    return out


def _refused(sandbox, body, status=400) -> dict:
    before = len(sandbox.exports)
    answer = _start(sandbox, body)
    assert answer.status_code == status, answer.text
    error = answer.json()
    assert error["status"] == "error" and error["correlationId"]
    assert len(sandbox.exports) == before  # refused before any export started
    return error


ALL = list(range(1, 31))


# -- generated records -------------------------------------------------------------------------------
def test_generated_records_are_a_function_of_type_and_id_spread_over_the_30_days(sandbox, crm):
    rows = _table(sandbox)
    assert rows[0] == CONTACTS["objectProperties"]
    assert [int(r[0]) for r in rows[1:]] == ALL
    assert [r[3] for r in rows[1:]] == [iso(at(i)) for i in ALL]  # evenly spread, increasing
    assert rows[1][1] == "user1@example.com" and rows[30][1] == "user30@example.com"
    # Asked with other properties, in another order, the same records have the same values.
    again = _table(sandbox, objectProperties=["lifecyclestage", "firstname", "hs_object_id", "createdate"])
    assert [[r[0], r[1], r[2]] for r in again[1:]] == [[r[5], r[2], r[0]] for r in rows[1:]]
    assert [r[3] for r in again[1:]] == [iso(at(i) - DAY) for i in ALL]  # created a day earlier
    assert len({r[2] for r in rows[1:]}) > 3 and len({r[5] for r in rows[1:]}) > 3  # drawn, varied


def test_an_export_plans_row_count_sets_its_population_and_the_next_gets_the_standing_one(sandbox, crm):
    sandbox.plan_next(pending_polls=0, processing_polls=0, row_count=300)
    started = _start(sandbox, CONTACTS).json()["id"]
    rows = list(csv.reader(io.StringIO(_download(sandbox, started).decode(), newline="")))
    assert len(rows) == 301 and crm.population("contacts") == 300
    assert len(_table(sandbox)) == 31 and crm.population("CONTACT") == 30  # set_population's


# -- filters, one operator at a time -------------------------------------------------------------------
def _oracle(sandbox, column):
    """Each record's cell in ``column`` of an unfiltered export (internal values)."""
    rows = _table(sandbox)
    n = rows[0].index(column)
    return {int(r[0]): r[n] for r in rows[1:]}


@pytest.mark.parametrize(
    "flt,expected",
    [
        (f("hs_object_id", "EQ", "7"), [7]),
        (f("hs_object_id", "NEQ", "7"), [i for i in ALL if i != 7]),
        (f("hs_object_id", "EQ", "7.5"), []),
        (f("lastmodifieddate", "LT", str(at(10))), list(range(1, 10))),  # at the boundary: out
        (f("lastmodifieddate", "LTE", str(at(10))), list(range(1, 11))),  # at the boundary: in
        (f("lastmodifieddate", "LT", str(at(10) + 1)), list(range(1, 11))),
        (f("lastmodifieddate", "GT", str(at(10))), list(range(11, 31))),
        (f("lastmodifieddate", "GTE", str(at(10))), list(range(10, 31))),
        (f("lastmodifieddate", "GT", str(at(10) - 1)), list(range(10, 31))),
        (f("lastmodifieddate", "BETWEEN", str(at(5)), highValue=str(at(8))), [5, 6, 7, 8]),  # inclusive
        (f("lastmodifieddate", "BETWEEN", str(at(5) + 1), highValue=str(at(8) - 1)), [6, 7]),
        (f("lastmodifieddate", "GTE", iso(at(25))), list(range(25, 31))),  # ISO 8601 values too
        (f("lastmodifieddate", "GTE", at(25)), list(range(25, 31))),  # and numbers
        (f("hs_object_id", "IN", values=["3", "5", "99"]), [3, 5]),
        (f("hs_object_id", "NOT_IN", values=["3", "5"]), [i for i in ALL if i not in (3, 5)]),
        (f("lastmodifieddate", "IN", values=[str(at(4)), str(at(4) + 1)]), [4]),
        (f("hs_object_id", "HAS_PROPERTY"), ALL),
        (f("hs_object_id", "NOT_HAS_PROPERTY"), []),
        (f("email", "CONTAINS_TOKEN", "USER7"), [7]),  # whole token, any case
        (f("email", "CONTAINS_TOKEN", "user"), []),  # not a part of a token
        (f("email", "CONTAINS_TOKEN", "example.com"), ALL),
        (f("email", "CONTAINS_TOKEN", "*7@example.com"), [7, 17, 27]),  # a wildcard
        (f("email", "NOT_CONTAINS_TOKEN", "user7"), [i for i in ALL if i != 7]),
        (f("email", "EQ", "USER12@EXAMPLE.COM"), [12]),  # strings compare case-insensitively
        (f("email", "LT", "user2"), [1, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19]),  # as strings
        (f("hs_lastmodifieddate", "GTE", "0"), []),  # contacts' trap: defined, never set
        (f("hs_lastmodifieddate", "NOT_HAS_PROPERTY"), ALL),
    ],
)
def test_each_operator(sandbox, crm, flt, expected):
    assert _ids(sandbox, [flt]) == expected


def test_enumerations_compare_by_internal_value_any_case_and_records_without_a_value(sandbox, crm):
    stages = _oracle(sandbox, "lifecyclestage")
    leads = [i for i, s in stages.items() if s == "lead"]
    assert leads and len(leads) < 30
    assert _ids(sandbox, [f("lifecyclestage", "EQ", "LEAD")]) == leads
    assert _ids(sandbox, [f("lifecyclestage", "EQ", "Lead")]) == leads
    assert _ids(sandbox, [f("lifecyclestage", "IN", values=["lead", "customer"])]) == sorted(
        i for i, s in stages.items() if s in ("lead", "customer")
    )
    notes = _oracle(sandbox, "notes")
    empty = [i for i, n in notes.items() if n == ""]
    assert empty and len(empty) < 30
    assert _ids(sandbox, [f("notes", "NOT_HAS_PROPERTY")]) == empty
    assert _ids(sandbox, [f("notes", "HAS_PROPERTY")]) == [i for i in ALL if i not in empty]
    # No value never matches a comparison, and always matches NEQ / NOT_IN / NOT_CONTAINS_TOKEN.
    assert not set(empty) & set(_ids(sandbox, [f("notes", "LT", "zzzz")]))
    assert set(empty) <= set(_ids(sandbox, [f("notes", "NEQ", "plain")]))
    assert set(empty) <= set(_ids(sandbox, [f("notes", "NOT_IN", values=["plain"])]))
    assert set(empty) <= set(_ids(sandbox, [f("notes", "NOT_CONTAINS_TOKEN", "plain")]))


def test_numbers_compare_as_numbers(sandbox, crm):
    rows = _table(sandbox, objectProperties=["hs_object_id", "amount"])
    amounts = {int(r[0]): float(r[1]) for r in rows[1:]}
    over = sorted(i for i, a in amounts.items() if a > 50_000)
    assert 0 < len(over) < 30
    assert _ids(sandbox, [f("amount", "GT", "50000")]) == over  # as strings, "9..." > "5..." would differ
    assert _ids(sandbox, [f("amount", "GT", "50000.00")]) == over


def test_a_property_added_later_has_no_value_until_a_record_is_modified(sandbox, crm):
    crm.add_property("contacts", "favorite_color", label="Favorite color")
    crm.modify("contacts", 4, G, favorite_color="Deep Blue")
    rows = _table(sandbox, objectProperties=["hs_object_id", "favorite_color"])
    assert [r[1] for r in rows[1:]] == ["Deep Blue" if i == 4 else "" for i in ALL]
    assert _ids(sandbox, [f("favorite_color", "EQ", "deep blue")]) == [4]
    assert _ids(sandbox, [f("favorite_color", "CONTAINS_TOKEN", "blue")]) == [4]
    assert _ids(sandbox, [f("favorite_color", "HAS_PROPERTY")]) == [4]
    assert _ids(sandbox, [f("favorite_color", "NEQ", "Deep Blue")]) == [i for i in ALL if i != 4]
    assert _ids(sandbox, [f("favorite_color", "LT", "zzz")]) == [4]


# -- combinations ------------------------------------------------------------------------------------
def test_top_level_filters_are_anded(sandbox, crm):
    window = [f("lastmodifieddate", "GTE", str(at(10))), f("lastmodifieddate", "LT", str(at(20)))]
    assert _ids(sandbox, window) == list(range(10, 20))
    assert _ids(sandbox, [*window, f("hs_object_id", "NEQ", "15")]) == [i for i in range(10, 20) if i != 15]
    assert _ids(sandbox, [*window, f("email", "CONTAINS_TOKEN", "user3")]) == []


def test_groups_are_ored_and_their_filters_anded(sandbox, crm):
    groups = [
        [f("hs_object_id", "EQ", "2")],
        [f("hs_object_id", "EQ", "4")],
        [f("lastmodifieddate", "GTE", str(at(29)))],
        [f("lastmodifieddate", "GTE", str(at(20))), f("lastmodifieddate", "LTE", str(at(21)))],
    ]
    assert _ids(sandbox, groups=groups) == [2, 4, 20, 21, 29, 30]
    # A group whose filter needs each record checked, beside one computed as a range.
    mixed = [[f("lastmodifieddate", "GTE", str(at(28)))], [f("email", "CONTAINS_TOKEN", "user3")]]
    assert _ids(sandbox, groups=mixed) == [3, 28, 29, 30]


def test_top_level_filters_and_groups_must_both_match(sandbox, crm):
    groups = [
        [f("hs_object_id", "EQ", "5")],
        [f("hs_object_id", "EQ", "12")],
        [f("lastmodifieddate", "BETWEEN", str(at(20)), highValue=str(at(22)))],
        [f("email", "CONTAINS_TOKEN", "user25")],
    ]
    top = [f("lastmodifieddate", "GTE", str(at(10)))]
    assert _ids(sandbox, top, groups) == [12, 20, 21, 22, 25]  # 5 fails the top-level filter
    assert _ids(sandbox, [*top, f("hs_object_id", "NOT_IN", values=["21", "25"])], groups) == [12, 20, 22]


def test_query_is_a_substring_of_the_searchable_properties(sandbox, crm):
    assert _ids(sandbox, publicCrmSearchRequest={"query": "USER1"}) == [1, *range(10, 20)]
    assert _ids(
        sandbox, publicCrmSearchRequest={"query": "user1", "filters": [f("hs_object_id", "GT", "15")]}
    ) == [
        16,
        17,
        18,
        19,
    ]
    assert _ids(sandbox, publicCrmSearchRequest={"query": "no such text"}) == []


# -- changes, visibility and the index lag --------------------------------------------------------------
def test_boundaries_hold_for_a_modified_record(sandbox, crm):
    t = at(20) + 12_345
    crm.modify("contacts", 3, t, firstname="Moved")
    assert _ids(sandbox, [f("lastmodifieddate", "LT", str(t))]) == [1, 2, *range(4, 21)]
    assert _ids(sandbox, [f("lastmodifieddate", "LTE", str(t))]) == list(range(1, 21))
    assert _ids(sandbox, [f("lastmodifieddate", "GTE", str(t))]) == [3, *range(21, 31)]
    assert _ids(sandbox, [f("lastmodifieddate", "GT", str(t))]) == list(range(21, 31))
    assert _ids(sandbox, [f("lastmodifieddate", "BETWEEN", str(t), highValue=str(t))]) == [3]
    rows = _table(sandbox, publicCrmSearchRequest={"filters": [f("hs_object_id", "EQ", "3")]})
    assert rows[1][2:4] == ["Moved", iso(t)]


def test_a_modification_is_invisible_until_the_index_lag_has_passed(sandbox, crm):
    before = _table(sandbox)[3]  # record 3 as generated
    crm.index_lag_ms = 5_000
    t = G + 60_000
    crm.modify("contacts", 3, t, firstname="Renamed")
    crm.as_of_queue.extend([t + 4_999, t + 5_000])
    early, late = _table(sandbox), _table(sandbox)
    assert early[3] == before  # the previous version: its values and its modification time
    assert late[3][2:4] == ["Renamed", iso(t)] and late[3][:2] == before[:2]
    assert late[1:3] + late[4:] == early[1:3] + early[4:]
    assert [crm.exported_as_of(e) for e in list(sandbox.exports)[-2:]] == [t + 4_999, t + 5_000]
    assert not crm.as_of_queue
    # A window filter sees it only once visible, at its new time.
    crm.as_of_queue.extend([t + 4_999, t + 5_000])
    window = [f("lastmodifieddate", "GTE", str(t))]
    assert _ids(sandbox, window) == [] and _ids(sandbox, window) == [3]


def test_the_latest_visible_version_wins(sandbox, crm):
    crm.modify("contacts", 6, G + 1_000, firstname="First")
    crm.modify("contacts", 6, G + 2_000, email="second@example.com")
    crm.index_lag_ms = 500
    crm.as_of_queue.extend([G + 1_500, G + 2_499, G + 2_500])
    seen = [_table(sandbox)[6][1:4] for _ in range(3)]
    generated_email = "user6@example.com"
    assert seen[0] == [generated_email, "First", iso(G + 1_000)]
    assert seen[1] == seen[0]
    assert seen[2] == ["second@example.com", "First", iso(G + 2_000)]  # carries the earlier change


def test_a_created_record_exists_from_its_creation_plus_the_lag(sandbox, crm):
    crm.index_lag_ms = 1_000
    t = G + 10_000
    new_id = crm.create("contacts", t, email="new@example.com", firstname="Nova", lifecyclestage="lead")
    assert new_id == 31
    crm.as_of_queue.extend([t + 999, t + 1_000])
    assert _ids(sandbox)[-1] == 30
    rows = _table(
        sandbox, objectProperties=["hs_object_id", "email", "firstname", "createdate", "lastmodifieddate"]
    )
    assert rows[-1] == ["31", "new@example.com", "Nova", iso(t), iso(t)]
    assert crm.changes("contacts", t, t + 1) == {31: t}


def test_an_archived_record_is_gone_once_the_lag_has_passed(sandbox, crm):
    crm.index_lag_ms = 1_000
    crm.archive("contacts", 8, G + 5_000)
    crm.as_of_queue.extend([G + 5_999, G + 6_000, G + 6_000])
    assert 8 in _ids(sandbox)
    assert _ids(sandbox) == [i for i in ALL if i != 8]
    assert 8 not in _ids(sandbox, [f("hs_object_id", "EQ", "8")])
    assert 8 not in crm.changes("contacts", at(1), G)
    created = crm.create("contacts", G)
    crm.archive("contacts", created, G + 1)
    assert created not in _ids(sandbox) and created not in crm.changes("contacts", G, G + 10)


def test_generated_records_modified_after_the_as_of_time_do_not_exist_yet(sandbox, crm):
    crm.as_of_queue.extend([at(10), at(10) - 1])
    assert _ids(sandbox) == list(range(1, 11))
    assert _ids(sandbox) == list(range(1, 10))
    crm.index_lag_ms = DAY
    crm.as_of_queue.append(at(10))
    assert _ids(sandbox) == list(range(1, 10))  # record 10 is not indexed yet


def test_as_of_comes_from_the_queue_then_the_clock(sandbox, crm):
    crm.as_of_queue.extend([G + 7, G + 8])
    for _ in range(3):
        _table(sandbox)
    ids = list(sandbox.exports)
    assert [crm.exported_as_of(i) for i in ids] == [G + 7, G + 8, G + 3_600_000]
    with pytest.raises(KeyError):
        crm.exported_as_of("1")


def test_the_as_of_time_is_read_at_the_start_not_when_the_file_is_written(sandbox, crm):
    now = [G + 100]
    crm.clock_ms = lambda: now[0]
    sandbox.plan_next(pending_polls=1, processing_polls=0)
    task_id = _start(sandbox, CONTACTS).json()["id"]
    crm.modify("contacts", 2, G + 200, firstname="Later")
    now[0] = G + 300
    rows = list(csv.reader(io.StringIO(_poll_then_download(sandbox, task_id).decode(), newline="")))
    assert rows[2][2] != "Later" and crm.exported_as_of(task_id) == G + 100


def _poll_then_download(sandbox, task_id):
    url = f"{sandbox.api_url}{EXPORTS}/async/tasks/{task_id}/status"
    assert requests.get(url, headers=AUTH, timeout=30).json()["status"] == "PENDING"
    return _download(sandbox, task_id)


def test_changes_is_the_half_open_ground_truth(sandbox, crm):
    assert crm.changes("contacts", at(5), at(8)) == {5: at(5), 6: at(6), 7: at(7)}
    crm.modify("contacts", 2, at(8))  # at the end: out
    crm.modify("contacts", 1, at(8) - 1)  # inside: in, at its latest time in the range
    crm.modify("contacts", 6, at(6) + 10)
    crm.modify("contacts", 6, at(9))  # its latest, but outside the range
    crm.index_lag_ms = 10 * DAY  # the ground truth knows everything, whatever the index shows
    assert crm.changes("contacts", at(5), at(8)) == {1: at(8) - 1, 5: at(5), 6: at(6) + 10, 7: at(7)}
    assert crm.changes("contacts", at(5), at(5)) == {}
    assert list(crm.changes("CONTACT", at(1), G)) == ALL


def test_changes_and_modify_refuse_what_does_not_exist(crm):
    with pytest.raises(KeyError):
        crm.modify("contacts", 31, G)
    with pytest.raises(ValueError, match="no live property"):
        crm.modify("contacts", 1, G, nope="x")
    with pytest.raises(ValueError, match="lifecyclestage"):
        crm.modify("contacts", 1, G, lifecyclestage="Lead")  # a label, not an internal value
    with pytest.raises(ValueError, match="datetime"):
        crm.modify("deals", 1, G, closedate="soon")
    with pytest.raises(LookupError, match="Unable to infer object type from: tickets"):
        crm.changes("tickets", 0, 1)


def test_a_window_over_two_million_generated_contacts_is_exactly_its_id_range(sandbox, crm):
    crm.set_population("contacts", 2_000_000)
    timeline = crm.timeline("contacts")
    first, last = 1_234_567, 1_234_666
    window = [
        f("lastmodifieddate", "GTE", str(timeline.at(first))),
        f("lastmodifieddate", "LT", str(timeline.at(last + 1))),
    ]
    rows = _table(sandbox, publicCrmSearchRequest={"filters": window})
    assert [int(r[0]) for r in rows[1:]] == list(range(first, last + 1))
    assert [r[1] for r in rows[1:3]] == [f"user{first}@example.com", f"user{first + 1}@example.com"]
    assert [r[3] for r in rows[1:]] == [iso(timeline.at(i)) for i in range(first, last + 1)]
    expected = crm.changes("contacts", timeline.at(first), timeline.at(last + 1))
    assert list(expected) == list(range(first, last + 1))
    task_id = list(sandbox.exports)[-1]
    described = requests.get(f"{sandbox.api_url}{EXPORTS}/{task_id}", headers=AUTH, timeout=30).json()
    assert described["recordCount"] == 100


# -- the file ----------------------------------------------------------------------------------------
def test_names_or_labels_in_the_header_and_values_or_labels_in_enumerations(sandbox, crm):
    props = ["hs_object_id", "lastmodifieddate", "email", "lifecyclestage"]
    labels = _table(sandbox, objectProperties=props, exportInternalValuesOptions=[])
    names = _table(sandbox, objectProperties=props, exportInternalValuesOptions=["NAMES"])
    values = _table(sandbox, objectProperties=props, exportInternalValuesOptions=["VALUES"])
    assert labels[0] == ["Record ID", "Last Modified Date", "Email", "Lifecycle Stage"] == values[0]
    assert names[0] == props
    stage_labels = {"lead": "Lead", "customer": "Customer", "opportunity": "Opportunity", "other": "Other"}
    for shown, internal in zip(labels[1:], values[1:], strict=True):
        assert shown[:3] == internal[:3] and shown[3] == stage_labels.get(internal[3], shown[3])
        assert internal[3].islower() and not shown[3].islower()
    without = {k: v for k, v in CONTACTS.items() if k != "exportInternalValuesOptions"}
    sandbox.plan_next(pending_polls=0, processing_polls=0)
    task_id = _start(sandbox, {**without, "objectProperties": props}).json()["id"]
    assert _download(sandbox, task_id).startswith(b"Record ID,Last Modified Date,Email,Lifecycle Stage\r\n")


def test_associated_object_columns_follow_the_properties(sandbox, crm):
    rows = _table(
        sandbox, objectProperties=["hs_object_id"], associatedObjectType=["COMPANY", "DEAL", "2-4242001"]
    )
    assert rows[0] == [
        "hs_object_id",
        "Associated Company IDs",
        "Associated Deal IDs",
        "Associated Vehicle IDs",
    ]
    assert all(c and all(part.isdigit() for part in c.split(";")) for r in rows[1:] for c in r[1:])
    assert any(";" in r[1] for r in rows[1:])  # several associated ids in one cell
    again = _table(sandbox, objectProperties=["hs_object_id", "email"], associatedObjectType=["COMPANY"])
    assert [r[2] for r in again[1:]] == [r[1] for r in rows[1:]]  # a function of the record


def test_options_are_recorded_as_given(sandbox, crm):
    flags = {
        "includeLabeledAssociations": True,
        "overrideAssociatedObjectsPerDefinitionPerRowLimit": False,
        "includePrimaryDisplayPropertyForAssociatedObjects": True,
    }
    assert len(_table(sandbox, **flags)) == 31
    assert {
        k: v for k, v in sandbox.exports[list(sandbox.exports)[-1]].request.items() if k in flags
    } == flags


def test_a_list_export_holds_every_visible_record(sandbox, crm):
    crm.archive("contacts", 2, G)
    search = {"filters": [f("hs_object_id", "EQ", "1")]}  # a LIST export's members are the list's
    ids = _ids(sandbox, exportType="LIST", listId="77", publicCrmSearchRequest=search)
    assert ids == [i for i in ALL if i != 2]


def test_changed_records_through_xlsx_and_split_files(sandbox, crm):
    import openpyxl

    crm.modify("contacts", 15, G + 1, firstname="Fifteen")
    created = crm.create("contacts", G + 2, firstname="New")
    sandbox.plan_next(pending_polls=0, processing_polls=0)
    task_id = _start(sandbox, {**CONTACTS, "format": "XLSX"}).json()["id"]
    book = openpyxl.load_workbook(io.BytesIO(_download(sandbox, task_id)))
    rows = [[str(c) if c is not None else "" for c in r] for r in book.active.iter_rows(values_only=True)]
    assert [r[0] for r in rows[1:]] == [str(i) for i in [*ALL, created]]
    assert rows[15][2] == "Fifteen" and rows[31][2] == "New"
    whole = _table(sandbox)
    sandbox.packaging = Packaging(zip_over_bytes=10, rows_per_file=7)  # files of 7 rows, zipped
    sandbox.plan_next(pending_polls=0, processing_polls=0)
    task_id = _start(sandbox, CONTACTS).json()["id"]
    with zipfile.ZipFile(io.BytesIO(_download(sandbox, task_id))) as zf:
        names = sorted(zf.namelist(), key=lambda n: int(n.rsplit("-", 1)[1].split(".")[0]))
        parts = [list(csv.reader(io.StringIO(zf.read(n).decode(), newline=""))) for n in names]
    assert len(parts) == 5 and all(p[0] == whole[0] for p in parts)
    assert [r for p in parts for r in p[1:]] == whole[1:]
    assert whole[15][2] == "Fifteen" and whole[31][:3] == [str(created), "", "New"]


# -- object types -------------------------------------------------------------------------------------
def test_a_custom_object_is_exported_by_its_type_id_only(sandbox, crm):
    crm.set_population("vehicles", 12)
    body = {
        **CONTACTS,
        "objectType": "2-4242001",
        "objectProperties": ["hs_object_id", "vehicle_name", "model_year"],
    }
    rows = _table(sandbox, body)
    assert rows[0] == ["hs_object_id", "vehicle_name", "model_year"] and len(rows) == 13
    assert rows[1][1] == "Vehicle 1" and all(1990 <= int(r[2]) <= 2026 for r in rows[1:])
    window = [f("hs_lastmodifieddate", "GTE", str(G - 5 * DAY))]
    assert [int(r[0]) for r in _table(sandbox, body, publicCrmSearchRequest={"filters": window})[1:]] == [
        11,
        12,
    ]
    for name in ("vehicles", "p4242_vehicles", "VEHICLE"):
        error = _refused(sandbox, {**body, "objectType": name})
        assert error["category"] == "VALIDATION_ERROR" and "2-4242001" in error["message"]
        assert error["message"].startswith(f"Unable to infer object type from: {name}")


@pytest.mark.parametrize("object_type", ["COMPANY", "0-2", "company"])
def test_companies_and_deals_by_name_or_id(sandbox, crm, object_type):
    crm.set_population("companies", 10)
    rows = _table(sandbox, objectType=object_type, objectProperties=["hs_object_id", "domain", "industry"])
    assert len(rows) == 11 and rows[3][1] == "company3.example.com" and rows[3][2].isupper()
    deals = _table(
        sandbox, objectType="0-3", objectProperties=["dealname", "amount", "closedate", "createdate"]
    )
    assert len(deals) == 26 and deals[1][0] == "Deal 1"  # the standing 25 deals
    closes, created = deals[1][2], deals[1][3]
    assert closes > created  # closes a month after its last modification


def test_refusals_are_hubspots_400s_naming_the_problem(sandbox, crm):
    def message(**fields):
        error = _refused(sandbox, {**CONTACTS, **fields})
        assert error["category"] == "VALIDATION_ERROR" and error["errors"][0]["message"] == error["message"]
        return error["message"]

    assert message(objectType="TICKET") == "Unable to infer object type from: TICKET"
    assert message(objectType="contacts").startswith("Unable to infer object type from: contacts")
    assert "nope" in message(objectProperties=["email", "nope"])
    assert "nope" in message(publicCrmSearchRequest={"filters": [f("nope", "EQ", "1")]})
    assert "LIKE" in message(publicCrmSearchRequest={"filters": [f("email", "LIKE", "x")]})
    assert "highValue" in message(publicCrmSearchRequest={"filters": [f("lastmodifieddate", "BETWEEN", "1")]})
    assert "values" in message(publicCrmSearchRequest={"filters": [f("hs_object_id", "IN")]})
    assert "datetime" in message(publicCrmSearchRequest={"filters": [f("lastmodifieddate", "GT", "soon")]})
    assert "at most 4" in message(associatedObjectType=["COMPANY", "DEAL", "CONTACT", "COMPANY", "DEAL"])
    assert "TICKET" in message(associatedObjectType=["COMPANY", "TICKET"])
    assert "exportInternalValuesOptions" in message(exportInternalValuesOptions=["LABELS"])
    assert "exportInternalValuesOptions" in message(exportInternalValuesOptions="NAMES")
    assert "includeLabeledAssociations" in message(includeLabeledAssociations="yes")
    crm.archive_property("contacts", "phone")
    assert "phone" in message(objectProperties=["phone"])
    assert "phone" in message(publicCrmSearchRequest={"filters": [f("phone", "HAS_PROPERTY")]})


def test_hubspots_search_limits(sandbox, crm):
    one = f("hs_object_id", "GT", "0")

    def search(filters=(), groups=()):
        return {
            "publicCrmSearchRequest": {
                "filters": list(filters),
                "filterGroups": [{"filters": g} for g in groups],
            }
        }

    error = _refused(sandbox, {**CONTACTS, **search(groups=[[one]] * 6)})
    assert "filter groups" in error["message"] and error["errors"][0]["code"] == "TOO_MANY_FILTER_GROUPS"
    error = _refused(sandbox, {**CONTACTS, **search(groups=[[one] * 7])})
    assert "filterGroups[0]" in error["message"] and error["errors"][0]["code"] == "TOO_MANY_FILTERS_IN_GROUP"
    error = _refused(sandbox, {**CONTACTS, **search(filters=[one], groups=[[one] * 6] * 3)})
    assert "19" in error["message"] and error["errors"][0]["code"] == "TOO_MANY_FILTERS"
    # Up to the limits: accepted.
    assert len(_table(sandbox, **search(groups=[[one] * 6] * 3))) == 31
    assert len(_table(sandbox, **search(groups=[[one] * 3] * 5, filters=[one] * 3))) == 31


# -- the properties and schemas APIs ------------------------------------------------------------------
def _get(sandbox, path, token=SECRET_TOKEN, **params):
    return requests.get(
        f"{sandbox.api_url}{path}", params=params, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


def test_properties_of_each_object_type_in_hubspots_shape(sandbox, crm):
    answer = _get(sandbox, "/crm/v3/properties/contacts")
    assert answer.status_code == 200
    props = {p["name"]: p for p in answer.json()["results"]}
    assert {"hs_object_id", "email", "firstname", "lastname", "lifecyclestage", "createdate"} <= set(props)
    assert "lastmodifieddate" in props and props["hs_object_id"]["label"] == "Record ID"
    stage = props["lifecyclestage"]
    assert (
        stage["type"] == "enumeration"
        and {"label": "Lead", "value": "lead"}.items() <= stage["options"][1].items()
    )
    assert props["createdate"]["type"] == "datetime" and props["email"]["type"] == "string"
    keys = {
        "name",
        "label",
        "type",
        "fieldType",
        "groupName",
        "description",
        "hidden",
        "archived",
        "calculated",
    }
    assert all(
        keys | {"hasUniqueValue", "displayOrder", "options", "createdAt", "updatedAt"} <= set(p)
        for p in props.values()
    )
    assert not any(p["archived"] for p in props.values())
    for spelling in ("0-1", "CONTACT", "contact"):
        assert [p["name"] for p in _get(sandbox, f"/crm/v3/properties/{spelling}").json()["results"]] == list(
            props
        )
    vehicles = [p["name"] for p in _get(sandbox, "/crm/v3/properties/p4242_vehicles").json()["results"]]
    assert vehicles == [p["name"] for p in _get(sandbox, "/crm/v3/properties/2-4242001").json()["results"]]
    assert {"vehicle_name", "make", "model_year", "hs_lastmodifieddate"} <= set(vehicles)
    deals = {p["name"]: p["type"] for p in _get(sandbox, "/crm/properties/2026-03/deals").json()["results"]}
    assert (
        deals["amount"] == "number"
        and deals["closedate"] == "datetime"
        and deals["dealstage"] == "enumeration"
    )
    assert "hs_lastmodifieddate" in deals
    assert len(sandbox.api_requests("/properties/")) == 7  # recorded


def test_a_property_added_later_and_an_archived_one(sandbox, crm):
    crm.clock_ms = lambda: G + 42
    crm.add_property("companies", "favorite_color", label="Favorite color")
    crm.archive_property("companies", "city")
    live = {p["name"]: p for p in _get(sandbox, "/crm/v3/properties/companies").json()["results"]}
    assert "favorite_color" in live and "city" not in live
    assert live["favorite_color"]["label"] == "Favorite color" and live["favorite_color"]["createdAt"] == iso(
        G + 42
    )
    archived = _get(sandbox, "/crm/v3/properties/companies", archived="true").json()["results"]
    assert [(p["name"], p["archived"]) for p in archived] == [("city", True)]
    assert [
        p["name"] for p in _get(sandbox, "/crm/v3/properties/companies", archived="false").json()["results"]
    ] == list(live)
    rows = _table(sandbox, objectType="COMPANY", objectProperties=["hs_object_id", "favorite_color"])
    assert len(rows) == 26 and {r[1] for r in rows[1:]} == {""}


def test_unknown_object_types_and_missing_scopes(sandbox, crm):
    answer = _get(sandbox, "/crm/v3/properties/bikes")
    assert answer.status_code == 400
    body = answer.json()
    assert (
        body["category"] == "VALIDATION_ERROR"
        and body["message"] == "Unable to infer object type from: bikes"
    )
    sandbox.add_token("export-only")  # crm.export only, as add_token gives by default
    denied = _get(sandbox, "/crm/v3/properties/contacts", token="export-only")
    assert denied.status_code == 403 and denied.json()["category"] == "MISSING_SCOPES"
    assert "crm.schemas.contacts.read" in denied.json()["errors"][0]["context"]["requiredGranularScopes"]
    assert _get(sandbox, "/crm/v3/schemas", token="export-only").status_code == 403
    sandbox.add_token("contacts-reader", scopes=("crm.objects.contacts.read",))
    assert _get(sandbox, "/crm/v3/properties/contacts", token="contacts-reader").status_code == 200
    assert _get(sandbox, "/crm/v3/properties/deals", token="contacts-reader").status_code == 403
    assert _start(sandbox, CONTACTS, headers={"Authorization": "Bearer contacts-reader"}).status_code == 403
    assert _get(sandbox, "/crm/v3/properties/contacts", token="nope").status_code == 401


def test_schemas_lists_the_custom_object(sandbox, crm):
    (schema,) = _get(sandbox, "/crm/v3/schemas").json()["results"]
    assert schema["name"] == "vehicles" and schema["objectTypeId"] == "2-4242001"
    assert schema["fullyQualifiedName"] == "p4242_vehicles"
    assert schema["labels"] == {"singular": "Vehicle", "plural": "Vehicles"}
    assert schema["primaryDisplayProperty"] == "vehicle_name" and schema["archived"] is False
    assert {"vehicle_name", "make", "model_year"} <= {p["name"] for p in schema["properties"]}
    for key in (
        "id",
        "requiredProperties",
        "searchableProperties",
        "secondaryDisplayProperties",
        "associations",
    ):
        assert key in schema
    sandbox.portal_id = 777
    assert _get(sandbox, "/crm/schemas/2026-03").json()["results"][0]["fullyQualifiedName"] == "p777_vehicles"
    sandbox.portal_id = None
    assert _get(sandbox, "/crm/v3/schemas").json()["results"][0]["fullyQualifiedName"] == "p4242_vehicles"
