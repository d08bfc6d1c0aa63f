"""Contact property values: HubSpot's checks per property type, and the string it stores.

A bad value raises `ValueProblem` with HubSpot's error code and message; the caller turns the
problems of a whole batch into one 400, as HubSpot does.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@"
                   r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$")
# HubSpot refuses exponents ("1.4e-14 was not a valid number."), so only plain decimals pass
NUMBER = re.compile(r"^-?\d+(\.\d+)?$")
EPOCH_MILLIS = re.compile(r"^-?\d+$")


class ValueProblem(Exception):
    def __init__(self, code: str, message: str, property_name: str, value: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.property_name = property_name
        self.value = value


def wire_string(value: Any) -> str | None:
    """A JSON property value as the string HubSpot reads (true -> "true", 5 -> "5")."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    raise TypeError(f"a property value must be a string, number or boolean, not {value!r}")


def is_valid_email(address: str) -> bool:
    return bool(EMAIL.match(address))


def stored_value(prop: dict[str, Any], value: str) -> str:
    """The value as HubSpot stores and returns it; raises ValueProblem if HubSpot refuses it."""
    if prop.get("modificationMetadata", {}).get("readOnlyValue"):
        raise ValueProblem("READ_ONLY_VALUE", f'"{prop["name"]}" is a read only property; its value cannot be set.',
                           prop["name"], value)
    if value == "":
        return ""  # an empty string clears the property, whatever its type
    check = _CHECKS.get(prop["type"], _check_string)
    return check(prop, value)


def _check_string(prop: dict[str, Any], value: str) -> str:
    if prop["name"] == "email" and not is_valid_email(value.strip()):
        raise ValueProblem("INVALID_EMAIL", f"Email address {value} is invalid", prop["name"],
                           value)
    return value.strip().lower() if prop["name"] == "email" else value


def _check_number(prop: dict[str, Any], value: str) -> str:
    text = value.strip()
    if not NUMBER.match(text):
        raise ValueProblem("INVALID_INTEGER", f"{value} was not a valid number.", prop["name"],
                           value)
    canonical = format(Decimal(text).normalize(), "f")
    return "0" if canonical == "-0" else canonical


def _check_bool(prop: dict[str, Any], value: str) -> str:
    if value not in ("true", "false"):
        raise ValueProblem("INVALID_OPTION",
                           f"{value} was not one of the allowed options: [true, false]",
                           prop["name"], value)
    return value


def _check_enumeration(prop: dict[str, Any], value: str) -> str:
    allowed = [option["value"] for option in prop.get("options", [])]
    # checkbox (multiple choice) values are ";"-separated
    chosen = value.split(";") if prop.get("fieldType") == "checkbox" else [value]
    for choice in chosen:
        if choice not in allowed:
            message = f"{choice} was not one of the allowed options: [{', '.join(allowed)}]"
            raise ValueProblem("INVALID_OPTION", message, prop["name"], value)
    return value


def _check_date(prop: dict[str, Any], value: str) -> str:
    moment = parse_moment(value)
    if moment is None:
        raise ValueProblem("INVALID_DATE", f"{value} is not a valid date.", prop["name"], value)
    if moment.timetz().replace(tzinfo=None) != time(0):
        clock = iso_millis(moment)[11:23]
        raise ValueProblem("INVALID_DATE", f"{value} is at {clock} UTC, not midnight!",
                           prop["name"], value)
    return moment.date().isoformat()


def _check_datetime(prop: dict[str, Any], value: str) -> str:
    moment = parse_moment(value)
    if moment is None:
        raise ValueProblem("INVALID_LONG", f"{value} was not a valid long.", prop["name"], value)
    return iso_millis(moment)


def parse_moment(value: str) -> datetime | None:
    """Epoch milliseconds, YYYY-MM-DD or ISO 8601 (UTC when no zone), as an aware UTC datetime."""
    text = value.strip()
    try:
        if EPOCH_MILLIS.match(text):
            return datetime.fromtimestamp(int(text) / 1000, tz=UTC)
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(0), tzinfo=UTC)
        moment = datetime.fromisoformat(text)
    except (ValueError, OverflowError, OSError):
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def iso_millis(moment: datetime) -> str:
    """HubSpot's date-time form: 2024-01-15T10:30:00.123Z."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


_CHECKS = {
    "string": _check_string,
    "phone_number": _check_string,
    "number": _check_number,
    "bool": _check_bool,
    "enumeration": _check_enumeration,
    "date": _check_date,
    "datetime": _check_datetime,
}
