"""Client-side request budgets: acquire one before every request to a remote.

A budget is a sliding window (`limit` requests per `interval` seconds) plus an optional daily
cap. One budget object is shared by every call the process makes to that remote, so that
upserts, property calls, lists and enrollments together stay under the portal's limit. The
remote's own rate-limit headers correct it when they say less is left than we think.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from funnelsync.errors import DailyLimitReached, StopRequested


class RequestBudget:
    def __init__(
        self,
        limit: int,
        interval: float,
        *,
        daily_limit: int | None = None,
        used_today: int = 0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.limit = limit
        self.interval = interval
        self.daily_limit = daily_limit
        self._clock = clock
        self._stop = stop or threading.Event()
        self._sleep = sleep or self._stop.wait  # a stop cuts the wait short
        self._sent: deque[float] = deque()
        self._lock = threading.Lock()
        self._blocked_until = 0.0
        self.used_today = used_today
        self.waited_seconds = 0.0

    def acquire(self) -> None:
        """Block until one more request fits in the window; count it. A stop ends the wait."""
        while True:
            if self._stop.is_set():
                raise StopRequested("stopped while waiting for the rate budget")
            with self._lock:
                if self.daily_limit is not None and self.used_today >= self.daily_limit:
                    raise DailyLimitReached(
                        f"the daily request budget of {self.daily_limit} is spent; "
                        "the next run after the reset carries on"
                    )
                now = self._clock()
                while self._sent and now - self._sent[0] >= self.interval:
                    self._sent.popleft()
                wait = self._blocked_until - now
                if wait <= 0 and len(self._sent) < self.limit:
                    self._sent.append(now)
                    self.used_today += 1
                    return
                if wait <= 0:
                    wait = self.interval - (now - self._sent[0])
            wait = max(wait, 0.001)
            self.waited_seconds += wait
            self._sleep(wait)

    def answered(self) -> None:
        """The request last let through was answered: count it from now. The remote counts a
        request when it arrives, some time after it was let through, so counting from the
        answer keeps every one of the remote's windows under the limit, whatever the latency."""
        with self._lock:
            if self._sent:
                self._sent[-1] = max(self._sent[-1], self._clock())

    def observe(self, remaining: int | None, interval_ms: int | None = None,
                daily_remaining: int | None = None) -> None:
        """Correct the budget from the remote's headers when they say less is left."""
        with self._lock:
            if remaining is not None:
                in_window = len(self._sent)
                mine_left = self.limit - in_window
                if remaining < mine_left:
                    # Someone else (another integration on the portal) is using the window too:
                    # pretend we sent the difference just now.
                    now = self._clock()
                    self._sent.extend([now] * (mine_left - max(remaining, 0)))
            if daily_remaining is not None and self.daily_limit is not None:
                self.used_today = max(self.used_today, self.daily_limit - daily_remaining)

    def pause(self, seconds: float) -> None:
        """Hold every caller back for `seconds` (after a 429 or a Retry-After)."""
        with self._lock:
            self._blocked_until = max(self._blocked_until, self._clock() + seconds)
