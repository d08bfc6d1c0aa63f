"""Which HubSpot endpoint answers a method and path, in which API version, and the scopes it takes.

Every API funnelsync uses is served under its numbered ("legacy") path and under each date
version, each version's paths as its API description has them. The v2 workflow API and the v4
workflow id mappings have no date-versioned equivalent and are served as they are.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote

from . import account_api, automation_api, contacts_api, events_api, lists_api, properties_api, search_api
from .calls import Answer, ApiCall
from .store import SandboxStore
from .versions import LEGACY, V2026_03, V2026_09

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
ACCOUNT = "oauth"
EVENT_DEFINITIONS = "behavioral_events.event_definitions.read_write"
EVENTS_SEND = "analytics.behavioral_events.send"

ALL_SCOPES = frozenset({CONTACTS_READ, CONTACTS_WRITE, SCHEMAS_READ, SCHEMAS_WRITE, LISTS_READ,
                        LISTS_WRITE, AUTOMATION, SEQUENCES_READ, SEQUENCES_WRITE, ACCOUNT,
                        EVENT_DEFINITIONS, EVENTS_SEND})
# the properties API reads with any of these (its `security` lists them as alternatives)
PROPERTIES_READ = (SCHEMAS_READ, CONTACTS_READ, CONTACTS_WRITE)


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    scopes: tuple[str, ...]  # any one of them grants the call
    handler: Handler
    version: str


@dataclass(frozen=True)
class ApiPaths:
    """Where one API version serves each API."""

    version: str
    contacts: str
    properties: str
    lists: str
    sequences: str
    account: str
    events: str  # custom events: `{events}/event-definitions`, `{events}/send`


PATHS = (
    ApiPaths(LEGACY, "/crm/v3/objects/contacts", "/crm/v3/properties/contacts", "/crm/v3/lists",
             "/automation/v4/sequences", "/account-info/v3", "/events/v3"),
    ApiPaths(V2026_03, "/crm/objects/2026-03/contacts", "/crm/properties/2026-03/contacts",
             "/crm/lists/2026-03", "/automation/sequences/2026-03", "/account-info/2026-03", "/events/2026-03"),
    # 2026-09 moved custom events under /events/custom
    ApiPaths(V2026_09, "/crm/objects/2026-09/contacts", "/crm/properties/2026-09/contacts",
             "/crm/lists/2026-09", "/automation/sequences/2026-09", "/account-info/2026-09",
             "/events/custom/2026-09"),
)

WORKFLOWS = "/automation/v2/workflows"


def _route(method: str, path: str, scopes: str | tuple[str, ...], handler: Handler,
           version: str = LEGACY) -> Route:
    regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path)
    granted_by = (scopes,) if isinstance(scopes, str) else scopes
    return Route(method, re.compile(f"^{regex}$"), granted_by, handler, version)


def _routes_of(paths: ApiPaths) -> tuple[Route, ...]:
    """One version's routes; the first match wins, so fixed paths come before the `{name}`
    paths they would also match."""
    v, props, contacts, lists = paths.version, paths.properties, paths.contacts, paths.lists
    seqs, definitions = paths.sequences, f"{paths.events}/event-definitions"
    return (
        _route("POST", f"{props}/groups", SCHEMAS_WRITE, properties_api.create_group, v),
        _route("GET", f"{props}/groups", PROPERTIES_READ, properties_api.list_groups, v),
        _route("GET", f"{props}/groups/{{group_name}}", PROPERTIES_READ, properties_api.get_group, v),
        _route("GET", props, PROPERTIES_READ, properties_api.list_properties, v),
        _route("POST", props, SCHEMAS_WRITE, properties_api.create_property, v),
        _route("GET", f"{props}/{{property_name}}", PROPERTIES_READ, properties_api.get_property, v),
        _route("PATCH", f"{props}/{{property_name}}", SCHEMAS_WRITE, properties_api.update_property, v),
        _route("POST", f"{contacts}/batch/upsert", CONTACTS_WRITE, contacts_api.batch_upsert, v),
        _route("POST", f"{contacts}/batch/read", CONTACTS_READ, contacts_api.batch_read, v),
        _route("POST", f"{contacts}/search", CONTACTS_READ, search_api.search, v),
        _route("GET", contacts, CONTACTS_READ, contacts_api.list_contacts, v),
        _route("GET", f"{contacts}/{{contact_id}}", CONTACTS_READ, contacts_api.get_contact, v),
        _route("POST", lists, LISTS_WRITE, lists_api.create_list, v),
        _route("GET", f"{lists}/object-type-id/{{object_type_id}}/name/{{list_name}}", LISTS_READ,
               lists_api.get_list_by_name, v),
        _route("GET", f"{lists}/{{list_id}}", LISTS_READ, lists_api.get_list, v),
        _route("PUT", f"{lists}/{{list_id}}/memberships/add", LISTS_WRITE, lists_api.add_members, v),
        _route("PUT", f"{lists}/{{list_id}}/memberships/remove", LISTS_WRITE, lists_api.remove_members, v),
        _route("PUT", f"{lists}/{{list_id}}/memberships/add-and-remove", LISTS_WRITE,
               lists_api.add_and_remove_members, v),
        _route("GET", f"{lists}/{{list_id}}/memberships", LISTS_READ, lists_api.list_members, v),
        _route("POST", f"{seqs}/enrollments", SEQUENCES_WRITE, automation_api.enroll_in_sequence, v),
        _route("GET", f"{seqs}/enrollments/contact/{{contact_id}}", SEQUENCES_READ,
               automation_api.sequence_enrollment_of_contact, v),
        _route("GET", f"{seqs}/{{sequence_id}}", SEQUENCES_READ, automation_api.get_sequence, v),
        _route("GET", f"{paths.account}/details", ACCOUNT, account_api.details, v),
        _route("GET", definitions, EVENT_DEFINITIONS, events_api.list_definitions, v),
        _route("POST", definitions, EVENT_DEFINITIONS, events_api.create_definition, v),
        _route("GET", f"{definitions}/{{event_name}}", EVENT_DEFINITIONS, events_api.get_definition, v),
        _route("POST", f"{paths.events}/send", EVENTS_SEND, events_api.send, v),
        _route("POST", f"{paths.events}/send/batch", EVENTS_SEND, events_api.send_batch, v),
    )


NUMBERED_ONLY = (
    # the generated client creates a list at `/crm/v3/lists/`, with a trailing slash
    _route("POST", "/crm/v3/lists/", LISTS_WRITE, lists_api.create_list),
    _route("POST", f"{WORKFLOWS}/{{workflow_id}}/enrollments/contacts/{{email}}", AUTOMATION,
           automation_api.enroll_in_workflow),
    _route("GET", f"{WORKFLOWS}/enrollments/contacts/{{vid}}", AUTOMATION, automation_api.workflows_of_contact),
    _route("GET", f"{WORKFLOWS}/{{workflow_id}}", AUTOMATION, automation_api.get_workflow),
    _route("POST", "/automation/v4/workflow-id-mappings/batch/read", AUTOMATION,
           automation_api.read_workflow_id_mappings),
)

ROUTES = (*NUMBERED_ONLY, *(route for paths in PATHS for route in _routes_of(paths)))


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
