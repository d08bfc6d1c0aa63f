"""The interface of a CRM connector, by role: make sure properties exist, write contacts and
say per row what happened, enroll, read back. The sync talks to these, never to HubSpot directly."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from funnelsync.mappings.schema import PropertySpec


@dataclass(frozen=True)
class ContactWrite:
    email: str
    properties: dict[str, str]


@dataclass(frozen=True)
class WriteResult:
    email: str
    ok: bool
    record_id: str | None = None
    reason: str = ""
    code: str = ""


@dataclass
class SchemaReport:
    created: list[str] = field(default_factory=list)
    options_added: dict[str, list[str]] = field(default_factory=dict)
    unchanged: list[str] = field(default_factory=list)


class PropertyProvisioning(ABC):
    """What a sync (and `validate`) needs before any contact is written."""

    @abstractmethod
    def ensure_properties(self, specs: Sequence[PropertySpec], *, dry_run: bool = False) -> SchemaReport:
        """Create the property group and every missing property; add missing enumeration
        options (never remove one). A property that exists with another type is a ConfigError."""

    @abstractmethod
    def check_access(self) -> None:
        """Prove the token works and has the scopes needed (CredentialsError otherwise)."""


class ContactWriting(ABC):
    """What the sync engine needs to write contacts."""

    @abstractmethod
    def write_contacts(self, writes: Sequence[ContactWrite]) -> list[WriteResult]:
        """Upsert by email; one result per write, matched by identity, never by position."""

    @property
    @abstractmethod
    def calls_made(self) -> int:
        """HTTP requests the connector sent so far, for every role, retries included."""


class Enrollment(ABC):
    """What the enrollment runner needs: lists, workflows and sequences, and the reads that
    settle an enrollment of unknown outcome."""

    @abstractmethod
    def find_or_create_list(self, name: str, *, create: bool = True) -> str | None:
        """The id of the static contact list with this name (case-insensitive), created when
        missing and `create`; None when missing and not `create`."""

    @abstractmethod
    def change_list(self, list_id: str, record_ids: Sequence[str], *, add: bool) -> None:
        """Add or remove contacts (by record id); already a member / not a member is fine."""

    contacts_per_list_change: int = 1  # how many contacts one list-membership request takes

    @abstractmethod
    def check_workflow(self, workflow_id: int) -> None:
        """Raise EnrollmentTargetError when the workflow does not exist or may not be used."""

    @abstractmethod
    def enroll_in_workflow(self, workflow_id: int, email: str) -> None: ...

    @abstractmethod
    def workflows_of(self, record_id: str) -> set[int]:
        """The workflows the contact is enrolled in now (to check an enrollment of unknown outcome)."""

    @abstractmethod
    def check_sequence(self, sequence_id: str, user_id: str) -> None: ...

    @abstractmethod
    def enroll_in_sequence(self, sequence_id: str, record_id: str, sender_email: str, user_id: str) -> None: ...

    @abstractmethod
    def sequence_of(self, record_id: str) -> str | None:
        """The sequence the contact is enrolled in now, if any."""

    @abstractmethod
    def check_event(self, name: str) -> bool:
        """Whether the custom event is defined (False: it will be defined on the first send);
        EnrollmentTargetError when the portal or the token may not use custom events."""

    @abstractmethod
    def send_event(self, name: str, email: str, uuid: str, occurred_at: datetime) -> None:
        """Send one occurrence of the custom event for the contact, defining the event when
        missing. The CRM keeps the first occurrence with a `uuid` and drops repeats."""


class ReadingBack(ABC):
    """What the lost-state check before a sync and `state rebuild` read back (a rebuild also
    reads lists and enrollments through `Enrollment`)."""

    @abstractmethod
    def contacts_holding(self, names: Sequence[str]) -> int:
        """How many contacts hold a value for any of these properties (at least; 0 when none
        of them exists in the portal). One cheap look, not a count to rely on: the CRM's
        search index lags recent writes."""

    @abstractmethod
    def read_contacts(self, emails: Sequence[str], properties: Sequence[str]) -> list[HeldContact]:
        """These contacts as the CRM holds them, by email; one not in the CRM is left out."""

    @abstractmethod
    def list_members(self, list_id: str) -> set[str]:
        """The record ids of every member of a static list."""


class Crm(Protocol):
    """A CRM connector: one object per role; each part of a sync takes the role it needs."""

    @property
    def properties(self) -> PropertyProvisioning: ...

    @property
    def contacts(self) -> ContactWriting: ...

    @property
    def enrollment(self) -> Enrollment: ...

    @property
    def reading(self) -> ReadingBack: ...

    def requests_wanted_in_flight(self) -> int:
        """How many requests the sync should keep in flight at once now (within the CRM's rate budget)."""
        ...


@dataclass(frozen=True)
class HeldContact:
    """A contact as the CRM holds it: only the properties asked for that have a value."""

    email: str
    record_id: str
    properties: dict[str, str]
