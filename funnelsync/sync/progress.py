"""How far a run has got, phase by phase (writing contacts, changing lists, enrolling), and how
long the rest should take: from the rate seen so far, never less than what the rate budget
allows for the requests still to send."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

WRITING = "writing contacts"
CHANGING_LISTS = "changing lists"
ENROLLING = "enrolling"


@dataclass(frozen=True)
class PhaseProgress:
    phase: str
    done: int
    total: int
    seconds: float  # since the phase began
    seconds_left: float | None  # None until something is done

    @property
    def finished(self) -> bool:
        return self.done >= self.total


ProgressReport = Callable[[PhaseProgress], None]


class PhaseClock:
    def __init__(self, phase: str, total: int, report: ProgressReport | None, *, per_request: int,
                 requests_per_second: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.phase = phase
        self.total = total
        self.report = report
        self.per_request = max(per_request, 1)
        self.requests_per_second = requests_per_second
        self._clock = clock
        self._began = clock()
        self.done = 0

    def advance(self, count: int) -> None:
        self.done += count
        if self.report is not None:
            self.report(self.now())

    def now(self) -> PhaseProgress:
        seconds = self._clock() - self._began
        return PhaseProgress(self.phase, self.done, self.total, seconds, self.seconds_left(seconds))

    def seconds_left(self, seconds: float) -> float | None:
        left = max(self.total - self.done, 0)
        if not self.done:
            return None
        by_budget = math.ceil(left / self.per_request) / self.requests_per_second
        return max(left * seconds / self.done, by_budget)
