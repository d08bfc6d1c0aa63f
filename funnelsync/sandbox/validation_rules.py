"""A portal's own property validation rules, which HubSpot enforces on API writes from 2026-09.

Two kinds, as an admin sets them up in a portal: a value that must match a pattern, and a
property that must have a value when other properties hold given values (always, with an empty
condition). A batch upsert with any row breaking a rule is refused whole, with the body HubSpot
publishes for property validation failures: one entry per offending property value inside the
message, and no `errors[]`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import HubSpotError, validation_error
from .versions import V2026_09, check_version

# HubSpot publishes no codes for these two kinds of rule: these are the sandbox's, settable per rule
PATTERN_CODE = "INVALID_FORMAT"
REQUIRED_CODE = "REQUIRED_PROPERTY"


@dataclass(frozen=True)
class ValidationRule:
    property_name: str
    pattern: str | None = None
    required_when: Mapping[str, str] | None = None
    message: str | None = None
    error: str | None = None
    since: str = V2026_09  # the first API version whose writes HubSpot checks against it
    _compiled: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.property_name:
            raise ValueError("a validation rule names its property")
        if (self.pattern is None) == (self.required_when is None):
            raise ValueError("a validation rule has either a pattern or required_when")
        if self.required_when is not None:
            object.__setattr__(self, "required_when", {str(k): str(v) for k, v in self.required_when.items()})
        if self.pattern is not None:
            try:
                object.__setattr__(self, "_compiled", re.compile(self.pattern))
            except re.error as exc:
                raise ValueError(f"the pattern {self.pattern!r} is not a regular expression ({exc})") from exc
        check_version(self.since)

    @property
    def code(self) -> str:
        return self.error or (PATTERN_CODE if self.pattern is not None else REQUIRED_CODE)

    def broken_by(self, written: Mapping[str, str], held: Mapping[str, str]) -> str | None:
        """The message this rule answers if a write of `written`, leaving the contact holding
        `held`, breaks it; None when it keeps it. A pattern checks only a value being written."""
        if self._compiled is not None:
            value = written.get(self.property_name, "")
            if value == "" or self._compiled.fullmatch(value):
                return None
            return self.message or (f"{value} is not a valid value for {self.property_name}: "
                                    f"it must match {self.pattern}")
        condition = self.required_when or {}
        if held.get(self.property_name, "") != "" or any(held.get(k, "") != v for k, v in condition.items()):
            return None
        when = " and ".join(f"{name} is {value}" for name, value in condition.items())
        return self.message or f"{self.property_name} is required" + (f" when {when}" if when else "")

    def as_dict(self) -> dict[str, Any]:
        return {"property": self.property_name, "pattern": self.pattern,
                "required_when": dict(self.required_when) if self.required_when is not None else None,
                "message": self.message, "error": self.code, "since": self.since}


@dataclass(frozen=True)
class BrokenRule:
    rule: ValidationRule
    message: str


def refusal(broken: list[BrokenRule]) -> HubSpotError:
    """HubSpot's 400 for the whole batch: every offending property value, as it publishes it."""
    results = [{"isValid": False, "message": b.message, "error": b.rule.code, "name": b.rule.property_name}
               for b in broken]
    return validation_error("Property values were not valid: " + json.dumps(results, separators=(",", ":")))
