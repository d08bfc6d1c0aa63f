"""What HubSpot holds -> the strings funnelsync writes, so that a state rebuilt from HubSpot
diffs the way a written one does and the next sync sends only what really differs.

HubSpot answers dates as YYYY-MM-DD, datetimes as ISO 8601 and numbers as it normalised them;
funnelsync writes both kinds of time as epoch milliseconds and numbers in plain notation.
"""

from __future__ import annotations

from datetime import UTC, datetime, time

from funnelsync.mappings.values import CLEARED, ValueProblem, epoch_ms, number_text, parse_timestamp, to_number


def held_moment(value: str | None) -> datetime | None:
    """A time HubSpot holds (epoch milliseconds, a date or ISO 8601), in UTC; None if it is none."""
    if not value:
        return None
    text = value.strip()
    try:
        if text.lstrip("-").isdigit():
            return datetime.fromtimestamp(int(text) / 1000, UTC)
        return parse_timestamp(text)
    except (ValueProblem, OverflowError, OSError):
        return None


def as_written(value: str | None, hubspot_type: str) -> str:
    """The value in the form funnelsync sends for a property of this HubSpot type; a value it
    cannot read is kept as HubSpot gave it (the next sync then writes it again)."""
    if value is None or value == "":
        return CLEARED
    if hubspot_type == "number":
        try:
            return number_text(to_number(value))
        except ValueProblem:
            return value
    if hubspot_type in ("date", "datetime"):
        moment = held_moment(value)
        if moment is None:
            return value
        if hubspot_type == "date":
            moment = datetime.combine(moment.date(), time.min, tzinfo=UTC)
        return epoch_ms(moment)
    if hubspot_type == "bool":
        return value.strip().lower()
    return value
