"""A property's value as HubSpot shows it to a person, from the wire string values.py makes.

Dates as dates, datetimes to the minute in UTC, numbers with thousands separators, an option
by its label (the stage's, a yes/no's). A value that does not read as its type is shown as it is.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from funnelsync.mappings.schema import PropertySpec
from funnelsync.mappings.values import CLEARED


def _moment(epoch_ms: str) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(epoch_ms) / 1000, tz=UTC)
    except (ValueError, OverflowError, OSError):
        return None


def _number(text: str) -> str:
    try:
        number = Decimal(text)
    except InvalidOperation:
        return text
    return format(number, ",f") if number.is_finite() else text


def _date(epoch_ms: str) -> str:
    moment = _moment(epoch_ms)
    return moment.date().isoformat() if moment else epoch_ms


def _datetime(epoch_ms: str) -> str:
    moment = _moment(epoch_ms)
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else epoch_ms


def _label(value: str, spec: PropertySpec) -> str:
    return next((option.label for option in spec.options if option.value == value), value)


def display(spec: PropertySpec) -> Callable[[str], str]:
    """`shown` for one property, remembering what it showed: a plan shows the same dates,
    options and small numbers over and over."""
    return functools.lru_cache(maxsize=4096)(functools.partial(shown, spec=spec))


def shown(value: str, spec: PropertySpec) -> str:
    """`value` (HubSpot's wire string for `spec`) as HubSpot shows it; "" for no value."""
    if value == CLEARED:
        return ""
    match spec.type:
        case "number":
            return _number(value)
        case "date":
            return _date(value)
        case "datetime":
            return _datetime(value)
        case "enumeration" | "bool":
            return _label(value, spec)
    return value
