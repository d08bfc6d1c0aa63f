"""The sandbox speaks HubSpot's date-versioned API (2026-03, 2026-09) as well as the numbered paths,
over real HTTP: each version's paths, status codes and answer shapes as HubSpot's own API
descriptions give them, custom events, the portal's validation rules (2026-09 only), and the
API version of every request recorded."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from funnelsync.sandbox import SandboxServer

TOKEN = "sandbox-token"
VERSIONS = ("legacy", "2026-03", "2026-09")

# Each version's paths, from HubSpot's API descriptions (PublicApiSpecs/... in
# HubSpot-public-api-spec-collection): CRM/Contacts 424, CRM/Properties 145899, CRM/Lists 144891,
# Automation/Sequences 177891, Account/Account Info 144923, Events/Manage Event Definitions 138888,
# Events/Send Event Completions 669.
PATHS = {
    "legacy": {"contacts": "/crm/v3/objects/contacts", "properties": "/crm/v3/properties/contacts",
               "lists": "/crm/v3/lists", "sequences": "/automation/v4/sequences",
               "account": "/account-info/v3/details", "definitions": "/events/v3/event-definitions",
               "send": "/events/v3/send"},
    "2026-03": {"contacts": "/crm/objects/2026-03/contacts", "properties": "/crm/properties/2026-03/contacts",
                "lists": "/crm/lists/2026-03", "sequences": "/automation/sequences/2026-03",
                "account": "/account-info/2026-03/details", "definitions": "/events/2026-03/event-definitions",
                "send": "/events/2026-03/send"},
    "2026-09": {"contacts": "/crm/objects/2026-09/contacts", "properties": "/crm/properties/2026-09/contacts",
                "lists": "/crm/lists/2026-09", "sequences": "/automation/sequences/2026-09",
                "account": "/account-info/2026-09/details",
                "definitions": "/events/custom/2026-09/event-definitions", "send": "/events/custom/2026-09/send"},
}

# The `required` fields of the answer schemas, copied from those API descriptions (the same in
# every version unless noted).
BATCH_ANSWER = {"completedAt", "results", "startedAt", "status"}  # BatchResponseSimplePublic(Upsert)Object
UPSERTED_CONTACT = {"archived", "createdAt", "id", "new", "properties", "updatedAt"}  # SimplePublicUpsertObject
CONTACT = {"archived", "createdAt", "id", "properties", "updatedAt"}  # SimplePublicObject(WithAssociations)
STANDARD_ERROR = {"category", "context", "errors", "links", "message", "status"}  # StandardError
SEARCH_ANSWER = {"results", "total"}  # CollectionResponseWithTotalSimplePublicObject
CONTACT_PAGE = {"results"}  # CollectionResponseSimplePublicObjectWithAssociationsForwardPaging
PROPERTY = {"description", "fieldType", "groupName", "label", "name", "options", "type"}  # Property
PROPERTY_GROUP = {"archived", "label", "name"}  # PropertyGroup (v3 adds displayOrder)
LIST = {"listId", "listVersion", "name", "objectTypeId", "processingStatus", "processingType"}  # PublicObjectList
MEMBERSHIPS_CHANGE = {"recordIdsMissing", "recordIdsRemoved", "recordsIdsAdded"}  # MembershipsUpdateResponse
MEMBER = {"membershipTimestamp", "recordId"}  # JoinTimeAndRecordId
ENROLLED = {"enrolledAt", "id", "toEmail", "updatedAt"}  # PublicSequenceEnrollmentLiteResponse
ENROLLMENT = {"enrolledAt", "enrolledBy", "enrolledByEmail", "id", "sequenceId", "sequenceName", "toEmail",
              "updatedAt"}  # PublicSequenceEnrollmentResponse
SEQUENCE = {"createdAt", "dependencies", "id", "name", "steps", "updatedAt", "userId"}  # PublicSequenceResponse
PORTAL = {"accountType", "additionalCurrencies", "companyCurrency", "dataHostingLocation", "portalId",
          "timeZone", "uiDomain", "utcOffset", "utcOffsetMilliseconds"}  # PortalInformationResponse
EVENT_DEFINITION = {"archived", "associations", "fullyQualifiedName", "id", "labels", "name", "objectTypeId",
                    "properties"}  # ExternalBehavioralEventTypeDefinition
EVENT_DEFINITIONS = {"results", "total"}  # CollectionResponseWithTotalExternalBehavioralEventTypeDefinition
ERROR = {"category", "correlationId", "message"}  # Error

# the body HubSpot publishes for a write that breaks the portal's property validation rules
RULE_REFUSAL_KEYS = {"status", "message", "correlationId", "category"}
RULE_REFUSAL_ENTRY_KEYS = {"isValid", "message", "error", "name"}


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    with SandboxServer(token=TOKEN) as server:
        yield server


def call(sandbox: SandboxServer, method: str, path: str, **kwargs: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {TOKEN}", **kwargs.pop("headers", {})}
    return requests.request(method, sandbox.url + path, headers=headers, timeout=5, **kwargs)


def answer(sandbox: SandboxServer, method: str, path: str, status: int, required: set[str],
           **kwargs: Any) -> Any:
    """The JSON answer, after checking its status and that it carries the schema's required fields."""
    response = call(sandbox, method, path, **kwargs)
    assert response.status_code == status, response.text
    body = response.json()
    missing = required - set(body)
    assert not missing, f"{method} {path} answered without {missing}"
    return body


