"""The interface of a CRM connector: make sure properties exist, write contacts, say per row
what happened. The sync engine talks to this, never to HubSpot directly."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

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


class Crm(ABC):
    @abstractmethod
    def ensure_properties(self, specs: Sequence[PropertySpec], *, dry_run: bool = False) -> SchemaReport:
        """Create the property group and every missing property; add missing enumeration
        options (never remove one). A property that exists with another type is a ConfigError."""

    @abstractmethod
    def write_contacts(self, writes: Sequence[ContactWrite]) -> list[WriteResult]:
        """Upsert by email; one result per write, matched by identity, never by position."""

    @abstractmethod
    def check_access(self) -> None:
        """Prove the token works and has the scopes needed (CredentialsError otherwise)."""

    @property
    @abstractmethod
    def calls_made(self) -> int:
        """HTTP requests sent so far, retries included."""
