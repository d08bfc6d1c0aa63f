"""Source values -> HubSpot's wire format for each property type.

HubSpot takes every property value as a string: numbers in plain notation, booleans as
"true"/"false", dates as epoch milliseconds at midnight UTC, datetimes as epoch milliseconds,
enumerations as the `value` of one of the property's options. An empty string clears a value.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol, TypeVar


class PropertyType(Protocol):
    """What a conversion needs of a property's mapping (the config's `[[properties]]`)."""

    @property
    def type(self) -> str: ...

    @property
    def options(self) -> list[str] | None: ...

_T = TypeVar("_T")

CLEARED = ""
MAX_STRING = 65_536

_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0"}


class ValueProblem(ValueError):
    """A source value that HubSpot would refuse for this property; the contact is set aside."""


def to_number(value: Any) -> Decimal | None:
    if type(value) is int:  # most usage columns: no detour through text
        return Decimal(value)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueProblem(f"{value!r} is a boolean, not a number")
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueProblem(f"{value!r} is not a number") from None
    if not number.is_finite():
        raise ValueProblem(f"{value!r} is not a finite number")
    return number


def number_text(number: Decimal | None) -> str:
    if number is None:
        return CLEARED
    if number == number.to_integral_value():
        return str(int(number))
    return format(number.normalize(), "f")


def _number(value: Any) -> str:
    if type(value) is int:
        return str(value)
    return number_text(to_number(value))


def _string(value: Any) -> str:
    text = value.isoformat() if isinstance(value, datetime | date) else str(value)
    if len(text) > MAX_STRING:
        raise ValueProblem(f"a text of {len(text)} characters is longer than HubSpot's {MAX_STRING}")
    return text


def _bool(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value).strip().lower()
    if text in _TRUE:
        return "true"
    if text in _FALSE:
        return "false"
    raise ValueProblem(f"{value!r} is not a yes/no value")


def _texts_cached(convert: Callable[[Any], _T]) -> Callable[[Any], _T]:
    """`convert`, remembering its results for texts: rows repeat the same date texts (a day's
    signups, the day of the last call), so each is parsed once."""
    cached = functools.lru_cache(maxsize=65_536)(convert)

    @functools.wraps(convert)
    def converted(value: Any) -> _T:
        return cached(value) if type(value) is str else convert(value)

    return converted


@_texts_cached
def parse_timestamp(value: Any) -> datetime:
    """A datetime, a date, or an ISO-8601 string, as an aware UTC datetime (no zone = UTC)."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime.combine(value, time.min)
    elif isinstance(value, str):
        text = value.strip()
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise ValueProblem(f"{value!r} is not an ISO-8601 date or time") from None
    else:
        raise ValueProblem(f"{value!r} is not a date or time")
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def epoch_ms(moment: datetime) -> str:
    return str(math.floor(moment.timestamp() * 1000))


@_texts_cached
def _date(value: Any) -> str:
    if value == "":
        return CLEARED
    day = parse_timestamp(value).date()
    return epoch_ms(datetime.combine(day, time.min, tzinfo=UTC))


def _datetime(value: Any) -> str:
    if value == "":
        return CLEARED
    return epoch_ms(parse_timestamp(value))


def _enumeration(options: list[str]) -> Callable[[Any], str]:
    exact = frozenset(options)
    folded = {option.casefold(): option for option in options}

    def convert(value: Any) -> str:
        text = str(value).strip()
        if text in exact:
            return text
        if text.casefold() in folded:
            return folded[text.casefold()]
        raise ValueProblem(f"{value!r} is not one of the options {options}")

    return convert


def converter(prop: PropertyType) -> Callable[[Any], str]:
    """How a source value (never None: that clears the property) becomes this property's
    string; the function raises ValueProblem for a value HubSpot would refuse."""
    match prop.type:
        case "number":
            return _number
        case "string":
            return _string
        case "bool":
            return _bool
        case "date":
            return _date
        case "datetime":
            return _datetime
        case "enumeration":
            return _enumeration(prop.options or [])
    raise AssertionError(prop.type)


def to_hubspot(value: Any, prop: PropertyType) -> str:
    """The string HubSpot should hold for this source value; raises ValueProblem."""
    return CLEARED if value is None else converter(prop)(value)
