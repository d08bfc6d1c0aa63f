"""The HubSpot CRM connector, through the official `hubspot-api-client`."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from funnelsync.config import HubSpotSettings
from funnelsync.connectors.crm import ContactWrite, Crm, HeldContact, SchemaReport, WriteResult
from funnelsync.connectors.hubspot.automation import Automation
from funnelsync.connectors.hubspot.client import HubSpotApi
from funnelsync.connectors.hubspot.contacts import ContactWriter
from funnelsync.connectors.hubspot.reading import ContactReader
from funnelsync.connectors.hubspot.schema import PropertyProvisioner
from funnelsync.mappings.schema import PropertySpec


class HubSpotCrm(Crm):
    def __init__(self, settings: HubSpotSettings, token: str, **options: Any) -> None:
        """`options` go to `HubSpotApi` (budget, retry_attempts, rate_limit_wait, sleep)."""
        self.api = HubSpotApi(settings, token, **options)
        self._provisioner = PropertyProvisioner(self.api)
        self._writer = ContactWriter(self.api)
        self._automation = Automation(self.api, token)

    def ensure_properties(self, specs: Sequence[PropertySpec], *, dry_run: bool = False) -> SchemaReport:
        return self._provisioner.ensure(specs, dry_run=dry_run)

    def write_contacts(self, writes: Sequence[ContactWrite]) -> list[WriteResult]:
        return self._writer.write(writes)

    def check_access(self) -> None:
        # Reading the properties needs crm.schemas.contacts.read; a batch read of no contact
        # would be free of effects but HubSpot refuses an empty batch, so read one page of one.
        self._provisioner._existing_properties()
        contacts = self.api.client.crm.contacts.basic_api
        self.api.call("reading contacts", contacts.get_page_with_http_info, limit=1)

    def find_or_create_list(self, name: str, *, create: bool = True) -> str | None:
        return self._automation.find_or_create_list(name, create=create)

    def change_list(self, list_id: str, record_ids: Sequence[str], *, add: bool) -> None:
        self._automation.change_list(list_id, record_ids, add=add)

    def check_workflow(self, workflow_id: int) -> None:
        self._automation.check_workflow(workflow_id)

    def enroll_in_workflow(self, workflow_id: int, email: str) -> None:
        self._automation.enroll_in_workflow(workflow_id, email)

    def workflows_of(self, record_id: str) -> set[int]:
        return self._automation.workflows_of(record_id)

    def check_sequence(self, sequence_id: str, user_id: str) -> None:
        self._automation.check_sequence(sequence_id, user_id)

    def enroll_in_sequence(self, sequence_id: str, record_id: str, sender_email: str, user_id: str) -> None:
        self._automation.enroll_in_sequence(sequence_id, record_id, sender_email, user_id)

    def sequence_of(self, record_id: str) -> str | None:
        return self._automation.sequence_of(record_id)

    @property
    def calls_made(self) -> int:
        return self.api.calls

    @functools.cached_property
    def _reader(self) -> ContactReader:
        return ContactReader(self.api)

    def contacts_holding(self, names: Sequence[str]) -> int:
        return self._reader.contacts_holding(names)

    def read_contacts(self, emails: Sequence[str], properties: Sequence[str]) -> list[HeldContact]:
        return self._reader.read_contacts(emails, properties)

    def list_members(self, list_id: str) -> set[str]:
        return self._reader.list_members(list_id)


__all__ = ["HubSpotCrm"]
