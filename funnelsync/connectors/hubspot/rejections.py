"""Which rows of a batch a HubSpot error names.

HubSpot's validation errors name the offending value and property, not the contact: a list of
`{name, propertyValue, message, error}` inside the message, and `errors[]` with a message and
`context.propertyName`. The codes are structured; the values sometimes only appear in the
message ("Email address x is invalid", "x was not one of the allowed options: [...]"), so the
value is read from there when nothing structured carries it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from funnelsync.connectors.crm import ContactWrite

_VALUE_IN_MESSAGE = (
    re.compile(r"^Email address (?P<value>.+?) is invalid"),
    re.compile(r"^(?P<value>.+?) (?:was not|is not) (?:a valid|one of)"),
)
_PROPERTY_IN_MESSAGE = re.compile(r'^Property "(?P<name>[^"]+)" does not exist')


@dataclass
class Offence:
    """What one error detail objects to."""

    message: str
    values: set[str] = field(default_factory=set)  # lower-cased
    properties: set[str] = field(default_factory=set)
    missing_properties: set[str] = field(default_factory=set)

    def names(self, write: ContactWrite) -> bool:
        checked = self.properties & set(write.properties) or set(write.properties)
        return (
            write.email.lower() in self.values
            or any(write.properties[p].lower() in self.values for p in checked if write.properties[p])
            or bool(self.missing_properties & set(write.properties))
        )


def _details(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    details = [e for e in body.get("errors") or [] if isinstance(e, Mapping)]
    message = str(body.get("message") or "")
    if "[" in message:
        try:
            embedded = json.loads(message[message.index("[") :])
        except ValueError:
            embedded = []
        details += [d for d in embedded if isinstance(d, Mapping)] if isinstance(embedded, list) else []
    return details


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        yield from (str(v) for v in value)


def _offence(detail: Mapping[str, Any]) -> Offence:
    message = str(detail.get("message") or "")
    offence = Offence(message)
    context = detail.get("context") or {}
    for key in ("propertyValue", "value"):
        offence.values.update(v.lower() for v in _strings(detail.get(key)))
    for key in ("ids", "id", "emails", "propertyValue", "value"):
        offence.values.update(v.lower() for v in _strings(context.get(key)))
    offence.properties.update(_strings(detail.get("name")))
    offence.properties.update(_strings(context.get("propertyName")))
    for pattern in _VALUE_IN_MESSAGE:
        if match := pattern.match(message):
            offence.values.add(match["value"].strip().lower())
    if match := _PROPERTY_IN_MESSAGE.match(message):
        offence.missing_properties.add(match["name"])
    return offence


def rows_named(batch: Sequence[ContactWrite], body: Mapping[str, Any]) -> dict[int, str]:
    """The rows the error names, each with the message that names it: by email, by an
    offending value of a named property, or by sending a property that does not exist."""
    offences = [_offence(detail) for detail in _details(body)]
    named: dict[int, str] = {}
    for position, write in enumerate(batch):
        for offence in offences:
            if offence.names(write):
                named[position] = offence.message
                break
    return named