def upsert(sandbox: SandboxServer, version: str, rows: dict[str, dict[str, str]]) -> requests.Response:
    inputs = [{"id": email, "idProperty": "email", "properties": props} for email, props in rows.items()]
    return call(sandbox, "POST", f"{PATHS[version]['contacts']}/batch/upsert", json={"inputs": inputs})


def contact_id(sandbox: SandboxServer, email: str) -> str:
    return str(sandbox.store.contacts_by_email()[email]["id"])


def with_funnel_properties(sandbox: SandboxServer) -> None:
    call(sandbox, "POST", "/crm/v3/properties/contacts/groups", json={"name": "funnelsync", "label": "Funnelsync"})
    stage = {"name": "api_integration_stage", "label": "Stage", "type": "enumeration", "fieldType": "select",
             "groupName": "funnelsync",
             "options": [{"label": v, "value": v, "hidden": False, "displayOrder": i}
                         for i, v in enumerate(("top", "middle", "bottom"))]}
    role = {"name": "developer_role", "label": "Role", "type": "string", "fieldType": "text",
            "groupName": "funnelsync"}
    for definition in (stage, role):
        assert call(sandbox, "POST", "/crm/v3/properties/contacts", json=definition).status_code == 201


def refusal_entries(response: requests.Response) -> list[dict[str, Any]]:
    """The offending property values HubSpot lists inside the message of a rule refusal."""
    body = response.json()
    assert response.status_code == 400 and set(body) == RULE_REFUSAL_KEYS
    assert body["status"] == "error" and body["category"] == "VALIDATION_ERROR"
    prefix = "Property values were not valid: "
    assert body["message"].startswith(prefix)
    entries: list[dict[str, Any]] = json.loads(body["message"][len(prefix):])
    assert all(set(entry) == RULE_REFUSAL_ENTRY_KEYS and entry["isValid"] is False for entry in entries)
    return entries


# every route, under every version


@pytest.mark.parametrize("version", VERSIONS)
def test_property_groups_and_properties_answer_with_the_spec_shapes(sandbox: SandboxServer, version: str) -> None:
    path = PATHS[version]["properties"]
    created = answer(sandbox, "POST", f"{path}/groups", 201, PROPERTY_GROUP,
                     json={"name": "funnelsync", "label": "Funnelsync", "displayOrder": -1})
    assert created["name"] == "funnelsync"
    groups = answer(sandbox, "GET", f"{path}/groups", 200, {"results"})
    assert {"contactinformation", "funnelsync"} <= {group["name"] for group in groups["results"]}
    answer(sandbox, "GET", f"{path}/groups/funnelsync", 200, PROPERTY_GROUP)
    definition = {"name": "used_event_count", "label": "Used Event Count", "type": "number",
                  "fieldType": "number", "groupName": "funnelsync"}
    answer(sandbox, "POST", path, 201, PROPERTY, json=definition)
    assert call(sandbox, "POST", path, json=definition).status_code == 409
    listed = answer(sandbox, "GET", path, 200, {"results"})
    assert all(set(prop) >= PROPERTY for prop in listed["results"])
    assert answer(sandbox, "GET", f"{path}/used_event_count", 200, PROPERTY)["type"] == "number"
    changed = answer(sandbox, "PATCH", f"{path}/used_event_count", 200, PROPERTY, json={"label": "API calls"})
    assert changed["label"] == "API calls"
    assert answer(sandbox, "GET", f"{path}/no_such_property", 404, ERROR)["category"] == "OBJECT_NOT_FOUND"


@pytest.mark.parametrize("version", VERSIONS)
def test_contacts_are_upserted_read_searched_and_paged_in_every_version(
    sandbox: SandboxServer, version: str
) -> None:
    path = PATHS[version]["contacts"]
    inputs = [{"id": f"dev{i}@example.com", "idProperty": "email", "properties": {"firstname": f"Dev {i}"}}
              for i in range(3)]
    upserted = answer(sandbox, "POST", f"{path}/batch/upsert", 200, BATCH_ANSWER, json={"inputs": inputs})
    assert all(set(result) >= UPSERTED_CONTACT for result in upserted["results"])
    read = answer(sandbox, "POST", f"{path}/batch/read", 200, BATCH_ANSWER,
                  json={"idProperty": "email", "inputs": [{"id": "dev1@example.com"}],
                        "properties": ["firstname"], "propertiesWithHistory": []})
    assert read["results"][0]["properties"]["firstname"] == "Dev 1"
    found = answer(sandbox, "POST", f"{path}/search", 200, SEARCH_ANSWER,
                   json={"filterGroups": [{"filters": [{"propertyName": "firstname", "operator": "EQ",
                                                        "value": "Dev 2"}]}]})
    assert found["total"] == 1 and set(found["results"][0]) >= CONTACT
    page = answer(sandbox, "GET", f"{path}?limit=2", 200, CONTACT_PAGE)
    assert len(page["results"]) == 2 and page["paging"]["next"]["link"].startswith(path + "?")
    one = answer(sandbox, "GET", f"{path}/{contact_id(sandbox, 'dev0@example.com')}", 200, CONTACT)
    assert one["properties"]["email"] == "dev0@example.com"
    assert answer(sandbox, "GET", f"{path}/999999", 404, ERROR)["category"] == "OBJECT_NOT_FOUND"


