"""Client-side request budgets: acquire one before every request to a remote.

A budget is a sliding window (`limit` requests per `interval` seconds) plus an optional daily
cap. One budget object is shared by every call the process makes to that remote, so that
upserts, property calls, lists and enrollments together stay under the portal's limit. The
remote's own rate-limit headers correct it when they say less is left than we think.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from funnelsync.errors import DailyLimitReached, StopRequested

LATENCY_WEIGHT = 0.2  # of the newest answer in the moving average of answer times
UNANSWERED_POLL = 0.05  # seconds: how often to look again when the window holds only requests in flight
# how long, in windows, the times requests were let through are kept: the remote's count that an
# answer's headers carry is as old as that answer's request, and this long covers the slowest ones
SENT_KEPT_WINDOWS = 2
# how many answers in a row must show someone else's use before places are held for it: theirs
# stays in the remote's count for a whole window, while a request of ours sent or answered late
# makes one or two answers look as if someone else were there
ANSWERS_TO_SEE_SOMEONE_ELSE = 4


@dataclass
class Slot:
    """One request's place in the window: from when it was let through, then from its answer.
    `number` is its place among all of ours let through; someone else's use has none."""

    at: float
    sent: float
    answered: bool = False
    number: int | None = None


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
        self._slots: list[Slot] = []
        self._sent: list[float] = []  # when each of ours of the last windows was let through
        self._sent_before = 0  # how many of ours were let through before the first in `_sent`
        self._theirs_seen: deque[int] = deque(maxlen=ANSWERS_TO_SEE_SOMEONE_ELSE)
        self._lock = threading.Lock()
        self.latency = 0.0  # seconds from let through to answered, a moving average
        self._remote_limit: int | None = None  # the remote's own, when its headers say it is lower
        self._blocked_until = 0.0
        self.used_today = used_today
        self.waited_seconds = 0.0

    def acquire(self) -> Slot:
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
                self._slots = [slot for slot in self._slots if self._counted(slot, now)]
                wait = self._blocked_until - now
                if wait <= 0 and len(self._slots) < self.window_limit():
                    return self._let_through(now)
                if wait <= 0:
                    answered = [slot.at for slot in self._slots if slot.answered]
                    wait = self.interval - (now - min(answered)) if answered else UNANSWERED_POLL
            wait = max(wait, 0.001)
            self.waited_seconds += wait
            self._sleep(wait)

    def _let_through(self, now: float) -> Slot:
        forgotten = bisect.bisect_left(self._sent, now - SENT_KEPT_WINDOWS * self.interval)
        del self._sent[:forgotten]
        self._sent_before += forgotten
        slot = Slot(now, now, number=self._sent_before + len(self._sent))
        self._sent.append(now)
        self._slots.append(slot)
        self.used_today += 1
        return slot

    def answered(self, slot: Slot | None = None) -> None:
        """The request of `slot` (by default the one last let through) was answered: count it
        from now. The remote counts a request when it arrives, some time after it was let
        through, so counting from the answer keeps every one of the remote's windows under the
        limit, whatever the latency and however many requests are in flight."""
        with self._lock:
            if slot is None and self._slots:
                slot = self._slots[-1]
            if slot is None or slot.answered:
                return
            now = self._clock()
            slot.at, slot.answered = max(slot.at, now), True
            self.latency += LATENCY_WEIGHT * (now - slot.sent - self.latency)

    def _counted(self, slot: Slot, now: float) -> bool:
        """A request not yet answered counts however long ago it was sent: it may still arrive."""
        return not slot.answered or now - slot.at < self.interval

    def in_flight(self) -> int:
        with self._lock:
            return sum(1 for slot in self._slots if not slot.answered)

    def window_limit(self) -> int:
        return min(self.limit, self._remote_limit or self.limit)

    def observe(self, remaining: int | None, interval_ms: int | None = None,
                daily_remaining: int | None = None, maximum: int | None = None, *,
                answering: Slot) -> None:
        """Correct the budget from the remote's headers when they say less is allowed or left.

        `answering` is the request whose answer carried them. What the remote counted beyond
        ours and the room our own limit leaves is someone else's use (another integration on
        the portal): once answers in a row show it, it takes places in our window from now."""
        with self._lock:
            if maximum is not None and maximum > 0:
                self._remote_limit = maximum
            if remaining is not None:
                now = self._clock()
                self._theirs_seen.append(
                    self.window_limit() - max(remaining, 0) - self._ours_counted_with(answering, now))
                theirs = min(self._theirs_seen) if len(self._theirs_seen) == self._theirs_seen.maxlen else 0
                theirs_held = sum(1 for slot in self._slots if slot.number is None and self._counted(slot, now))
                self._slots += [Slot(now, now, answered=True) for _ in range(theirs - theirs_held)]
            if daily_remaining is not None and self.daily_limit is not None:
                self.used_today = max(self.used_today, self.daily_limit - daily_remaining)

    def _ours_counted_with(self, answering: Slot, now: float) -> int:
        """How many of ours the remote's count in `answering`'s headers holds, as near as we can
        tell. It counted what had reached it in the window up to when `answering` did: ours let
        through in the 10 s up to it, reckoning by when they were let through; or, reckoning by
        when they were answered, those in our window now but the ones let through after it and
        still in flight. A request sent or answered late throws one reckoning out, and what it
        misses would look like someone else's use; so the larger of the two."""
        if answering.number is None:
            return 0
        last = answering.number - self._sent_before + 1
        first = bisect.bisect_right(self._sent, answering.sent - self.interval, 0, max(last, 0))
        by_sending = max(last - first, 0)
        by_answers = sum(1 for slot in self._slots if slot.number is not None and self._counted(slot, now)
                         and (slot.answered or slot.number <= answering.number))
        return max(by_sending, by_answers)

    def used_share(self) -> float:
        """The share of the window's limit in use now."""
        with self._lock:
            now = self._clock()
            return sum(1 for slot in self._slots if self._counted(slot, now)) / self.window_limit()

    def left_today(self) -> int | None:
        return None if self.daily_limit is None else max(self.daily_limit - self.used_today, 0)

    def pause(self, seconds: float) -> None:
        """Hold every caller back for `seconds` (after a 429 or a Retry-After)."""
        with self._lock:
            self._blocked_until = max(self._blocked_until, self._clock() + seconds)
