"""What the sandbox was sent: a thread-safe in-memory HubSpot portal.

Handlers hold `store.lock` for a whole call, so a batch is validated and written atomically;
the views (`contacts_by_email()`, `lists()` ...) return plain copies tests can assert on.
"""

from __future__ import annotations

import copy
import itertools
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from .limits import prefix_pattern
from .validation_rules import ValidationRule
from .values import iso_millis
from .versions import api_version

CONTACT_OBJECT_TYPE = "0-1"
DEFAULT_PORTAL_ID = 4242
SHUFFLE_SEED = 20240607
READ_ONLY_PATH_SUFFIXES = ("/batch/read", "/search")
# "when multiple events have the same ID within a year, the first will be accepted"
EVENT_UUID_WINDOW = timedelta(days=365)

BUILT_IN_GROUP: dict[str, Any] = {"name": "contactinformation", "label": "Contact information",
                  "displayOrder": -1, "archived": False}
# name, label, type, fieldType, description, value set by HubSpot itself
BUILT_IN_PROPERTIES = (
    ("email", "Email", "string", "text", "A contact's email address", False),
    ("firstname", "First Name", "string", "text", "A contact's first name", False),
    ("lastname", "Last Name", "string", "text", "A contact's last name", False),
    ("hs_object_id", "Record ID", "number", "number", "The unique ID for this record.", True),
    ("createdate", "Create Date", "datetime", "date", "The date that a contact entered the system",
     True),
    ("lastmodifieddate", "Last Modified Date", "datetime", "date",
     "Most recent timestamp of any property update for a contact.", True),
)


def now() -> datetime:
    return datetime.now(UTC)


def property_record(fields: dict[str, Any], at: datetime, *, hubspot_defined: bool = False,
                    read_only_value: bool = False) -> dict[str, Any]:
    """A contact property with every field HubSpot returns (defaults where none was sent)."""
    return {
        "name": fields["name"],
        "label": fields["label"],
        "type": fields["type"],
        "fieldType": fields["fieldType"],
        "description": fields.get("description") or "",
        "groupName": fields["groupName"],
        "options": [_option(option, index)
                    for index, option in enumerate(fields.get("options") or [])],
        "displayOrder": fields.get("displayOrder", -1),
        "calculated": False,
        "externalOptions": bool(fields.get("externalOptions", False)),
        "hasUniqueValue": bool(fields.get("hasUniqueValue", False)),
        "hidden": bool(fields.get("hidden", False)),
        "hubspotDefined": hubspot_defined,
        "formField": bool(fields.get("formField", False)),
        "archived": False,
        "createdAt": iso_millis(at),
        "updatedAt": iso_millis(at),
        "modificationMetadata": {"archivable": not hubspot_defined,
                                 "readOnlyDefinition": hubspot_defined,
                                 "readOnlyValue": read_only_value},
    }


def _option(option: dict[str, Any], index: int) -> dict[str, Any]:
    return {"label": option["label"], "value": option["value"],
            "displayOrder": option.get("displayOrder", index),
            "hidden": bool(option.get("hidden", False)),
            "description": option.get("description") or ""}


@dataclass
class Contact:
    id: str
    properties: dict[str, str]
    created_at: datetime
    updated_at: datetime

    @property
    def email(self) -> str:
        return self.properties.get("email", "")


@dataclass
class StaticList:
    list_id: str
    name: str
    processing_type: str
    created_at: datetime
    updated_at: datetime
    members: dict[str, datetime] = field(default_factory=dict)  # record id -> when it joined
    version: int = 1


@dataclass
class Workflow:
    id: int
    name: str
    flow_id: int
    inserted_at: datetime


@dataclass
class Sequence:
    id: str
    user_id: str
    name: str
    created_at: datetime


@dataclass
class EventDefinition:
    """A custom behavioural event; its occurrences name it by `pe{portalId}_{name}`."""

    id: str
    name: str
    label: str
    description: str
    properties: list[dict[str, Any]]  # each a property record, as the properties API shows one
    include_default_properties: bool
    created_at: datetime
    updated_at: datetime