@pytest.mark.parametrize(("version", "status"), [("legacy", 207), ("2026-03", 207), ("2026-09", 200)])
def test_a_batch_with_failed_rows_answers_207_before_2026_09_and_200_with_the_errors_from_then(
    sandbox: SandboxServer, version: str, status: int
) -> None:
    # 2026-09's API description answers batch upsert and read with 200 only, `errors` in the body
    sandbox.inject_fault(kind="reject_rows", emails=["bad@example.com"])
    partial = answer(sandbox, "POST", f"{PATHS[version]['contacts']}/batch/upsert", status,
                     BATCH_ANSWER | {"numErrors", "errors"},
                     json={"inputs": [{"id": e, "idProperty": "email", "properties": {}}
                                      for e in ("good@example.com", "bad@example.com")]})
    assert partial["numErrors"] == 1 and set(partial["errors"][0]) >= STANDARD_ERROR
    assert set(sandbox.store.contacts_by_email()) == {"good@example.com"}
    read = answer(sandbox, "POST", f"{PATHS[version]['contacts']}/batch/read", status,
                  BATCH_ANSWER | {"numErrors", "errors"},
                  json={"idProperty": "email", "inputs": [{"id": "good@example.com"}, {"id": "gone@example.com"}],
                        "properties": [], "propertiesWithHistory": []})
    assert read["errors"][0]["context"] == {"ids": ["gone@example.com"]}


@pytest.mark.parametrize("version", VERSIONS)
def test_static_lists_and_their_memberships_answer_with_the_spec_shapes(
    sandbox: SandboxServer, version: str
) -> None:
    path = PATHS[version]["lists"]
    upsert(sandbox, version, {"ada@example.com": {}, "bob@example.com": {}})
    ada, bob = contact_id(sandbox, "ada@example.com"), contact_id(sandbox, "bob@example.com")
    created = answer(sandbox, "POST", path, 200, {"list"},
                     json={"name": "API funnel", "objectTypeId": "0-1", "processingType": "MANUAL"})
    assert set(created["list"]) >= LIST
    list_id = created["list"]["listId"]
    by_name = answer(sandbox, "GET", f"{path}/object-type-id/0-1/name/api%20FUNNEL", 200, {"list"})
    assert by_name["list"]["listId"] == list_id
    assert set(answer(sandbox, "GET", f"{path}/{list_id}", 200, {"list"})["list"]) >= LIST
    added = answer(sandbox, "PUT", f"{path}/{list_id}/memberships/add", 200, MEMBERSHIPS_CHANGE, json=[ada, "999"])
    assert added["recordsIdsAdded"] == [ada] and added["recordIdsMissing"] == ["999"]
    swapped = answer(sandbox, "PUT", f"{path}/{list_id}/memberships/add-and-remove", 200, MEMBERSHIPS_CHANGE,
                     json={"recordIdsToAdd": [bob], "recordIdsToRemove": [ada]})
    assert (swapped["recordsIdsAdded"], swapped["recordIdsRemoved"]) == ([bob], [ada])
    members = answer(sandbox, "GET", f"{path}/{list_id}/memberships", 200, {"results"})
    assert [member["recordId"] for member in members["results"]] == [bob]
    assert all(set(member) >= MEMBER for member in members["results"])
    removed = answer(sandbox, "PUT", f"{path}/{list_id}/memberships/remove", 200, MEMBERSHIPS_CHANGE, json=[bob])
    assert removed["recordIdsRemoved"] == [bob]
    assert sandbox.store.lists()["API funnel"]["members"] == set()


def test_add_and_remove_needs_both_arrays(sandbox: SandboxServer) -> None:
    list_id = call(sandbox, "POST", "/crm/lists/2026-09",
                   json={"name": "L", "objectTypeId": "0-1", "processingType": "MANUAL"}).json()["list"]["listId"]
    refused = call(sandbox, "PUT", f"/crm/lists/2026-09/{list_id}/memberships/add-and-remove",
                   json={"recordIdsToAdd": []})
    assert refused.status_code == 400 and refused.json()["category"] == "VALIDATION_ERROR"


