"""Moesif's times: relative dates as its from/to read them, and zone-less UTC timestamps."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any


@dataclass(frozen=True)
class RelativeTime:
    """A config time such as `-24h`, sent to Moesif as it reads relative dates.

    Moesif knows s m h d w M (no years: `-1y` is sent as `-12M`) and starts a relative date at
    the calendar boundary of its unit in UTC (`-24h` at the top of the hour, `-1d` at midnight).
    Elasticsearch date math with rounding (`now-24h/h`) names the same instant inside a query.
    """

    amount: int
    unit: str

    @classmethod
    def parse(cls, text: str) -> RelativeTime:
        match = re.fullmatch(r"-(\d+)([smhdwMy])", text)
        if not match:
            raise ValueError(f"{text!r} is not a relative time such as -24h")
        amount, unit = int(match[1]), match[2]
        return cls(amount * 12, "M") if unit == "y" else cls(amount, unit)

    @property
    def param(self) -> str:
        """For Moesif's `from` query parameter."""
        return f"-{self.amount}{self.unit}"

    @property
    def date_math(self) -> str:
        """For a `range` on `request.time` inside a query."""
        return f"now-{self.amount}{self.unit}/{self.unit}"

    def start(self, now: datetime) -> datetime:
        """Where Moesif starts this range when the time is `now`."""
        if self.unit == "M":
            months = now.year * 12 + now.month - 1 - self.amount
            return datetime(months // 12, months % 12 + 1, 1, tzinfo=UTC)
        back = now.astimezone(UTC) - timedelta(
            seconds=self.amount * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[self.unit]
        )
        midnight = back.replace(hour=0, minute=0, second=0, microsecond=0)
        if self.unit == "w":
            return midnight - timedelta(days=midnight.weekday())
        if self.unit == "d":
            return midnight
        if self.unit == "h":
            return back.replace(minute=0, second=0, microsecond=0)
        if self.unit == "m":
            return back.replace(second=0, microsecond=0)
        return back.replace(microsecond=0)


def parse_moesif_time(value: Any) -> datetime | None:
    """A Moesif time as an aware UTC datetime, or None when it is not one.

    Takes epoch milliseconds (what a min/max aggregation gives) or ISO-8601, where no zone means
    UTC and 7 fractional digits may appear (`first_seen_time`).
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