class SandboxStore:
    def __init__(self, portal_id: int = DEFAULT_PORTAL_ID) -> None:
        self.lock = threading.RLock()
        self.portal_id = portal_id  # the portal's Hub ID: kept across a reset, like the token
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self._groups: dict[str, dict[str, Any]] = {BUILT_IN_GROUP["name"]: dict(BUILT_IN_GROUP)}
            self._properties: dict[str, dict[str, Any]] = self._built_in_properties()
            self._contacts: dict[str, Contact] = {}
            self._contacts_by_id: dict[str, Contact] = {}  # list memberships look up thousands at once
            self._contact_ids = itertools.count(1001)
            self._lists: dict[str, StaticList] = {}
            self._list_ids = itertools.count(1)
            self._workflows: dict[int, Workflow] = {}
            self._flow_ids = itertools.count(500_000_001)
            self._workflow_enrollments: list[tuple[int, str, float]] = []
            self._sequences: dict[str, Sequence] = {}
            self._sequence_enrollments: list[dict[str, Any]] = []
            self._sequence_enrollment_ids = itertools.count(9001)
            self._event_definitions: dict[str, EventDefinition] = {}
            self._event_definition_ids = itertools.count(10_000_001)
            self._event_occurrences: list[dict[str, Any]] = []
            self._dropped_event_occurrences: list[dict[str, Any]] = []
            self._event_moments: dict[tuple[str, str], list[datetime]] = {}
            self._validation_rules: list[ValidationRule] = []
            self._request_log: list[dict[str, Any]] = []
            self._rng = random.Random(SHUFFLE_SEED)

    @staticmethod
    def _built_in_properties() -> dict[str, dict[str, Any]]:
        at = datetime(2019, 8, 6, 2, 41, 8, tzinfo=UTC)
        properties = {}
        for name, label, type_, field_type, description, read_only in BUILT_IN_PROPERTIES:
            fields = {"name": name, "label": label, "type": type_, "fieldType": field_type,
                      "description": description, "groupName": BUILT_IN_GROUP["name"]}
            properties[name] = property_record(fields, at, hubspot_defined=True,
                                               read_only_value=read_only)
        return properties

    # property groups and properties

    def group(self, name: str) -> dict[str, Any] | None:
        with self.lock:
            return copy.deepcopy(self._groups.get(name))

    def save_group(self, group: dict[str, Any]) -> None:
        with self.lock:
            self._groups[group["name"]] = copy.deepcopy(group)

    def groups(self) -> dict[str, dict[str, Any]]:
        with self.lock:
            return copy.deepcopy(self._groups)

    def property(self, name: str) -> dict[str, Any] | None:
        with self.lock:
            return copy.deepcopy(self._properties.get(name))

    def save_property(self, prop: dict[str, Any]) -> None:
        with self.lock:
            self._properties[prop["name"]] = copy.deepcopy(prop)

    def properties(self) -> dict[str, dict[str, Any]]:
        with self.lock:
            return copy.deepcopy(self._properties)

    # contacts

    def contact_by_email(self, email: str) -> Contact | None:
        with self.lock:
            return self._contacts.get(email.strip().lower())

    def contact_by_id(self, contact_id: str) -> Contact | None:
        with self.lock:
            return self._contacts_by_id.get(contact_id)

    def all_contacts(self) -> list[Contact]:
        with self.lock:
            return sorted(self._contacts.values(), key=lambda contact: int(contact.id))

    def write_contact(self, email: str, values: dict[str, str]) -> tuple[Contact, bool]:
        """Create or update the contact with this email; True when it was created."""
        with self.lock:
            key = email.strip().lower()
            at = now()
            contact = self._contacts.get(key)
            created = contact is None
            if contact is None:
                contact = Contact(str(next(self._contact_ids)), {}, at, at)
                self._contacts[key] = contact
                self._contacts_by_id[contact.id] = contact
            contact.properties.update(values)
            contact.updated_at = at
            contact.properties.update({
                "email": key,
                "hs_object_id": contact.id,
                "createdate": iso_millis(contact.created_at),
                "lastmodifieddate": iso_millis(at),
            })
            return contact, created

    def contacts_by_email(self) -> dict[str, dict[str, Any]]:
        with self.lock:
            return {email: {"id": contact.id, "properties": dict(contact.properties)}
                    for email, contact in self._contacts.items()}

    # static lists

    def create_list(self, name: str, processing_type: str) -> StaticList:
        with self.lock:
            at = now()
            static_list = StaticList(str(next(self._list_ids)), name, processing_type, at, at)
            self._lists[static_list.list_id] = static_list
            return static_list

    def list_by_name(self, name: str) -> StaticList | None:
        with self.lock:
            wanted = name.casefold()
            return next((static_list for static_list in self._lists.values()
                         if static_list.name.casefold() == wanted), None)

    def list_by_id(self, list_id: str) -> StaticList | None:
        with self.lock:
            return self._lists.get(list_id)

    def lists(self) -> dict[str, dict[str, Any]]:
        with self.lock:
            return {lst.name: {"listId": lst.list_id, "name": lst.name, "members": set(lst.members)}
                    for lst in self._lists.values()}

    # legacy workflows

    def add_workflow(self, workflow_id: int, name: str) -> Workflow:
        with self.lock:
            workflow = Workflow(int(workflow_id), name, next(self._flow_ids), now())
            self._workflows[workflow.id] = workflow
            return workflow

    def workflow(self, workflow_id: int) -> Workflow | None:
        with self.lock:
            return self._workflows.get(workflow_id)

    def workflow_by_flow_id(self, flow_id: int) -> Workflow | None:
        with self.lock:
            return next((w for w in self._workflows.values() if w.flow_id == flow_id), None)

    def all_workflows(self) -> list[Workflow]:
        with self.lock:
            return list(self._workflows.values())

    def enroll_in_workflow(self, workflow_id: int, email: str) -> None:
        with self.lock:
            self._workflow_enrollments.append((workflow_id, email.strip().lower(), time.time()))

    def workflows_of(self, email: str) -> list[Workflow]:
        with self.lock:
            enrolled_in = dict.fromkeys(workflow_id for workflow_id, enrolled, _
                                        in self._workflow_enrollments if enrolled == email)
            return [self._workflows[workflow_id] for workflow_id in enrolled_in
                    if workflow_id in self._workflows]

    def workflow_enrollments(self) -> list[tuple[int, str, float]]:
        with self.lock:
            return list(self._workflow_enrollments)

    # sequences

    def add_sequence(self, sequence_id: str, user_id: str, name: str) -> Sequence:
        with self.lock:
            sequence = Sequence(str(sequence_id), str(user_id), name, now())
            self._sequences[sequence.id] = sequence
            return sequence

    def sequence(self, sequence_id: str) -> Sequence | None:
        with self.lock:
            return self._sequences.get(sequence_id)

    def all_sequences(self) -> list[Sequence]:
        with self.lock:
            return list(self._sequences.values())

    def enroll_in_sequence(self, sequence: Sequence, contact: Contact, sender_email: str,
                           user_id: str) -> dict[str, Any]:
        with self.lock:
            at = iso_millis(now())
            enrollment = {"id": str(next(self._sequence_enrollment_ids)),
                          "sequenceId": sequence.id, "sequenceName": sequence.name,
                          "contactId": contact.id, "toEmail": contact.email,
                          "senderEmail": sender_email, "userId": user_id,
                          "enrolledAt": at, "updatedAt": at}
            self._sequence_enrollments.append(enrollment)
            return dict(enrollment)

    def sequence_enrollment_of(self, contact_id: str) -> dict[str, Any] | None:
        with self.lock:
            found = [e for e in self._sequence_enrollments if e["contactId"] == contact_id]
            return dict(found[-1]) if found else None

    def sequence_enrollments(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(enrollment) for enrollment in self._sequence_enrollments]

    # custom behavioural events

    def fully_qualified_name(self, name: str) -> str:
        return f"pe{self.portal_id}_{name}"

    def add_event_definition(self, name: str, label: str, *, description: str = "",
                             properties: list[dict[str, Any]] | None = None,
                             include_default_properties: bool = False) -> EventDefinition:
        with self.lock:
            at = now()
            definition = EventDefinition(str(next(self._event_definition_ids)), name, label, description,
                                         copy.deepcopy(properties or []), include_default_properties, at, at)
            self._event_definitions[name] = definition
            return definition

    def event_definition(self, name: str) -> EventDefinition | None:
        with self.lock:
            return self._event_definitions.get(name)

    def event_definition_named(self, fully_qualified_name: str) -> EventDefinition | None:
        with self.lock:
            return next((d for d in self._event_definitions.values()
                         if self.fully_qualified_name(d.name) == fully_qualified_name), None)

    def all_event_definitions(self) -> list[EventDefinition]:
        with self.lock:
            return sorted(self._event_definitions.values(), key=lambda d: int(d.id))

    def record_event_occurrence(self, occurrence: dict[str, Any], occurred_at: datetime) -> bool:
        """Keep an occurrence; False when it repeats the uuid of one kept within a year, which is
        then only noted as dropped."""
        with self.lock:
            moments = self._event_moments.setdefault((occurrence["eventName"], occurrence["uuid"]), [])
            if any(abs(occurred_at - kept) < EVENT_UUID_WINDOW for kept in moments):
                self._dropped_event_occurrences.append(copy.deepcopy(occurrence))
                return False
            moments.append(occurred_at)
            self._event_occurrences.append(copy.deepcopy(occurrence))
            return True

    def event_occurrences(self) -> list[dict[str, Any]]:
        with self.lock:
            return copy.deepcopy(self._event_occurrences)

    def dropped_event_occurrences(self) -> list[dict[str, Any]]:
        with self.lock:
            return copy.deepcopy(self._dropped_event_occurrences)

    # the portal's validation rules

    def add_validation_rule(self, rule: ValidationRule) -> None:
        with self.lock:
            self._validation_rules.append(rule)

    def validation_rules(self) -> list[ValidationRule]:
        with self.lock:
            return list(self._validation_rules)

    # what was asked

    def log_request(self, method: str, path: str, status: int, *, arrived: float | None = None,
                    delay: float = 0.0, kind: str | None = None) -> None:
        """`time` (= `answered`) is when the answer was sent, `arrived` when the request came in
        (wall-clock seconds), `delay` the latency the sandbox held the answer back for."""
        answered = time.time()
        with self.lock:
            self._request_log.append({"method": method, "path": path, "status": status,
                                      "version": api_version(path), "time": answered,
                                      "arrived": answered if arrived is None else arrived,
                                      "answered": answered, "delay": delay, "kind": kind})

    def request_log(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(entry) for entry in self._request_log]

    def paths_since(self, start: int) -> list[str]:
        """The paths of the requests answered after the first `start`, cheap enough to poll."""
        with self.lock:
            return [entry["path"] for entry in self._request_log[start:]]

    def versions_used(self) -> Counter[str | None]:
        """How many API requests each version got: "2026-03", "2026-09", "legacy" (numbered
        paths), None (a path with neither)."""
        with self.lock:
            return Counter(entry["version"] for entry in self._request_log)

    def write_count(self, path_prefix: str = "") -> int:
        """Successful (2xx) writes whose path starts with `path_prefix` (POSTed reads excluded);
        `*` in the prefix stands for one path segment, as in a fault's."""
        wanted = prefix_pattern(path_prefix)
        with self.lock:
            return sum(1 for entry in self._request_log
                       if entry["method"] in ("POST", "PUT", "PATCH", "DELETE")
                       and 200 <= entry["status"] < 300
                       and wanted.match(entry["path"])
                       and not entry["path"].endswith(READ_ONLY_PATH_SUFFIXES))

    def shuffled(self, items: list[Any]) -> list[Any]:
        """`items` in another order, as HubSpot promises none; never the given one (when it can)."""
        with self.lock:
            result = list(items)
            self._rng.shuffle(result)
            if len(result) > 1 and result == list(items):
                result = result[1:] + result[:1]
            return result