@pytest.mark.parametrize("version", VERSIONS)
def test_sequences_enroll_a_contact_once_and_answer_with_the_spec_shapes(
    sandbox: SandboxServer, version: str
) -> None:
    path = PATHS[version]["sequences"]
    sandbox.add_sequence("555", "42", "Onboarding")
    upsert(sandbox, version, {"ada@example.com": {}})
    ada = contact_id(sandbox, "ada@example.com")
    enrollment = {"contactId": ada, "sequenceId": "555", "senderEmail": "rep@vendor.com"}
    assert call(sandbox, "POST", f"{path}/enrollments", json=enrollment).status_code == 400  # no userId
    enrolled = answer(sandbox, "POST", f"{path}/enrollments?userId=42", 200, ENROLLED, json=enrollment)
    assert enrolled["toEmail"] == "ada@example.com"
    assert call(sandbox, "POST", f"{path}/enrollments?userId=42", json=enrollment).status_code == 400
    current = answer(sandbox, "GET", f"{path}/enrollments/contact/{ada}", 200, ENROLLMENT)
    assert current["sequenceId"] == "555"
    assert answer(sandbox, "GET", f"{path}/555?userId=42", 200, SEQUENCE)["name"] == "Onboarding"
    assert call(sandbox, "GET", f"{path}/555?userId=7").status_code == 404
    assert len(sandbox.store.sequence_enrollments()) == 1


@pytest.mark.parametrize("version", VERSIONS)
def test_the_account_details_give_the_sandbox_portal_id(sandbox: SandboxServer, version: str) -> None:
    details = answer(sandbox, "GET", PATHS[version]["account"], 200, PORTAL)
    assert details["portalId"] == 4242 and details["accountType"] == "STANDARD"


def test_the_portal_id_is_settable_and_names_the_events() -> None:
    with SandboxServer(token=TOKEN, portal_id=777) as server:
        assert call(server, "GET", "/account-info/2026-09/details").json()["portalId"] == 777
        server.portal_id = 778
        assert server.add_event_definition("signed_up", "Signed up") is not None
        definition = call(server, "GET", "/events/custom/2026-09/event-definitions/signed_up").json()
        assert definition["fullyQualifiedName"] == "pe778_signed_up"


def test_the_v2_workflow_api_is_served_only_under_its_numbered_path(sandbox: SandboxServer) -> None:
    sandbox.add_workflow(1234567, "Integrated in sandbox")
    assert call(sandbox, "GET", "/automation/v2/workflows/1234567").json()["portalId"] == 4242
    for version in ("2026-03", "2026-09"):
        unknown = call(sandbox, "GET", f"/automation/{version}/workflows/1234567")
        assert unknown.status_code == 404 and unknown.json()["category"] == "OBJECT_NOT_FOUND"


@pytest.mark.parametrize("version", ("2026-03", "2026-09"))
def test_a_dated_property_option_without_display_order_is_refused(sandbox: SandboxServer, version: str) -> None:
    # the date versions' OptionInput requires displayOrder; v3's does not
    definition = {"name": "tier", "label": "Tier", "type": "enumeration", "fieldType": "select",
                  "groupName": "contactinformation", "options": [{"label": "Gold", "value": "gold", "hidden": False}]}
    refused = call(sandbox, "POST", PATHS[version]["properties"], json=definition)
    assert refused.status_code == 400 and "displayOrder" in refused.json()["message"]
    assert call(sandbox, "POST", PATHS["legacy"]["properties"], json=definition).status_code == 201


# custom behavioural events


@pytest.mark.parametrize("version", VERSIONS)
def test_an_event_definition_is_created_read_and_listed_with_the_spec_shapes(
    sandbox: SandboxServer, version: str
) -> None:
    path = PATHS[version]["definitions"]
    egg = {"name": "entered_bottom", "label": "Entered bottom stage", "primaryObject": "CONTACT",
           "includeDefaultProperties": False,
           "propertyDefinitions": [{"name": "stage", "label": "Stage", "type": "enumeration",
                                    "options": [{"label": "Bottom", "value": "bottom", "hidden": False,
                                                 "displayOrder": 0}]}]}
    created = answer(sandbox, "POST", path, 201, EVENT_DEFINITION, json=egg)
    assert created["name"] == "entered_bottom"
    assert created["fullyQualifiedName"] == "pe4242_entered_bottom"
    assert created["objectTypeId"] == "0-1" and created["labels"]["singular"] == "Entered bottom stage"
    assert [prop["name"] for prop in created["properties"]] == ["stage"]
    assert set(created["properties"][0]) >= PROPERTY
    assert answer(sandbox, "GET", f"{path}/entered_bottom", 200, EVENT_DEFINITION)["id"] == created["id"]
    listed = answer(sandbox, "GET", f"{path}?includeProperties=true", 200, EVENT_DEFINITIONS)
    assert listed["total"] == 1 and set(listed["results"][0]) >= EVENT_DEFINITION
    assert answer(sandbox, "GET", f"{path}/no_such_event", 404, ERROR)["category"] == "OBJECT_NOT_FOUND"
    again = answer(sandbox, "POST", path, 409, ERROR, json=egg)
    assert again["category"] == "CONFLICT"


