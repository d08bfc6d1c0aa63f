"""The client-side request budget keeps every window under the limit, whoever else uses it."""

from __future__ import annotations

import pytest

from funnelsync.connectors.budget import RequestBudget
from funnelsync.errors import DailyLimitReached


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def sent_times(budget: RequestBudget, clock: FakeClock, count: int) -> list[float]:
    times = []
    for _ in range(count):
        budget.acquire()
        times.append(clock.now)
    return times


def max_in_any_window(times: list[float], interval: float) -> int:
    return max(sum(1 for t in times if start <= t < start + interval) for start in times)


def test_no_window_ever_holds_more_than_the_limit() -> None:
    clock = FakeClock()
    budget = RequestBudget(90, 10.0, clock=clock, sleep=clock.sleep)
    times = sent_times(budget, clock, 1000)
    assert max_in_any_window(times, 10.0) == 90
    # and it uses the budget: 1,000 requests take barely more than 11 windows
    assert times[-1] - times[0] < 11 * 10.0 + 1


def test_headers_saying_less_is_left_slow_the_budget_down() -> None:
    clock = FakeClock()
    budget = RequestBudget(100, 10.0, clock=clock, sleep=clock.sleep)
    budget.acquire()
    budget.observe(remaining=9)  # another integration on the portal is using the rest
    times = sent_times(budget, clock, 9)
    assert times[-1] == times[0]
    budget.acquire()
    assert clock.now >= 1000.0 + 10.0


def test_a_pause_holds_every_caller_back() -> None:
    clock = FakeClock()
    budget = RequestBudget(100, 10.0, clock=clock, sleep=clock.sleep)
    budget.pause(2.5)
    budget.acquire()
    assert clock.now >= 1002.5


def test_the_daily_budget_is_never_exceeded() -> None:
    clock = FakeClock()
    budget = RequestBudget(100, 10.0, daily_limit=5, clock=clock, sleep=clock.sleep)
    sent_times(budget, clock, 5)
    with pytest.raises(DailyLimitReached):
        budget.acquire()


def test_daily_remaining_from_headers_counts_other_integrations() -> None:
    clock = FakeClock()
    budget = RequestBudget(100, 10.0, daily_limit=1000, clock=clock, sleep=clock.sleep)
    budget.acquire()
    budget.observe(remaining=None, daily_remaining=1)
    budget.acquire()
    with pytest.raises(DailyLimitReached):
        budget.acquire()


def test_a_request_counts_from_its_answer_so_slow_arrivals_never_crowd_the_remotes_window() -> None:
    clock = FakeClock()
    budget = RequestBudget(2, 10.0, clock=clock, sleep=clock.sleep)
    budget.acquire()
    clock.now += 0.5  # the answer comes half a second later: the remote counted it then
    budget.answered()
    budget.acquire()
    budget.answered()
    budget.acquire()  # the third may go only 10 s after the first answer
    assert clock.now >= 1000.0 + 0.5 + 10.0
