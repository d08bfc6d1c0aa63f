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
    """Requests answered as soon as they are let through."""
    times = []
    for _ in range(count):
        budget.answered(budget.acquire())
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
    budget.answered(budget.acquire())
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


def test_requests_in_flight_are_not_yet_in_the_remotes_count() -> None:
    """The remote's Remaining counts what reached it: two of ours still in flight use two more."""
    clock = FakeClock()
    budget = RequestBudget(100, 10.0, clock=clock, sleep=clock.sleep)
    first, second, third = budget.acquire(), budget.acquire(), budget.acquire()
    budget.answered(first)
    budget.observe(remaining=5)
    assert second is not None and third is not None
    assert len(sent_times(budget, clock, 3)) == 3 and clock.now == 1000.0
    budget.acquire()
    assert clock.now >= 1010.0


def test_the_remotes_own_limit_caps_the_window_when_lower() -> None:
    clock = FakeClock()
    budget = RequestBudget(100, 10.0, clock=clock, sleep=clock.sleep)
    budget.answered(budget.acquire())
    budget.observe(remaining=11, maximum=12)
    times = sent_times(budget, clock, 12)
    assert max_in_any_window([1000.0, *times], 10.0) == 12
    assert budget.window_limit() == 12


def test_an_answer_counts_from_when_it_came_whatever_the_order_of_answers() -> None:
    clock = FakeClock()
    budget = RequestBudget(2, 10.0, clock=clock, sleep=clock.sleep)
    early, late = budget.acquire(), budget.acquire()
    clock.now += 1.0
    budget.answered(late)  # answers come back out of order
    clock.now += 1.0
    budget.answered(early)
    assert budget.in_flight() == 0 and budget.latency > 0
    budget.acquire()  # both slots count from their answers: the first frees at 1011
    assert clock.now == 1011.0


def test_a_request_in_flight_longer_than_the_window_counts_until_it_is_answered() -> None:
    """It may reach the remote at any moment before its answer, so its place is not given back
    when the window it was sent in has passed."""
    clock = FakeClock()
    budget = RequestBudget(2, 10.0, clock=clock, sleep=clock.sleep)
    slow = budget.acquire()
    budget.answered(budget.acquire())
    clock.now += 25.0
    assert budget.used_share() == 0.5
    budget.acquire()
    assert clock.now == 1025.0  # the answered one has left the window; the slow one holds the other place
    clock.now += 5.0
    budget.answered(slow)
    budget.acquire()
    assert clock.now == 1040.0  # 10 s after the slow one's answer


def test_requests_let_through_before_the_answered_one_are_taken_to_be_in_the_remotes_count() -> None:
    """Remaining is counted when the answered request reached the remote: ours let through
    before it are in that count, so they do not make it look like someone else is using the
    window; ours let through after it are not, so they still use up what is left."""
    clock = FakeClock()
    budget = RequestBudget(10, 10.0, clock=clock, sleep=clock.sleep)
    before, answered, after = budget.acquire(), budget.acquire(), budget.acquire()
    budget.answered(answered)
    budget.observe(remaining=8, answering=answered)  # the remote had `before` and `answered`
    assert before is not None and after is not None
    assert len(sent_times(budget, clock, 7)) == 7 and clock.now == 1000.0  # 8 left, less `after`
    budget.acquire()
    assert clock.now >= 1010.0


def test_someone_else_using_the_window_is_still_seen_beside_requests_in_flight() -> None:
    clock = FakeClock()
    budget = RequestBudget(10, 10.0, clock=clock, sleep=clock.sleep)
    budget.acquire()
    answered = budget.acquire()
    budget.answered(answered)
    budget.observe(remaining=3, answering=answered)  # 7 counted, 2 of them ours: 5 someone else's
    assert len(sent_times(budget, clock, 3)) == 3 and clock.now == 1000.0
    budget.acquire()
    assert clock.now >= 1010.0