def test_an_event_definition_without_its_required_fields_is_refused(sandbox: SandboxServer) -> None:
    path = PATHS["2026-09"]["definitions"]
    refused = answer(sandbox, "POST", path, 400, ERROR, json={"label": "No properties given"})
    assert "includeDefaultProperties" in refused["message"] and "propertyDefinitions" in refused["message"]
    named_from_label = answer(sandbox, "POST", path, 201, EVENT_DEFINITION,
                              json={"label": "Signed Up!", "includeDefaultProperties": True,
                                    "propertyDefinitions": []})
    assert named_from_label["name"] == "signed_up"
    assert sandbox.store.event_definition("signed_up") is not None


@pytest.mark.parametrize("version", VERSIONS)
def test_an_occurrence_is_sent_alone_or_in_a_batch_and_kept(sandbox: SandboxServer, version: str) -> None:
    sandbox.add_event_definition("entered_middle", "Entered middle stage")
    upsert(sandbox, version, {"ada@example.com": {}})
    send = PATHS[version]["send"]
    one = call(sandbox, "POST", send, json={"eventName": "pe4242_entered_middle", "email": "Ada@example.com",
                                            "uuid": "u-1", "occurredAt": "2026-10-01T12:00:00Z", "properties": {}})
    assert one.status_code == 204 and one.content == b""
    batch = call(sandbox, "POST", f"{send}/batch", json={"inputs": [
        {"eventName": "pe4242_entered_middle", "objectId": contact_id(sandbox, "ada@example.com"), "uuid": "u-2",
         "properties": {}},
        {"eventName": "pe4242_entered_middle", "email": "bob@example.com", "properties": {}}]})
    assert batch.status_code == 204
    kept = sandbox.store.event_occurrences()
    assert [(o["uuid"], o["email"], o["contactId"]) for o in kept[:2]] == [
        ("u-1", "ada@example.com", contact_id(sandbox, "ada@example.com")),
        ("u-2", None, contact_id(sandbox, "ada@example.com"))]
    assert kept[0]["occurredAt"] == "2026-10-01T12:00:00.000Z"
    assert kept[2]["email"] == "bob@example.com" and kept[2]["contactId"] is None and kept[2]["uuid"]
    state = requests.get(sandbox.url + "/_sandbox/state", timeout=5).json()
    assert [o["uuid"] for o in state["event_occurrences"]][:2] == ["u-1", "u-2"]
    assert state["event_definitions"][0]["fullyQualifiedName"] == "pe4242_entered_middle"


def test_a_repeated_uuid_is_answered_204_and_only_the_first_occurrence_is_kept(sandbox: SandboxServer) -> None:
    sandbox.add_event_definition("entered_middle", "Entered middle stage")
    sandbox.add_event_definition("entered_bottom", "Entered bottom stage")
    send = PATHS["2026-09"]["send"]
    first = {"eventName": "pe4242_entered_middle", "email": "ada@example.com", "uuid": "entry-1",
             "properties": {}}
    assert call(sandbox, "POST", send, json=first).status_code == 204
    assert call(sandbox, "POST", send, json={**first, "email": "other@example.com"}).status_code == 204
    batch = {"inputs": [first, {**first, "eventName": "pe4242_entered_bottom"}]}
    assert call(sandbox, "POST", f"{send}/batch", json=batch).status_code == 204
    kept = [(o["eventName"], o["email"]) for o in sandbox.store.event_occurrences()]
    assert kept == [("pe4242_entered_middle", "ada@example.com"), ("pe4242_entered_bottom", "ada@example.com")]
    assert len(sandbox.store.dropped_event_occurrences()) == 2


def test_the_same_uuid_more_than_a_year_apart_is_a_new_occurrence(sandbox: SandboxServer) -> None:
    sandbox.add_event_definition("renewed", "Renewed")
    send = PATHS["2026-09"]["send"]
    for occurred_at in ("2025-01-01T00:00:00Z", "2026-06-01T00:00:00Z"):
        sent: dict[str, Any] = {"eventName": "pe4242_renewed", "email": "ada@example.com", "uuid": "yearly",
                                "occurredAt": occurred_at, "properties": {}}
        assert call(sandbox, "POST", send, json=sent).status_code == 204
    assert len(sandbox.store.event_occurrences()) == 2


