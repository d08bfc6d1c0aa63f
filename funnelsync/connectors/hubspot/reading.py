"""Reading back what funnelsync wrote: contacts by email, list members, and one search that
tells whether a portal already holds funnelsync's data."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from hubspot.crm.contacts import (
    BatchReadInputSimplePublicObjectId,
    Filter,
    FilterGroup,
    PublicObjectSearchRequest,
    SimplePublicObjectId,
)

from funnelsync.connectors.crm import HeldContact, ReadingBack
from funnelsync.connectors.hubspot.client import HubSpotApi

OBJECT = "contacts"
READ_BATCH = 100
SEARCH_FILTER_GROUPS = 5  # HubSpot's most a search takes; the groups are ORed
MEMBERSHIP_PAGE = 250


def _chunks(items: Sequence[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


class ContactReader(ReadingBack):
    def __init__(self, api: HubSpotApi) -> None:
        self.api = api
        contacts = api.client.crm.contacts
        self.search_api = contacts.search_api
        self.batch_api = contacts.batch_api
        self.properties_api = api.client.crm.properties.core_api
        self.memberships_api = api.client.crm.lists.memberships_api

    def contacts_holding(self, names: Sequence[str]) -> int:
        # A filter on a property the portal does not have is not a question HubSpot answers
        # with "none": ask only about the ones that exist (none on a true first sync).
        existing = self._existing_properties()
        asked = [name for name in names if name in existing]
        for group in _chunks(asked, SEARCH_FILTER_GROUPS):
            request = PublicObjectSearchRequest(
                filter_groups=[FilterGroup(filters=[Filter(property_name=name, operator="HAS_PROPERTY")])
                               for name in group],
                properties=["email"], limit=1,
            )
            data, _ = self.api.call("searching contacts", self.search_api.do_search_with_http_info, request)
            if data.total:
                return int(data.total)
        return 0

    def read_contacts(self, emails: Sequence[str], properties: Sequence[str]) -> list[HeldContact]:
        wanted = list(dict.fromkeys(["email", *properties]))
        held: list[HeldContact] = []
        for chunk in _chunks(emails, READ_BATCH):
            request = BatchReadInputSimplePublicObjectId(
                id_property="email", inputs=[SimplePublicObjectId(id=email) for email in chunk],
                properties=wanted, properties_with_history=[],
            )
            data, _ = self.api.call("reading contacts", self.batch_api.read_with_http_info, request)
            held += [_held(result) for result in data.results or []]
        return held

    def list_members(self, list_id: str) -> set[str]:
        members: set[str] = set()
        after: str | None = None
        while True:
            page: dict[str, Any] = {"after": after} if after else {}
            data, _ = self.api.call(f"reading the members of list {list_id}",
                                    self.memberships_api.get_page_with_http_info, list_id,
                                    limit=MEMBERSHIP_PAGE, **page)
            members.update(str(member.record_id) for member in data.results or [])
            following = data.paging.next if data.paging else None
            if following is None or not following.after:
                return members
            after = str(following.after)

    def _existing_properties(self) -> set[str]:
        data, _ = self.api.call("reading contact properties", self.properties_api.get_all_with_http_info, OBJECT)
        return {prop.name for prop in data.results}


def _held(result: Any) -> HeldContact:
    properties = {name: str(value) for name, value in (result.properties or {}).items() if value not in (None, "")}
    return HeldContact(properties.get("email", "").strip().lower(), str(result.id), properties)
