"""A source row -> the contact HubSpot should hold: email, property values, measured stage."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from funnelsync.config import Config, PropertyMapping
from funnelsync.mappings.funnel import stage_for
from funnelsync.mappings.values import ValueProblem, to_hubspot, to_number

# What HubSpot accepts as an email, close enough to refuse before sending what it would refuse.
_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$")


def normalize_email(raw: Any) -> str | None:
    """Trimmed and lower-cased, or None when it is not an email HubSpot would take."""
    if not isinstance(raw, str):
        return None
    email = raw.strip().lower()
    if len(email) > 254 or not _EMAIL.match(email) or ".." in email:
        return None
    return email


@dataclass(frozen=True)
class DesiredContact:
    email: str
    properties: dict[str, str]
    stage: str | None = None  # the stage the metric says, before the stage policy


@dataclass(frozen=True)
class RejectedRow:
    email: str
    reason: str
    code: str = "INVALID_VALUE"
    properties: dict[str, str] = field(default_factory=dict)


def _property_value(row: Mapping[str, Any], prop: PropertyMapping) -> str:
    try:
        return to_hubspot(row.get(prop.column), prop)
    except ValueProblem as problem:
        raise ValueProblem(f"column {prop.column!r} -> property {prop.name!r}: {problem}") from None


def map_row(row: Mapping[str, Any], email: str, config: Config) -> DesiredContact | RejectedRow:
    properties: dict[str, str] = {}
    problems: list[str] = []
    for prop in config.properties:
        try:
            properties[prop.name] = _property_value(row, prop)
        except ValueProblem as problem:
            problems.append(str(problem))
    stage = None
    if config.funnel:
        try:
            stage = stage_for(to_number(row.get(config.funnel.metric)), config.funnel)
        except ValueProblem as problem:
            problems.append(f"funnel metric column {config.funnel.metric!r}: {problem}")
    if problems:
        return RejectedRow(email, "; ".join(problems), properties=properties)
    return DesiredContact(email, properties, stage)
