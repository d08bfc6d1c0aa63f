"""Reading back what funnelsync wrote: contacts by email, list members, and one search that
tells whether a portal already holds funnelsync's data."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from funnelsync.connectors.crm import HeldContact, ReadingBack
from funnelsync.connectors.hubspot.client import HubSpotApi

READ_BATCH = 100
SEARCH_FILTER_GROUPS = 5  # HubSpot's most a search takes; the groups are ORed
MEMBERSHIP_PAGE = 250


def _chunks(items: Sequence[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


class ContactReader(ReadingBack):
    def __init__(self, api: HubSpotApi) -> None:
        self.api = api

    def contacts_holding(self, names: Sequence[str]) -> int:
        # A filter on a property the portal does not have is not a question HubSpot answers
        # with "none": ask only about the ones that exist (none on a true first sync).
        existing = self._existing_properties()
        asked = [name for name in names if name in existing]
        for group in _chunks(asked, SEARCH_FILTER_GROUPS):
            request = {"filterGroups": [{"filters": [{"propertyName": name, "operator": "HAS_PROPERTY"}]}
                                        for name in group],
                       "properties": ["email"], "limit": 1}
            data, _ = self.api.request("searching contacts", "POST", f"{self.api.paths.contacts}/search",
                                       json=request)
            if data.get("total"):
                return int(data["total"])
        return 0

    def read_contacts(self, emails: Sequence[str], properties: Sequence[str]) -> list[HeldContact]:
        wanted = list(dict.fromkeys(["email", *properties]))
        held: list[HeldContact] = []
        for chunk in _chunks(emails, READ_BATCH):
            request = {"idProperty": "email", "inputs": [{"id": email} for email in chunk],
                       "properties": wanted, "propertiesWithHistory": []}
            data, _ = self.api.request("reading contacts", "POST", f"{self.api.paths.contacts}/batch/read",
                                       json=request)
            held += [_held(result) for result in data.get("results") or []]
        return held

    def list_members(self, list_id: str) -> set[str]:
        members: set[str] = set()
        page: dict[str, str | int] = {"limit": MEMBERSHIP_PAGE}
        while True:
            data, _ = self.api.request(f"reading the members of list {list_id}", "GET",
                                       f"{self.api.paths.lists}/{list_id}/memberships", params=page)
            members.update(str(member["recordId"]) for member in data.get("results") or [])
            after = ((data.get("paging") or {}).get("next") or {}).get("after")
            if not after:
                return members
            page = {"limit": MEMBERSHIP_PAGE, "after": str(after)}

    def _existing_properties(self) -> set[str]:
        data, _ = self.api.request("reading contact properties", "GET", self.api.paths.properties)
        return {str(prop["name"]) for prop in data.get("results") or []}


def _held(result: dict[str, Any]) -> HeldContact:
    properties = {name: str(value) for name, value in (result.get("properties") or {}).items()
                  if value not in (None, "")}
    return HeldContact(properties.get("email", "").strip().lower(), str(result["id"]), properties)