@pytest.mark.parametrize(
    ("occurrence", "named"),
    [
        ({"eventName": "pe4242_no_such_event", "email": "ada@example.com", "properties": {}}, "pe4242_no_such_event"),
        ({"eventName": "entered_middle", "email": "ada@example.com", "properties": {}}, "entered_middle"),
        ({"eventName": "pe4242_entered_middle", "email": "ada@example.com"}, "properties"),
        ({"email": "ada@example.com", "properties": {}}, "eventName"),
        ({"eventName": "pe4242_entered_middle", "properties": {}}, "email or objectId"),
        ({"eventName": "pe4242_entered_middle", "email": "not-an-email", "properties": {}}, "not-an-email"),
        ({"eventName": "pe4242_entered_middle", "email": "ada@example.com", "properties": {"plan": "pro"}}, "plan"),
        ({"eventName": "pe4242_entered_middle", "email": "ada@example.com", "occurredAt": "yesterday",
          "properties": {}}, "yesterday"),
    ],
    ids=["undefined event", "internal name instead of the full one", "no properties", "no eventName",
         "no contact", "bad email", "undefined property", "bad occurredAt"],
)
def test_a_bad_occurrence_is_refused_with_hubspots_400_and_refuses_its_batch(
    sandbox: SandboxServer, occurrence: dict[str, Any], named: str
) -> None:
    sandbox.add_event_definition("entered_middle", "Entered middle stage")
    send = PATHS["2026-09"]["send"]
    refused = answer(sandbox, "POST", send, 400, ERROR, json=occurrence)
    assert refused["status"] == "error" and refused["category"] == "VALIDATION_ERROR"
    assert named in refused["message"]
    good = {"eventName": "pe4242_entered_middle", "email": "bob@example.com", "properties": {}}
    assert call(sandbox, "POST", f"{send}/batch", json={"inputs": [good, occurrence]}).status_code == 400
    assert sandbox.store.event_occurrences() == []


def test_event_paths_differ_by_version(sandbox: SandboxServer) -> None:
    sandbox.add_event_definition("entered_middle", "Entered middle stage")
    sent = {"eventName": "pe4242_entered_middle", "email": "ada@example.com", "properties": {}}
    for wrong in ("/events/custom/2026-03/send", "/events/2026-09/send", "/events/custom/v3/send",
                  "/events/2026-09/event-definitions"):
        assert call(sandbox, "POST", wrong, json=sent).status_code == 404, wrong
    assert sandbox.store.event_occurrences() == []


def test_event_definitions_can_be_seeded_over_http(sandbox: SandboxServer) -> None:
    seeded = requests.post(f"{sandbox.url}/_sandbox/event-definitions",
                           json={"name": "entered_top", "label": "Entered top"}, timeout=5)
    assert seeded.status_code == 201 and seeded.json()["fullyQualifiedName"] == "pe4242_entered_top"
    again = requests.post(f"{sandbox.url}/_sandbox/event-definitions",
                          json={"name": "entered_top", "label": "Again"}, timeout=5)
    assert again.status_code == 400


# scopes


@pytest.mark.parametrize(
    ("method", "path", "body", "scope"),
    [
        ("GET", "/events/custom/2026-09/event-definitions", None, "behavioral_events.event_definitions.read_write"),
        ("POST", "/events/2026-03/event-definitions", {"label": "x", "includeDefaultProperties": False,
                                                       "propertyDefinitions": []},
         "behavioral_events.event_definitions.read_write"),
        ("POST", "/events/custom/2026-09/send", {"eventName": "pe4242_x", "email": "a@b.com", "properties": {}},
         "analytics.behavioral_events.send"),
        ("POST", "/events/v3/send/batch", {"inputs": []}, "analytics.behavioral_events.send"),
        ("GET", "/account-info/2026-09/details", None, "oauth"),
        ("POST", "/crm/objects/2026-09/contacts/batch/upsert", {"inputs": []}, "crm.objects.contacts.write"),
        ("PUT", "/crm/lists/2026-03/1/memberships/add-and-remove",
         {"recordIdsToAdd": [], "recordIdsToRemove": []}, "crm.lists.write"),
        ("POST", "/automation/sequences/2026-09/enrollments?userId=1", {}, "automation.sequences.enrollments.write"),
    ],
)
def test_each_route_needs_its_scope_and_a_403_names_it(
    method: str, path: str, body: Any, scope: str
) -> None:
    with SandboxServer(token=TOKEN, scopes={"crm.objects.contacts.read"}) as reader:
        refused = call(reader, method, path, json=body)
        assert refused.status_code == 403, refused.text
        assert refused.json()["category"] == "MISSING_SCOPES"
        assert refused.json()["errors"][0]["context"]["requiredGranularScopes"] == [scope]
        assert reader.store.event_occurrences() == [] and reader.store.all_event_definitions() == []


def test_properties_are_readable_with_any_of_the_scopes_their_spec_lists() -> None:
    with SandboxServer(token=TOKEN, scopes={"crm.objects.contacts.read"}) as reader:
        assert call(reader, "GET", "/crm/properties/2026-09/contacts/email").status_code == 200
        refused = call(reader, "POST", "/crm/properties/2026-09/contacts/groups", json={"name": "g", "label": "G"})
        assert refused.json()["errors"][0]["context"]["requiredGranularScopes"] == ["crm.schemas.contacts.write"]
    with SandboxServer(token=TOKEN, scopes={"crm.lists.read"}) as neither:
        refused = call(neither, "GET", "/crm/properties/2026-09/contacts/email")
        assert refused.status_code == 403
        assert set(refused.json()["errors"][0]["context"]["requiredGranularScopes"]) == {
            "crm.schemas.contacts.read", "crm.objects.contacts.read", "crm.objects.contacts.write"}


