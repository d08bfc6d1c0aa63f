"""How late the sandbox answers: a fixed delay and a spread, per kind of request.

HubSpot answers in a few hundred milliseconds, batch upserts later; the sandbox, by default, in
microseconds, which hides what a client that waits for each answer before the next request loses.
A request is admitted (and counted by the rate limiter) and applied when it arrives; its answer
is then held back for its delay. Each request thread sleeps on its own, outside the store's lock,
so N requests in flight take about one delay, not N.

A delay is `fixed ± spread`: uniformly between `fixed - spread` and `fixed + spread`, drawn in
the order requests arrive from a random generator seeded with `seed`, so a run that sends the
same requests in the same order gets the same delays.

Written as in `funnelsync sandbox --latency`: `300ms`, `0.3s`, `300ms±100ms` (or `300ms+-100ms`),
a kind's own with `upsert=800ms±300ms`, a profile by name (`hubspot`, `none`).
"""

from __future__ import annotations

import enum
import random
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


class RequestKind(enum.StrEnum):
    UPSERT = "upsert"  # contact batch upsert
    READ = "read"  # contact batch read, list, get
    SEARCH = "search"  # contact search
    PROPERTIES = "properties"  # property groups and properties
    LISTS = "lists"  # lists and their memberships
    WORKFLOWS = "workflows"  # v2 workflow enrollment, v4 workflow id mappings
    SEQUENCES = "sequences"
    EVENTS = "events"  # custom event definitions and occurrences
    OTHER = "other"  # account details, unknown paths


def kind_of(path: str) -> RequestKind:
    """The kind of a request, from its path alone (numbered and date-versioned paths alike)."""
    segments = path.strip("/").split("/")
    if segments[0] == "events":
        return RequestKind.EVENTS
    if "sequences" in segments:
        return RequestKind.SEQUENCES
    if "workflows" in segments or "workflow-id-mappings" in segments:
        return RequestKind.WORKFLOWS
    if "lists" in segments:
        return RequestKind.LISTS
    if "properties" in segments:
        return RequestKind.PROPERTIES
    if "contacts" in segments:
        if path.endswith("/batch/upsert"):
            return RequestKind.UPSERT
        return RequestKind.SEARCH if path.endswith("/search") else RequestKind.READ
    return RequestKind.OTHER


@dataclass(frozen=True)
class Delay:
    """`seconds ± spread`, in seconds."""

    seconds: float = 0.0
    spread: float = 0.0

    def __post_init__(self) -> None:
        if self.seconds < 0 or self.spread < 0:
            raise ValueError(f"a delay cannot be negative: {self}")
        if self.spread > self.seconds:
            # beyond that, delays clipped at zero would make the mean larger than the one asked for
            raise ValueError(f"the spread cannot be larger than the delay: {self}")

    def draw(self, rng: random.Random) -> float:
        return self.seconds + rng.uniform(-self.spread, self.spread) if self.spread else self.seconds

    def __str__(self) -> str:
        text = _millis(self.seconds)
        return f"{text}±{_millis(self.spread)}" if self.spread else text


NO_DELAY = Delay()
# HubSpot publishes no answer times; these are a round guess at what a portal answers from
# afar: a few hundred milliseconds a call, a batch upsert of 100 contacts more.
HUBSPOT_LIKE = {
    RequestKind.UPSERT: Delay(0.8, 0.3),
    RequestKind.READ: Delay(0.3, 0.1),
    RequestKind.SEARCH: Delay(0.4, 0.15),
    RequestKind.PROPERTIES: Delay(0.25, 0.1),
    RequestKind.LISTS: Delay(0.4, 0.15),
    RequestKind.WORKFLOWS: Delay(0.3, 0.1),
    RequestKind.SEQUENCES: Delay(0.4, 0.15),
    RequestKind.EVENTS: Delay(0.3, 0.1),
    RequestKind.OTHER: Delay(0.2, 0.05),
}
PROFILES: dict[str, Mapping[RequestKind, Delay]] = {"none": {}, "hubspot": HUBSPOT_LIKE}

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s)\s*$")
_SPREAD_SIGNS = ("±", "+-", "+/-")


class Latency:
    """The delay of each kind of request (`kinds`), `delay ± spread` for the others."""

    def __init__(self, delay: float = 0.0, spread: float = 0.0,
                 kinds: Mapping[RequestKind, Delay | float] | Mapping[str, Delay | float] | None = None,
                 *, seed: int | None = None) -> None:
        self.default = Delay(delay, spread)
        self.kinds = {RequestKind(kind): given if isinstance(given, Delay) else Delay(given)
                      for kind, given in (kinds or {}).items()}
        self.seed = seed
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    @classmethod
    def profile(cls, name: str, *, seed: int | None = None) -> Latency:
        if name not in PROFILES:
            raise ValueError(f"no latency profile {name!r}: one of {', '.join(PROFILES)}")
        return cls(kinds=PROFILES[name], seed=seed)

    @classmethod
    def parse(cls, specs: str | Iterable[str], *, seed: int | None = None) -> Latency:
        """`--latency` values, in order, later ones winning: a profile name, a delay for every
        kind (`300ms±100ms`), or one kind's (`upsert=800ms`)."""
        default = NO_DELAY
        kinds: dict[RequestKind, Delay] = {}
        for spec in [specs] if isinstance(specs, str) else specs:
            name, equals, value = spec.strip().partition("=")
            if equals:
                kinds[_kind(name.strip())] = parse_delay(value)
            elif name in PROFILES:
                default, kinds = NO_DELAY, dict(PROFILES[name])
            else:
                default, kinds = parse_delay(name), {}
        return cls(default.seconds, default.spread, kinds, seed=seed)

    def of(self, kind: RequestKind) -> Delay:
        return self.kinds.get(kind, self.default)

    def draw(self, kind: RequestKind) -> float:
        """The delay of one request of `kind`, in seconds."""
        delay = self.of(kind)
        with self._lock:
            return delay.draw(self._rng)

    def __str__(self) -> str:
        """`300ms±100ms`, or each kind's delay where kinds have their own."""
        if not self.kinds:
            return str(self.default)
        return ", ".join(f"{kind} {self.of(kind)}" for kind in RequestKind)

    def as_dict(self) -> dict[str, Any]:
        return {"default": str(self.default), "seed": self.seed,
                "kinds": {kind.value: str(self.of(kind)) for kind in RequestKind}}


def parse_delay(text: str) -> Delay:
    """`300ms`, `0.3s`, `300ms±100ms`; a bare `0` is no delay."""
    value, spread = text.strip(), "0ms"
    for sign in _SPREAD_SIGNS:
        if sign in value:
            value, _, spread = value.partition(sign)
            break
    return Delay(_seconds(value), _seconds(spread))


def _seconds(text: str) -> float:
    if text.strip() == "0":
        return 0.0
    found = _DURATION.match(text)
    if found is None:
        raise ValueError(f"{text.strip()!r} is not a duration: write it as 300ms or 0.3s")
    number, unit = float(found.group(1)), found.group(2)
    return number / 1000 if unit == "ms" else number


def _kind(name: str) -> RequestKind:
    try:
        return RequestKind(name)
    except ValueError:
        raise ValueError(f"no kind of request {name!r}: one of {', '.join(RequestKind)}") from None


def _millis(seconds: float) -> str:
    return f"{seconds * 1000:g}ms"
