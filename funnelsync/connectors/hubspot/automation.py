"""Lists, workflows, sequences and custom events: how a contact is put where its stage or segment says.

Every call goes through `HubSpotApi.request` on the configured API version's paths. The legacy v2
workflow enrollment has no date-versioned equivalent and is called as it is until HubSpot ends it.
A custom event occurrence carries a `uuid` derived from the enrollment: HubSpot accepts the first
occurrence with a uuid and drops every repeat, so resending one whose answer was lost is harmless.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

import structlog

from funnelsync.connectors.crm import Enrollment
from funnelsync.connectors.hubspot.client import HubSpotApi
from funnelsync.errors import CredentialsError, EnrollmentTargetError, OutcomeUnknown

log = structlog.get_logger("funnelsync.hubspot")
CONTACT_OBJECT = "0-1"
MEMBERSHIP_CHUNK = 250
LIST_CREATION_ATTEMPTS = 3  # each a look-up, then the creation if the list is still missing


class Automation(Enrollment):
    contacts_per_list_change = MEMBERSHIP_CHUNK

    def __init__(self, api: HubSpotApi) -> None:
        self.api = api
        self.paths = api.paths
        self._event_names: dict[str, str] = {}  # internal name -> fully qualified name (pe{portal}_{name})
        self._defining = threading.Lock()  # enrollments go out from several threads: define an event once

    # -- lists ----------------------------------------------------------------------------------

    def find_or_create_list(self, name: str, *, create: bool = True) -> str | None:
        """The list's id; made if missing. Making one is not idempotent (HubSpot refuses a second
        list of the name): after a lost answer the list is looked up before it is made again."""
        for _ in range(LIST_CREATION_ATTEMPTS):
            data, status = self.api.request(
                f"finding list {name!r}", "GET",
                f"{self.paths.lists}/object-type-id/{CONTACT_OBJECT}/name/{quote(name, safe='')}", allow=(404,))
            if status != 404:
                return str(data["list"]["listId"])
            if not create:
                return None
            body = {"name": name, "objectTypeId": CONTACT_OBJECT, "processingType": "MANUAL"}
            try:
                data, _ = self.api.request(f"creating list {name!r}", "POST", self.paths.lists, json=body,
                                           idempotent=False)
            except OutcomeUnknown as lost:
                log.warning("list creation's answer lost: looking it up before making it again", list=name,
                            reason=str(lost))
                continue
            return str(data["list"]["listId"])
        raise OutcomeUnknown(f"HubSpot's answers to creating list {name!r} were lost {LIST_CREATION_ATTEMPTS} times")

    def change_list(self, list_id: str, record_ids: Sequence[str], *, add: bool) -> None:
        path = f"{self.paths.lists}/{list_id}/memberships/{'add' if add else 'remove'}"
        for start in range(0, len(record_ids), MEMBERSHIP_CHUNK):
            chunk = list(record_ids[start : start + MEMBERSHIP_CHUNK])
            self.api.request(f"{'adding to' if add else 'removing from'} list {list_id}", "PUT", path, json=chunk)

    # -- workflows (legacy v2, in every API version) ---------------------------------------------

    def check_workflow(self, workflow_id: int) -> None:
        self._target(f"workflow {workflow_id}", "GET", f"{self.paths.workflows}/{workflow_id}")

    def enroll_in_workflow(self, workflow_id: int, email: str) -> None:
        path = f"{self.paths.workflows}/{workflow_id}/enrollments/contacts/{quote(email, safe='@')}"
        self._target(f"workflow {workflow_id}", "POST", path, idempotent=False)

    def workflows_of(self, record_id: str) -> set[int]:
        body, _ = self.api.request("reading a contact's workflows", "GET",
                                   f"{self.paths.workflows}/enrollments/contacts/{record_id}")
        items = body if isinstance(body, list) else [body] if isinstance(body, dict) and body else []
        return {int(item["id"]) for item in items if isinstance(item, dict) and str(item.get("id", "")).isdigit()}

    # -- sequences -------------------------------------------------------------------------------

    def check_sequence(self, sequence_id: str, user_id: str) -> None:
        self._target(f"sequence {sequence_id}", "GET", f"{self.paths.sequences}/{sequence_id}",
                     params={"userId": user_id})

    def enroll_in_sequence(self, sequence_id: str, record_id: str, sender_email: str, user_id: str) -> None:
        self._target(f"sequence {sequence_id}", "POST", f"{self.paths.sequences}/enrollments",
                     params={"userId": user_id}, idempotent=False,
                     json={"contactId": record_id, "sequenceId": sequence_id, "senderEmail": sender_email})

    def sequence_of(self, record_id: str) -> str | None:
        body, _ = self.api.request("reading a contact's sequence", "GET",
                                   f"{self.paths.sequences}/enrollments/contact/{record_id}", allow=(404,))
        return str(body["sequenceId"]) if isinstance(body, dict) and body.get("sequenceId") else None

    # -- custom behavioural events ---------------------------------------------------------------

    def check_event(self, name: str) -> bool:
        return self._event_definition(name, create=False) is not None

    def send_event(self, name: str, email: str, uuid: str, occurred_at: datetime) -> None:
        event_name = self._event_definition(name, create=True)
        assert event_name is not None
        body = {"eventName": event_name, "email": email, "uuid": uuid,
                "occurredAt": occurred_at.isoformat().replace("+00:00", "Z"), "properties": {}}
        self._target(f"event {name}", "POST", f"{self.paths.events}/send", json=body)

    def _event_definition(self, name: str, *, create: bool) -> str | None:
        """The event's fully qualified name, its definition created when missing and `create`."""
        with self._defining:
            if name not in self._event_names:
                body = self._read_event(name)
                if body is None and not create:
                    return None
                self._event_names[name] = str((body or self._define_event(name))["fullyQualifiedName"])
            return self._event_names[name]

    def _read_event(self, name: str) -> Any:
        path = f"{self.paths.events}/event-definitions/{quote(name, safe='')}"
        return self._target(f"event {name}", "GET", path, missing_ok=True)

    def _define_event(self, name: str) -> Any:
        definition = {"name": name, "label": f"funnelsync: {name}", "primaryObject": "CONTACT",
                      "includeDefaultProperties": False, "propertyDefinitions": [],
                      "description": "Sent by funnelsync once per entry into a funnel stage or segment."}
        try:
            body, status = self.api.request(f"defining event {name}", "POST",
                                            f"{self.paths.events}/event-definitions", json=definition, allow=(409,))
        except CredentialsError as exc:
            raise EnrollmentTargetError(f"event {name}: {exc}") from None
        if status == 409:  # defined meanwhile, by another funnelsync or a person
            return self._read_event(name)
        log.info("custom event defined", custom_event=name)
        return body

    def _target(self, target: str, method: str, path: str, *, missing_ok: bool = False, **kwargs: Any) -> Any:
        """A call whose 404 or 403 means the target itself cannot be used (or, `missing_ok`, a 404 is None)."""
        try:
            body, status = self.api.request(f"{method} {target}", method, path, allow=(404,), **kwargs)
        except CredentialsError as exc:
            raise EnrollmentTargetError(f"{target}: {exc}") from None
        if status == 404 and missing_ok:
            return None
        if status == 404:
            raise EnrollmentTargetError(f"{target} does not exist in this portal (HubSpot answered 404)")
        return body
