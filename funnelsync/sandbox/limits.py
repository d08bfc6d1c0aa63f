"""HubSpot's rate limits (10-second rolling burst, daily budget) and the faults a test injects."""

from __future__ import annotations

import functools
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime

INTERVAL_SECONDS = 10.0
# advertised burst when none is set: large, so a client pacing itself on the headers never waits
UNLIMITED_BURST = 10_000

# before HubSpot applies the request: status, reset, slow, reject_rows; after it applied it (the
# answer lost on the way back): reset_after, late (answered after `delay`), status_after (a 5xx),
# cut_after (the status line and headers sent, the body cut short)
FAULT_KINDS = ("status", "reset", "slow", "reject_rows", "reset_after", "late", "status_after", "cut_after")
AFTER_APPLYING = frozenset({"reset_after", "late", "status_after", "cut_after"})
# where a fault lands unless told: the contact batch upsert in every API version
# (`/crm/v3/objects/contacts/...` and `/crm/objects/2026-09/contacts/...`), `*` being one segment
UPSERT_IN_ANY_VERSION = "/crm/*/*/contacts/batch/upsert"


@dataclass(frozen=True)
class Admission:
    """Whether a request may run (`policy` is None) or which limit refused it, and the headers."""

    policy: str | None
    headers: dict[str, str]


class RateLimiter:
    """Per-token counters; a refused request does not use up the budget."""

    def __init__(self, requests_per_10s: int | None, daily_limit: int | None) -> None:
        self.requests_per_10s = requests_per_10s
        self.daily_limit = daily_limit
        self._lock = threading.Lock()
        self._recent: dict[str, deque[float]] = {}
        self._daily: dict[str, tuple[str, int]] = {}

    def reset(self) -> None:
        with self._lock:
            self._recent.clear()
            self._daily.clear()

    def admit(self, token: str) -> Admission:
        with self._lock:
            now = time.monotonic()
            recent = self._recent.setdefault(token, deque())
            while recent and now - recent[0] >= INTERVAL_SECONDS:
                recent.popleft()
            used_today = self._used_today(token)
            policy = self._refusing_policy(len(recent), used_today)
            if policy is None:
                recent.append(now)
                used_today += 1
                self._daily[token] = (_today(), used_today)
            return Admission(policy, self._headers(len(recent), used_today))

    def headers(self, token: str) -> dict[str, str]:
        """The headers for an answer that was not counted (e.g. a 401)."""
        with self._lock:
            return self._headers(len(self._recent.get(token, ())), self._used_today(token))

    def _used_today(self, token: str) -> int:
        day, used = self._daily.get(token, (_today(), 0))
        return used if day == _today() else 0

    def _refusing_policy(self, in_window: int, used_today: int) -> str | None:
        if self.daily_limit is not None and used_today >= self.daily_limit:
            return "DAILY"
        if self.requests_per_10s is not None and in_window >= self.requests_per_10s:
            return "TEN_SECONDLY_ROLLING"
        return None

    def _headers(self, in_window: int, used_today: int) -> dict[str, str]:
        burst = self.requests_per_10s if self.requests_per_10s is not None else UNLIMITED_BURST
        headers = {
            "X-HubSpot-RateLimit-Max": str(burst),
            "X-HubSpot-RateLimit-Remaining": str(max(0, burst - in_window)),
            "X-HubSpot-RateLimit-Interval-Milliseconds": str(int(INTERVAL_SECONDS * 1000)),
        }
        if self.daily_limit is not None:
            headers["X-HubSpot-RateLimit-Daily"] = str(self.daily_limit)
            remaining = max(0, self.daily_limit - used_today)
            headers["X-HubSpot-RateLimit-Daily-Remaining"] = str(remaining)
        return headers


@functools.lru_cache(maxsize=64)
def prefix_pattern(prefix: str) -> re.Pattern[str]:
    """What a path starting with `prefix` matches, `*` standing for one path segment."""
    return re.compile("[^/]+".join(re.escape(part) for part in prefix.split("*")))


def _today() -> str:
    return datetime.now(UTC).date().isoformat()


@dataclass
class Fault:
    """What happens to the next `count` requests matching `method` and `path_prefix` (with
    `every` = n, to every n-th of them, the others passing untouched)."""

    method: str
    path_prefix: str
    kind: str
    status: int = 503
    count: int = 1
    delay: float = 0.0
    emails: frozenset[str] = field(default_factory=frozenset)
    every: int = 1
    seen: int = 0

    @property
    def after_applying(self) -> bool:
        return self.kind in AFTER_APPLYING

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(
                f"fault kind must be one of {', '.join(FAULT_KINDS)}, not {self.kind!r}")
        if self.count < 1:
            raise ValueError("fault count must be at least 1")
        if self.every < 1:
            raise ValueError("fault every must be at least 1")
        if self.kind in ("status", "status_after") and not 400 <= self.status <= 599:
            raise ValueError("a status fault answers a 4xx or 5xx status")
        if self.kind == "reject_rows" and not self.emails:
            raise ValueError("a reject_rows fault names the emails to reject")
        self.method = self.method.upper()
        self.emails = frozenset(email.lower() for email in self.emails)

    def matches(self, method: str, path: str) -> bool:
        """`*` in the prefix stands for one path segment (a list id, say)."""
        return self.method == method and prefix_pattern(self.path_prefix).match(path) is not None

    def as_dict(self) -> dict[str, object]:
        return {"method": self.method, "path_prefix": self.path_prefix, "kind": self.kind,
                "status": self.status, "count": self.count, "delay": self.delay,
                "emails": sorted(self.emails), "every": self.every}


class FaultBook:
    """Injected faults, used up in the order they were injected."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def take(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.seen += 1
                    if fault.seen % fault.every:
                        return None
                    fault.count -= 1
                    if fault.count == 0:
                        self._faults.remove(fault)
                    return fault
            return None

    def pending(self) -> list[dict[str, object]]:
        with self._lock:
            return [fault.as_dict() for fault in self._faults]

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
