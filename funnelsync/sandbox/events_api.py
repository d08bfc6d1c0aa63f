"""Custom behavioural events: event definitions, and occurrences sent one at a time or in a batch.

A definition is made under an internal `name`; occurrences name it by its fully qualified name,
`pe{portalId}_{name}`. An occurrence's `uuid` is its identity: HubSpot accepts the first occurrence
with a uuid within a year and rejects the others. Sending is asynchronous at HubSpot (a 204 says
the occurrence was received, not processed), and nothing published says a repeat is answered
differently, so the sandbox answers a repeat 204 too and keeps only the first (the repeat is
noted among the dropped occurrences). The client has models for occurrences only: definitions
are checked here by hand, against the fields HubSpot's API description requires.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any

from .calls import Answer, ApiCall
from .errors import HubSpotError, conflict, error_detail, not_found, validation_error
from .schema import EVENTS
from .store import CONTACT_OBJECT_TYPE, EventDefinition, SandboxStore, now, property_record
from .values import ValueProblem, is_valid_email, iso_millis, parse_moment, stored_value, wire_string

DEFINITION_REQUIRED = ("label", "includeDefaultProperties", "propertyDefinitions")
OPTION_REQUIRED = ("label", "value", "displayOrder", "hidden")
OCCURRENCE_REQUIRED = ("eventName", "properties")
FIELD_TYPES = {"string": "text", "number": "number", "enumeration": "select", "datetime": "date"}
PRIMARY_OBJECT = "CONTACT"
# HubSpot's documented limits for custom event properties
INTERNAL_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
MAX_NAME_LENGTH = 50
MAX_PROPERTIES_PER_OCCURRENCE = 50
# with includeDefaultProperties HubSpot adds its own `hs_` properties (page, browser, UTM ...)
DEFAULT_PROPERTY_PREFIX = "hs_"
DEFAULT_PAGE_SIZE = 10
MAX_PAGE_SIZE = 100


# definitions

def list_definitions(call: ApiCall, store: SandboxStore) -> Answer:
    limit = call.page_size(DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    start = call.cursor()
    wanted = (call.query_one("searchString") or "").casefold()
    found = [d for d in store.all_event_definitions()
             if wanted in d.name.casefold() or wanted in d.label.casefold()]
    if (call.query_one("sortOrder") or "ASC").upper() == "DESC":
        found.reverse()
    with_properties = (call.query_one("includeProperties") or "").lower() == "true"
    body: dict[str, Any] = {
        "results": [_public_definition(d, store, with_properties) for d in found[start:start + limit]],
        "total": len(found),
    }
    if start + limit < len(found):
        body["paging"] = {"next": {"after": str(start + limit)}}
    return Answer(200, body)


def get_definition(call: ApiCall, store: SandboxStore) -> Answer:
    return Answer(200, _public_definition(_existing(call, store), store, with_properties=True))


def create_definition(call: ApiCall, store: SandboxStore) -> Answer:
    fields = _definition_fields(call.json())
    name = fields.get("name") or _internal_name(fields["label"])
    _check_internal_name("name", name)
    if store.event_definition(name) is not None:
        raise conflict(f"An event definition named '{name}' already exists.")
    properties = [_property(item, name) for item in fields["propertyDefinitions"]]
    duplicates = sorted({p["name"] for p in properties if [q["name"] for q in properties].count(p["name"]) > 1})
    if duplicates:
        raise validation_error(f"Duplicate property names: {duplicates}",
                               [error_detail("Duplicate property names", "DUPLICATE_PROPERTY", name=duplicates)])
    definition = store.add_event_definition(
        name, fields["label"], description=str(fields.get("description") or ""), properties=properties,
        include_default_properties=fields["includeDefaultProperties"])
    return Answer(201, _public_definition(definition, store, with_properties=True))


def _definition_fields(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise validation_error("Invalid input JSON: expected an object")
    unset = [name for name in DEFINITION_REQUIRED if body.get(name) is None]
    if unset:
        raise _unset(unset)
    if not isinstance(body["label"], str) or not body["label"].strip():
        raise validation_error("label must be a non-empty string")
    if not isinstance(body["includeDefaultProperties"], bool):
        raise validation_error("includeDefaultProperties must be true or false")
    if not isinstance(body["propertyDefinitions"], list):
        raise validation_error("propertyDefinitions must be an array")
    primary = body.get("primaryObject") or PRIMARY_OBJECT
    if primary != PRIMARY_OBJECT:
        raise validation_error(f"The sandbox keeps contact events only (primaryObject {PRIMARY_OBJECT}), "
                               f"not {primary}.")
    if body.get("customMatchingId") is not None:
        raise validation_error("The sandbox does not match events by customMatchingId; send email or objectId.")
    return body


def _property(item: Any, event_name: str) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise validation_error("Invalid input JSON: each of propertyDefinitions is an object")
    unset = [name for name in ("label", "type") if not item.get(name)]
    if unset:
        raise _unset([f"propertyDefinitions[].{name}" for name in unset])
    if item["type"] not in FIELD_TYPES:
        raise validation_error(f"Property type {item['type']} is not one of {', '.join(FIELD_TYPES)}.",
                               [error_detail("invalid property type", "INVALID_PROPERTY_TYPE",
                                             type=[str(item["type"])])])
    name = item.get("name") or _internal_name(item["label"])
    _check_internal_name("propertyDefinitions[].name", name)
    options = item.get("options") or []
    for option in options:
        missing = [key for key in OPTION_REQUIRED if not isinstance(option, dict) or option.get(key) is None]
        if missing:
            raise _unset([f"options[].{key}" for key in missing])
    if item["type"] == "enumeration" and not options:
        raise validation_error("Enumeration properties must have at least one option.",
                               [error_detail("Enumeration properties must have at least one option.",
                                             "MISSING_OPTIONS", propertyName=[name])])
    fields = {"name": name, "label": item["label"], "type": item["type"], "fieldType": FIELD_TYPES[item["type"]],
              "description": item.get("description") or "", "groupName": event_name, "options": options}
    return property_record(fields, now())


def _internal_name(label: str) -> str:
    """The internal name HubSpot makes from a label when none is given."""
    name = re.sub(r"[^a-z0-9]+", "_", label.strip().lower()).strip("_")
    return name if name[:1].isalpha() else f"event_{name}"


def _check_internal_name(field: str, name: Any) -> None:
    if not isinstance(name, str) or not INTERNAL_NAME.match(name) or len(name) > MAX_NAME_LENGTH:
        message = (f"{field} {name!r} must start with a letter and hold only lowercase letters a-z, "
                   f"numbers 0-9 and underscores, at most {MAX_NAME_LENGTH} characters")
        raise validation_error(message, [error_detail(message, "INVALID_NAME", name=[str(name)])])


def _existing(call: ApiCall, store: SandboxStore) -> EventDefinition:
    name = call.params["event_name"]
    definition = store.event_definition(name)
    if definition is None:
        raise not_found(f"Event definition {name} does not exist.", context={"eventName": [name]})
    return definition


def _public_definition(definition: EventDefinition, store: SandboxStore, with_properties: bool) -> dict[str, Any]:
    return {
        "id": definition.id,
        "name": definition.name,
        "fullyQualifiedName": store.fully_qualified_name(definition.name),
        "labels": {"singular": definition.label},
        "description": definition.description,
        "primaryObject": PRIMARY_OBJECT,
        "objectTypeId": CONTACT_OBJECT_TYPE,
        "properties": list(definition.properties) if with_properties else [],
        "associations": [],
        "archived": False,
        "createdAt": iso_millis(definition.created_at),
        "updatedAt": iso_millis(definition.updated_at),
    }


# occurrences

def send(call: ApiCall, store: SandboxStore) -> Answer:
    occurrence = _occurrence(EVENTS.read("BehavioralEventHttpCompletionRequest", _incoming(call.json())), store)
    store.record_event_occurrence(*occurrence)
    return Answer(204)


def send_batch(call: ApiCall, store: SandboxStore) -> Answer:
    body = call.json()
    if isinstance(body, dict) and isinstance(body.get("inputs"), list):
        body = {**body, "inputs": [_incoming(item) for item in body["inputs"]]}
    request = EVENTS.read("BatchedBehavioralEventHttpCompletionRequest", body)
    # every occurrence is checked before any is kept: one bad input refuses the batch
    occurrences = [_occurrence(item, store) for item in request["inputs"]]
    for occurrence in occurrences:
        store.record_event_occurrence(*occurrence)
    return Answer(204)


def _incoming(item: Any) -> Any:
    """An occurrence with its required fields, property values as the strings HubSpot reads (the
    model would make `True` into "True")."""
    if not isinstance(item, dict):
        raise validation_error("Invalid input JSON: an occurrence is an object")
    unset = [name for name in OCCURRENCE_REQUIRED if item.get(name) is None]
    if unset:
        raise _unset(unset)
    if not isinstance(item["properties"], dict):
        raise validation_error("Invalid input JSON: properties is an object of names and values")
    try:
        return {**item, "properties": {k: wire_string(v) for k, v in item["properties"].items()}}
    except TypeError as exc:
        raise validation_error(f"Invalid input JSON: {exc}") from exc


def _occurrence(item: dict[str, Any], store: SandboxStore) -> tuple[dict[str, Any], datetime]:
    event_name = item["eventName"]
    definition = store.event_definition_named(event_name)
    if definition is None:
        message = (f"Event {event_name} is not defined in this portal: eventName is an event definition's "
                   f"fullyQualifiedName, pe{store.portal_id}_<name>")
        raise validation_error(message, [error_detail(message, "INVALID_EVENT_NAME", eventName=[event_name])])
    email, object_id = item.get("email"), item.get("objectId")
    if email is None and object_id is None:
        message = ("The sandbox associates an occurrence with a contact by email or objectId"
                   + (", not utk" if item.get("utk") else "; neither was sent"))
        raise validation_error(message, [error_detail(message, "MISSING_IDENTIFIER")])
    if email is not None and not is_valid_email(email.strip()):
        raise validation_error(f"Email address {email} is invalid",
                               [error_detail(f"Email address {email} is invalid", "INVALID_EMAIL", email=[email])])
    occurred_at = now() if item.get("occurredAt") is None else parse_moment(str(item["occurredAt"]))
    if occurred_at is None:
        raise validation_error(f"occurredAt {item['occurredAt']} is not an ISO 8601 date-time or epoch milliseconds")
    contact = (store.contact_by_email(email) if email is not None
               else store.contact_by_id(str(object_id).strip()))
    occurrence = {
        "eventName": event_name,
        "email": email.strip().lower() if email is not None else None,
        "objectId": object_id,
        "contactId": contact.id if contact is not None else None,
        "uuid": item.get("uuid") or str(uuid.uuid4()),  # HubSpot makes one when none is sent
        "occurredAt": iso_millis(occurred_at),
        "properties": _property_values(item["properties"], definition),
    }
    return occurrence, occurred_at


def _property_values(sent: dict[str, str | None], definition: EventDefinition) -> dict[str, str]:
    if len(sent) > MAX_PROPERTIES_PER_OCCURRENCE:
        raise validation_error(f"An occurrence carries at most {MAX_PROPERTIES_PER_OCCURRENCE} properties, "
                               f"not {len(sent)}.")
    defined = {prop["name"]: prop for prop in definition.properties}
    values, problems = {}, []
    for name, value in sent.items():
        text = "" if value is None else value
        prop = defined.get(name)
        if prop is None:
            if definition.include_default_properties and name.startswith(DEFAULT_PROPERTY_PREFIX):
                values[name] = text
            else:
                problems.append(ValueProblem("PROPERTY_DOESNT_EXIST",
                                             f'Property "{name}" does not exist on event {definition.name}',
                                             name, text))
            continue
        try:
            values[name] = stored_value(prop, text)
        except ValueProblem as problem:
            problems.append(problem)
    if problems:
        raise _invalid_properties(problems)
    return values


def _invalid_properties(problems: list[ValueProblem]) -> HubSpotError:
    return validation_error("; ".join(p.message for p in problems),
                            [error_detail(p.message, p.code, propertyName=[p.property_name]) for p in problems])


def _unset(names: list[str]) -> HubSpotError:
    return validation_error(f"Some required fields were not set: [{', '.join(names)}]",
                            [error_detail("This property is required", "REQUIRED_FIELD",
                                         **{name: ["This property is required"] for name in names})])