# the portal's validation rules


def test_a_pattern_rule_refuses_a_2026_09_batch_whole_with_hubspots_body(sandbox: SandboxServer) -> None:
    with_funnel_properties(sandbox)
    sandbox.add_validation_rule("developer_role", pattern="[A-Za-z ]+", error="INVALID_ALPHA")
    refused = upsert(sandbox, "2026-09", {"good@example.com": {"developer_role": "Engineering"},
                                          "bad@example.com": {"developer_role": "R2-D2"}})
    [entry] = refusal_entries(refused)
    assert (entry["name"], entry["error"]) == ("developer_role", "INVALID_ALPHA")
    assert "R2-D2" in entry["message"]
    assert sandbox.store.contacts_by_email() == {}


@pytest.mark.parametrize("version", ("legacy", "2026-03"))
def test_required_rules_are_not_enforced_before_2026_09_format_rules_are(sandbox: SandboxServer, version: str) -> None:
    """HubSpot has checked API writes against format rules since July 2023; required and
    conditional rules only from the 2026-09 version."""
    with_funnel_properties(sandbox)
    sandbox.add_validation_rule("developer_role", required_when={"api_integration_stage": "bottom"})
    written = upsert(sandbox, version, {"bob@example.com": {"api_integration_stage": "bottom"}})
    assert written.status_code == 200
    assert set(sandbox.store.contacts_by_email()) == {"bob@example.com"}
    sandbox.add_validation_rule("developer_role", pattern="[A-Za-z ]+")
    refused = upsert(sandbox, version, {"ada@example.com": {"developer_role": "R2-D2"}})
    assert refused.status_code == 400 and "ada@example.com" not in sandbox.store.contacts_by_email()


def test_every_offending_value_of_every_row_is_listed_once(sandbox: SandboxServer) -> None:
    with_funnel_properties(sandbox)
    sandbox.add_validation_rule("developer_role", pattern="[A-Za-z ]+")
    sandbox.add_validation_rule("firstname", pattern="[A-Za-z]+", message="Enter only letters")
    refused = upsert(sandbox, "2026-09", {
        "ada@example.com": {"developer_role": "R2-D2", "firstname": "Ada"},
        "bob@example.com": {"developer_role": "C-3PO", "firstname": "B0b"},
        "cy@example.com": {"developer_role": "Sales"},
    })
    entries = refusal_entries(refused)
    assert [(e["name"], e["error"]) for e in entries] == [
        ("developer_role", "INVALID_FORMAT"), ("developer_role", "INVALID_FORMAT"), ("firstname", "INVALID_FORMAT")]
    assert "R2-D2" in entries[0]["message"] and "C-3PO" in entries[1]["message"]
    assert entries[2]["message"] == "Enter only letters"


def test_a_required_when_rule_looks_at_what_the_contact_would_hold(sandbox: SandboxServer) -> None:
    with_funnel_properties(sandbox)
    assert upsert(sandbox, "2026-09", {"ada@example.com": {"developer_role": "Engineering"}}).status_code == 200
    sandbox.add_validation_rule("developer_role", required_when={"api_integration_stage": "bottom"})
    # Ada holds a role already; Bob would be in the bottom stage without one
    refused = upsert(sandbox, "2026-09", {"ada@example.com": {"api_integration_stage": "bottom"},
                                          "bob@example.com": {"api_integration_stage": "bottom"}})
    [entry] = refusal_entries(refused)
    assert entry["name"] == "developer_role" and entry["error"] == "REQUIRED_PROPERTY"
    assert "api_integration_stage is bottom" in entry["message"]
    assert "bob@example.com" not in sandbox.store.contacts_by_email()
    fixed = upsert(sandbox, "2026-09", {"ada@example.com": {"api_integration_stage": "bottom"},
                                        "bob@example.com": {"api_integration_stage": "bottom",
                                                            "developer_role": "Sales"}})
    assert fixed.status_code == 200


def test_a_rule_can_be_set_over_http_and_may_hold_from_an_earlier_version(sandbox: SandboxServer) -> None:
    with_funnel_properties(sandbox)
    rule = {"property": "firstname", "pattern": "[A-Za-z]+", "since": "legacy"}
    added = requests.post(f"{sandbox.url}/_sandbox/validation-rules", json=rule, timeout=5)
    assert added.status_code == 201 and added.json()["error"] == "INVALID_FORMAT"
    refusal_entries(upsert(sandbox, "legacy", {"ada@example.com": {"firstname": "4da"}}))
    state = requests.get(f"{sandbox.url}/_sandbox/state", timeout=5).json()
    assert state["validation_rules"][0]["property"] == "firstname"
    for broken in ({"property": "firstname"}, {"property": "firstname", "pattern": "("},
                   {"property": "firstname", "pattern": "a", "since": "2025-09"}):
        assert requests.post(f"{sandbox.url}/_sandbox/validation-rules", json=broken, timeout=5).status_code == 400


