"""Which HubSpot endpoint answers a method and path, and the scope it needs."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote

from . import automation_api, contacts_api, lists_api, properties_api, search_api
from .calls import Answer, ApiCall
from .store import SandboxStore

Handler = Callable[[ApiCall, SandboxStore], Answer]

CONTACTS_READ = "crm.objects.contacts.read"
CONTACTS_WRITE = "crm.objects.contacts.write"
SCHEMAS_READ = "crm.schemas.contacts.read"
SCHEMAS_WRITE = "crm.schemas.contacts.write"
LISTS_READ = "crm.lists.read"
LISTS_WRITE = "crm.lists.write"
AUTOMATION = "automation"
SEQUENCES_READ = "automation.sequences.read"
SEQUENCES_WRITE = "automation.sequences.enrollments.write"

ALL_SCOPES = frozenset({CONTACTS_READ, CONTACTS_WRITE, SCHEMAS_READ, SCHEMAS_WRITE, LISTS_READ,
                        LISTS_WRITE, AUTOMATION, SEQUENCES_READ, SEQUENCES_WRITE})


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    scope: str
    handler: Handler


def _route(method: str, path: str, scope: str, handler: Handler) -> Route:
    regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path)
    return Route(method, re.compile(f"^{regex}$"), scope, handler)


PROPERTIES = "/crm/v3/properties/contacts"
CONTACTS = "/crm/v3/objects/contacts"
LISTS = "/crm/v3/lists"
WORKFLOWS = "/automation/v2/workflows"
SEQUENCES = "/automation/v4/sequences"

# the first match wins: fixed paths come before the `{name}` paths they would also match
ROUTES = (
    _route("POST", f"{PROPERTIES}/groups", SCHEMAS_WRITE, properties_api.create_group),
    _route("GET", f"{PROPERTIES}/groups", SCHEMAS_READ, properties_api.list_groups),
    _route("GET", f"{PROPERTIES}/groups/{{group_name}}", SCHEMAS_READ, properties_api.get_group),
    _route("GET", PROPERTIES, SCHEMAS_READ, properties_api.list_properties),
    _route("POST", PROPERTIES, SCHEMAS_WRITE, properties_api.create_property),
    _route("GET", f"{PROPERTIES}/{{property_name}}", SCHEMAS_READ, properties_api.get_property),
    _route("PATCH", f"{PROPERTIES}/{{property_name}}", SCHEMAS_WRITE,
           properties_api.update_property),
    _route("POST", f"{CONTACTS}/batch/upsert", CONTACTS_WRITE, contacts_api.batch_upsert),
    _route("POST", f"{CONTACTS}/batch/read", CONTACTS_READ, contacts_api.batch_read),
    _route("POST", f"{CONTACTS}/search", CONTACTS_READ, search_api.search),
    _route("GET", CONTACTS, CONTACTS_READ, contacts_api.list_contacts),
    _route("GET", f"{CONTACTS}/{{contact_id}}", CONTACTS_READ, contacts_api.get_contact),
    _route("POST", f"{LISTS}/", LISTS_WRITE, lists_api.create_list),
    _route("POST", LISTS, LISTS_WRITE, lists_api.create_list),
    _route("GET", f"{LISTS}/object-type-id/{{object_type_id}}/name/{{list_name}}", LISTS_READ,
           lists_api.get_list_by_name),
    _route("GET", f"{LISTS}/{{list_id}}", LISTS_READ, lists_api.get_list),
    _route("PUT", f"{LISTS}/{{list_id}}/memberships/add", LISTS_WRITE, lists_api.add_members),
    _route("PUT", f"{LISTS}/{{list_id}}/memberships/remove", LISTS_WRITE,
           lists_api.remove_members),
    _route("GET", f"{LISTS}/{{list_id}}/memberships", LISTS_READ, lists_api.list_members),
    _route("POST", f"{WORKFLOWS}/{{workflow_id}}/enrollments/contacts/{{email}}", AUTOMATION,
           automation_api.enroll_in_workflow),
    _route("GET", f"{WORKFLOWS}/enrollments/contacts/{{vid}}", AUTOMATION,
           automation_api.workflows_of_contact),
    _route("GET", f"{WORKFLOWS}/{{workflow_id}}", AUTOMATION, automation_api.get_workflow),
    _route("POST", "/automation/v4/workflow-id-mappings/batch/read", AUTOMATION,
           automation_api.read_workflow_id_mappings),
    _route("POST", f"{SEQUENCES}/enrollments", SEQUENCES_WRITE,
           automation_api.enroll_in_sequence),
    _route("GET", f"{SEQUENCES}/enrollments/contact/{{contact_id}}", SEQUENCES_READ,
           automation_api.sequence_enrollment_of_contact),
    _route("GET", f"{SEQUENCES}/{{sequence_id}}", SEQUENCES_READ, automation_api.get_sequence),
)


@dataclass(frozen=True)
class Match:
    route: Route | None
    params: dict[str, str]
    path_known: bool  # some route serves this path, with another method


def find_route(method: str, path: str) -> Match:
    path_known = False
    for route in ROUTES:
        found = route.pattern.match(path)
        if found is None:
            continue
        if route.method == method:
            params = {name: unquote(value) for name, value in found.groupdict().items()}
            return Match(route, params, True)
        path_known = True
    return Match(None, {}, path_known)
