"""A source row -> the contact HubSpot should hold: email, property values, measured stage."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import idna

from funnelsync.config import Config
from funnelsync.mappings.funnel import stage_for
from funnelsync.mappings.segments import compile_segments, segment_properties, segments_of
from funnelsync.mappings.values import CLEARED, ValueProblem, converter, parse_timestamp, to_number

# What HubSpot accepts as an email, close enough to refuse before sending what it would refuse.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_EMAIL = re.compile(rf"^[A-Za-z0-9.!#$%&'*+/=?^_`{{|}}~-]+@{_LABEL}(?:\.{_LABEL})+$")


def normalize_email(raw: Any) -> str | None:
    """Trimmed and lower-cased, with an internationalised domain in its ASCII form, or None when
    it is not an email HubSpot would take."""
    if not isinstance(raw, str):
        return None
    local, at, domain = raw.strip().lower().rpartition("@")
    ascii_domain = _ascii_domain(domain) if at else None
    if ascii_domain is None:
        return None
    email = f"{local}@{ascii_domain}"
    if len(email) > 254 or not _EMAIL.match(email) or ".." in email:
        return None
    return email


def _ascii_domain(domain: str) -> str | None:
    """The domain as DNS and HubSpot know it (`bücher.example` -> `xn--bcher-kva.example`), or
    None when it has no such form. IDNA 2008 with UTS 46 mapping, as browsers and registries use:
    Python's own `idna` codec is IDNA 2003, which makes `straße.de` into another domain."""
    if domain.isascii():
        return domain
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except UnicodeError:  # idna.IDNAError, and the codec's own
        return None


@dataclass(frozen=True)
class DesiredContact:
    email: str
    properties: dict[str, str]
    stage: str | None = None  # the stage the metric says, before the stage policy
    segments: frozenset[str] = frozenset()
    signup_at: datetime | None = None


@dataclass(frozen=True)
class RejectedRow:
    email: str
    reason: str
    code: str = "INVALID_VALUE"
    properties: dict[str, str] = field(default_factory=dict)


class ContactMapper:
    """Maps one run's rows: the config's properties, the measured stage, the segments."""

    def __init__(self, config: Config, columns: Collection[str], now: datetime) -> None:
        self.config = config
        self.now = now
        self.segments = compile_segments(config, columns)
        self.converters = [(prop.name, prop.column, converter(prop)) for prop in config.properties]

    def map(self, row: Mapping[str, Any], email: str) -> DesiredContact | RejectedRow:
        properties: dict[str, str] = {}
        problems: list[str] = []
        for name, column, convert in self.converters:
            value = row.get(column)
            try:
                properties[name] = CLEARED if value is None else convert(value)
            except ValueProblem as problem:
                problems.append(f"column {column!r} -> property {name!r}: {problem}")
        stage, signup = None, None
        funnel = self.config.funnel
        if funnel:
            try:
                stage = stage_for(to_number(row.get(funnel.metric)), funnel)
            except ValueProblem as problem:
                problems.append(f"funnel metric column {funnel.metric!r}: {problem}")
            signup = self._signup(row, problems)
        if problems:
            return RejectedRow(email, "; ".join(problems), properties=properties)
        members = segments_of(row, self.segments, self.now)
        properties.update(segment_properties(self.segments, members))
        return DesiredContact(email, properties, stage, members, signup)

    def _signup(self, row: Mapping[str, Any], problems: list[str]) -> datetime | None:
        column = self.config.funnel.signup_column if self.config.funnel else None
        if not column or row.get(column) in (None, ""):
            return None
        try:
            return parse_timestamp(row[column])
        except ValueProblem as problem:
            problems.append(f"funnel signup column {column!r}: {problem}")
            return None