# the version of every request


def test_every_request_is_logged_with_its_api_version(sandbox: SandboxServer) -> None:
    upsert(sandbox, "2026-09", {"ada@example.com": {}})
    call(sandbox, "GET", "/crm/lists/2026-03/object-type-id/0-1/name/none")
    call(sandbox, "GET", "/crm/v3/objects/contacts")
    call(sandbox, "GET", "/automation/v2/workflows/1")
    call(sandbox, "GET", "/no/version/here")
    requests.get(f"{sandbox.url}/_sandbox/state", timeout=5)  # the sandbox's own paths are not API requests
    versions = [(entry["path"], entry["version"]) for entry in sandbox.store.request_log()]
    assert versions == [
        ("/crm/objects/2026-09/contacts/batch/upsert", "2026-09"),
        ("/crm/lists/2026-03/object-type-id/0-1/name/none", "2026-03"),
        ("/crm/v3/objects/contacts", "legacy"),
        ("/automation/v2/workflows/1", "legacy"),
        ("/no/version/here", None),
    ]
    assert sandbox.store.versions_used() == {"2026-09": 1, "2026-03": 1, "legacy": 2, None: 1}


def test_a_2026_09_sync_can_be_shown_to_make_no_numbered_call(sandbox: SandboxServer) -> None:
    upsert(sandbox, "2026-09", {"ada@example.com": {}})
    call(sandbox, "GET", "/crm/properties/2026-09/contacts")
    assert set(sandbox.store.versions_used()) == {"2026-09"}
    state = requests.get(f"{sandbox.url}/_sandbox/state", timeout=5).json()
    assert state["versions_used"] == {"2026-09": 2}
    assert state["request_log"][0]["version"] == "2026-09"


# faults and counts on date-versioned paths


def test_a_fault_without_a_path_lands_on_the_upsert_of_any_version(sandbox: SandboxServer) -> None:
    for version in VERSIONS:
        sandbox.inject_fault(kind="status", status=503)
        assert upsert(sandbox, version, {"ada@example.com": {}}).status_code == 503
        assert upsert(sandbox, version, {"ada@example.com": {}}).status_code == 200
    assert sandbox.store.write_count("/crm/*/*/contacts/batch/upsert") == 3
    assert sandbox.store.write_count("/crm/objects/2026-09/contacts/batch/upsert") == 1


@pytest.mark.parametrize(
    ("path", "method", "body"),
    [
        ("/crm/objects/2026-09/contacts/batch/upsert", "POST",
         {"inputs": [{"id": "ada@example.com", "idProperty": "email", "properties": {}}]}),
        ("/automation/sequences/2026-09/enrollments", "POST",
         {"contactId": "1001", "sequenceId": "555", "senderEmail": "rep@vendor.com"}),
        ("/events/custom/2026-09/send", "POST",
         {"eventName": "pe4242_entered_middle", "email": "ada@example.com", "properties": {}}),
    ],
)
def test_faults_land_on_date_versioned_paths_and_nothing_is_applied(
    sandbox: SandboxServer, path: str, method: str, body: dict[str, Any]
) -> None:
    sandbox.add_sequence("555", "42", "Onboarding")
    sandbox.add_event_definition("entered_middle", "Entered middle stage")
    upsert(sandbox, "2026-09", {"ada@example.com": {}})
    writes = sandbox.store.write_count()
    injected = requests.post(f"{sandbox.url}/_sandbox/faults",
                             json={"method": method, "path_prefix": path, "status": 503}, timeout=5)
    assert injected.status_code == 201
    query = "?userId=42" if "sequences" in path else ""
    failed = call(sandbox, method, path + query, json=body)
    assert failed.status_code == 503 and failed.json()["status"] == "error"
    assert sandbox.store.write_count() == writes
    assert sandbox.store.event_occurrences() == [] and sandbox.store.sequence_enrollments() == []
    assert call(sandbox, method, path + query, json=body).status_code in (200, 204)
    assert sandbox.store.write_count(path) == (2 if "contacts" in path else 1)


def test_the_page_shows_event_occurrences_and_each_requests_version(sandbox: SandboxServer) -> None:
    sandbox.add_event_definition("entered_middle", "Entered middle stage")
    call(sandbox, "POST", PATHS["2026-09"]["send"],
         json={"eventName": "pe4242_entered_middle", "email": "ada@example.com", "properties": {}})
    page = requests.get(sandbox.url + "/", timeout=5)
    assert page.status_code == 200
    assert "pe4242_entered_middle" in page.text and "ada@example.com" in page.text
    assert "<td>2026-09</td>" in page.text
