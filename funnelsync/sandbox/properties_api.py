"""CRM properties for contacts: property groups and properties, in every API version.

The shapes are v3's, except that the date versions' API descriptions require `displayOrder` on
every option sent (v3's leave it out).
"""

from __future__ import annotations

from typing import Any

from .calls import Answer, ApiCall
from .errors import conflict, error_detail, not_found, validation_error
from .schema import PROPERTIES
from .store import SandboxStore, now, property_record
from .versions import LEGACY

FIELD_TYPES_BY_TYPE = {
    "string": {"text", "textarea", "file"},
    "number": {"number", "calculation_equation"},
    "date": {"date"},
    "datetime": {"date"},
    "enumeration": {"select", "radio", "checkbox", "booleancheckbox"},
    "bool": {"booleancheckbox", "calculation_equation"},
}
# what HubSpot shows for a bool property created without options
BOOL_OPTIONS = [{"label": "Yes", "value": "true", "displayOrder": 0, "hidden": False},
                {"label": "No", "value": "false", "displayOrder": 1, "hidden": False}]


def create_group(call: ApiCall, store: SandboxStore) -> Answer:
    fields = PROPERTIES.read("PropertyGroupCreate", call.json())
    if store.group(fields["name"]) is not None:
        raise conflict(f"A property group named '{fields['name']}' already exists.")
    group = {"name": fields["name"], "label": fields["label"],
             "displayOrder": fields.get("displayOrder", -1), "archived": False}
    store.save_group(group)
    return Answer(201, PROPERTIES.answer("PropertyGroup", group))


def list_groups(call: ApiCall, store: SandboxStore) -> Answer:
    return Answer(200, PROPERTIES.answer("CollectionResponsePropertyGroupNoPaging",
                                         {"results": list(store.groups().values())}))


def get_group(call: ApiCall, store: SandboxStore) -> Answer:
    name = call.params["group_name"]
    group = store.group(name)
    if group is None:
        raise not_found(f"Unable to find property group {name} for object type contacts")
    return Answer(200, PROPERTIES.answer("PropertyGroup", group))


def list_properties(call: ApiCall, store: SandboxStore) -> Answer:
    return Answer(200, PROPERTIES.answer("CollectionResponsePropertyNoPaging",
                                         {"results": list(store.properties().values())}))


def get_property(call: ApiCall, store: SandboxStore) -> Answer:
    prop = _existing(store, call.params["property_name"])
    return Answer(200, PROPERTIES.answer("ModelProperty", prop))


def create_property(call: ApiCall, store: SandboxStore) -> Answer:
    fields = PROPERTIES.read("PropertyCreate", call.json())
    _check_options_sent(fields, call.version)
    if store.property(fields["name"]) is not None:
        raise conflict(f"Property named '{fields['name']}' already exists.")
    fields = _with_default_options(fields)
    _check_definition(fields, store)
    prop = property_record(fields, now())
    store.save_property(prop)
    return Answer(201, PROPERTIES.answer("ModelProperty", prop))


def update_property(call: ApiCall, store: SandboxStore) -> Answer:
    prop = _existing(store, call.params["property_name"])
    changes = PROPERTIES.read("PropertyUpdate", call.json())
    _check_options_sent(changes, call.version)
    merged = {**prop, **changes}
    _check_definition(merged, store)
    updated = property_record(merged, now(), hubspot_defined=prop["hubspotDefined"],
                              read_only_value=prop["modificationMetadata"]["readOnlyValue"])
    updated["createdAt"] = prop["createdAt"]
    store.save_property(updated)
    return Answer(200, PROPERTIES.answer("ModelProperty", updated))


def _existing(store: SandboxStore, name: str) -> dict[str, Any]:
    prop = store.property(name)
    if prop is None:
        raise not_found(f"Unable to find property {name} for object type contacts",
                        context={"propertyName": [name]})
    return prop


def _check_options_sent(fields: dict[str, Any], version: str) -> None:
    if version == LEGACY:
        return
    unordered = [option["value"] for option in fields.get("options") or [] if option.get("displayOrder") is None]
    if unordered:
        message = f"Some required fields were not set: [options[].displayOrder] (options {unordered})"
        raise validation_error(message, [error_detail(message, "REQUIRED_FIELD", displayOrder=unordered)])


def _with_default_options(fields: dict[str, Any]) -> dict[str, Any]:
    if fields["type"] == "bool" and not fields.get("options"):
        return {**fields, "options": BOOL_OPTIONS}
    return fields


def _check_definition(fields: dict[str, Any], store: SandboxStore) -> None:
    """HubSpot's 400s for a property that cannot exist as defined."""
    problems = []
    if store.group(fields["groupName"]) is None:
        problems.append(error_detail(f"Property group {fields['groupName']} does not exist.",
                                     "INVALID_PROPERTY_GROUP", groupName=[fields["groupName"]]))
    if fields["fieldType"] not in FIELD_TYPES_BY_TYPE[fields["type"]]:
        problems.append(error_detail(
            f"Property type {fields['type']} is not compatible with field type "
            f"{fields['fieldType']}.",
            "INVALID_FIELD_TYPE", fieldType=[fields["fieldType"]]))
    if fields["type"] == "enumeration" and not fields.get("options"):
        problems.append(error_detail("Enumeration properties must have at least one option.",
                                     "MISSING_OPTIONS", propertyName=[fields["name"]]))
    if problems:
        raise validation_error(f"Property {fields['name']} is not valid: "
                               + "; ".join(problem["message"] for problem in problems), problems)
