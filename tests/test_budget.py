"""The client-side request budget keeps every window under the limit, whoever else uses it."""

from __future__ import annotations

import pytest

from funnelsync.connectors.budget import ANSWERS_TO_SEE_SOMEONE_ELSE, RequestBudget, Slot
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


def answers_say(budget: RequestBudget, remaining: int, answering: Slot) -> None:
    """As many answers in a row as it takes to believe them say `remaining` (`answering`'s
    headers, repeated)."""
    for _ in range(ANSWERS_TO_SEE_SOMEONE_ELSE):
        budget.observe(remaining=remaining, answering=answering)


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
    first = budget.acquire()
    budget.answered(first)
    answers_say(budget, 9, first)  # another integration on the portal is using the rest
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
    budget.observe(remaining=None, daily_remaining=1, answering=budget.acquire())
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
    answers_say(budget, 5, first)
    assert second is not None and third is not None
    assert len(sent_times(budget, clock, 3)) == 3 and clock.now == 1000.0
    budget.acquire()
    assert clock.now >= 1010.0


def test_the_remotes_own_limit_caps_the_window_when_lower() -> None:
    clock = FakeClock()
    budget = RequestBudget(100, 10.0, clock=clock, sleep=clock.sleep)
    first = budget.acquire()
    budget.answered(first)
    budget.observe(remaining=11, maximum=12, answering=first)
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
    answers_say(budget, 3, answered)  # 7 counted, 2 of them ours: 5 someone else's
    assert len(sent_times(budget, clock, 3)) == 3 and clock.now == 1000.0
    budget.acquire()
    assert clock.now >= 1010.0


def arrival_counting_remaining(limit: int, arrivals: list[float], at: float, interval: float = 10.0) -> int:
    """What a remote counting requests as they reach it says is left when one arrives at `at`."""
    return limit - sum(1 for t in arrivals if at - interval < t <= at)


def a_quick_answer_then_a_slow_request(budget: RequestBudget, clock: FakeClock) -> Slot:
    """One request sent at 1000 and answered 0.1 s later; the next, returned, sent at 1009.5."""
    quick = budget.acquire()
    clock.now += 0.1
    budget.answered(quick)
    clock.now = 1009.5
    return budget.acquire()


def test_a_quick_answer_leaving_our_window_first_is_not_taken_for_someone_elses_use() -> None:
    """Answers take different times: one answered quickly leaves our window while the remote,
    counting on arrival, still had it when a slower one arrived, whose headers say so."""
    clock = FakeClock()
    budget = RequestBudget(4, 10.0, clock=clock, sleep=clock.sleep)
    slow = a_quick_answer_then_a_slow_request(budget, clock)
    clock.now = 1010.5
    budget.acquire()  # the quick one has left our window; this one is in flight
    clock.now = 1011.0
    budget.answered(slow)
    remaining = arrival_counting_remaining(4, [1000.0, 1009.5], at=1009.5)
    assert remaining == 2
    budget.observe(remaining=remaining, answering=slow)
    assert len(sent_times(budget, clock, 2)) == 2 and clock.now == 1011.0  # all the remote has room for


def test_someone_else_is_seen_in_full_whatever_the_time_our_answers_took() -> None:
    clock = FakeClock()
    budget = RequestBudget(4, 10.0, clock=clock, sleep=clock.sleep)
    slow = a_quick_answer_then_a_slow_request(budget, clock)
    clock.now = 1011.0
    budget.answered(slow)
    answers_say(budget, 0, slow)  # two of someone else's reached it too
    assert len(sent_times(budget, clock, 1)) == 1 and clock.now == 1011.0
    budget.acquire()
    assert clock.now >= 1021.0  # their two hold their places for a whole window from now


def test_what_an_answer_says_of_someone_else_is_not_counted_twice() -> None:
    """Every answer in a window repeats someone else's use; their places are taken once."""
    clock = FakeClock()
    budget = RequestBudget(20, 10.0, clock=clock, sleep=clock.sleep)
    answers = ANSWERS_TO_SEE_SOMEONE_ELSE + 3
    for ours in range(1, answers + 1):
        slot = budget.acquire()
        budget.answered(slot)
        budget.observe(remaining=20 - 4 - ours, answering=slot)  # 4 of someone else's, and ours
    assert budget.used_share() == (answers + 4) / 20


def test_one_answer_that_looks_like_someone_elses_use_holds_no_places_until_others_agree() -> None:
    """A request of ours sent late can make one answer look as if someone else were there;
    someone really there shows in every answer, and is believed once enough in a row do."""
    clock = FakeClock()
    budget = RequestBudget(20, 10.0, clock=clock, sleep=clock.sleep)
    slots = [budget.acquire() for _ in range(ANSWERS_TO_SEE_SOMEONE_ELSE)]
    budget.observe(remaining=20 - 4 - 1, answering=slots[0])  # 4 beyond the one of ours counted
    for ours_before, slot in enumerate(slots[1:], start=1):
        budget.observe(remaining=20 - ours_before - 1, answering=slot)
    assert budget.used_share() == len(slots) / 20  # no place held for anyone else
    for ours_before, slot in enumerate(slots[1:], start=1):
        budget.observe(remaining=20 - 4 - ours_before - 1, answering=slot)
    assert budget.used_share() == len(slots) / 20  # fewer in a row are not enough
    budget.observe(remaining=20 - 4 - len(slots), answering=slots[-1])
    assert budget.used_share() == (len(slots) + 4) / 20


def test_a_request_that_reached_the_remote_late_is_not_taken_for_someone_elses_use() -> None:
    """Let through more than a window before the answered one, but sent late (its thread held
    up): the remote still had it when the answered one arrived, and so does our window."""
    clock = FakeClock()
    budget = RequestBudget(4, 10.0, clock=clock, sleep=clock.sleep)
    held_up = budget.acquire()
    clock.now = 1010.2
    answered = budget.acquire()
    clock.now = 1010.5
    budget.answered(held_up)
    clock.now = 1011.0
    budget.answered(answered)
    budget.observe(remaining=2, answering=answered)  # the remote had both
    assert len(sent_times(budget, clock, 2)) == 2 and clock.now == 1011.0
