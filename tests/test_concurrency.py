"""Requests in flight at once, within the one shared budget, over real HTTP against a sandbox
that answers late: every rolling 10-s window under the limit, a 429 slowing everything, and
answers recorded right whatever order they come back in."""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from funnelsync.config import parse_config
from funnelsync.connectors.budget import RequestBudget, Slot
from funnelsync.connectors.hubspot.client import HubSpotApi
from funnelsync.connectors.hubspot_settings import HubSpotSettings
from funnelsync.mappings.schema import property_specs
from funnelsync.sandbox import SandboxServer
from funnelsync.sandbox.latency import Latency
from funnelsync.state.models import RunOutcome
from funnelsync.state.store import StateStore
from funnelsync.sync.inflight import HELD_PER_PLACE, send_all
from funnelsync.sync.run import run_sync
from tests.conftest import TOKEN, Analytics, api_path, config_data

UPSERT = "/crm/v3/objects/contacts/batch/upsert"


def most_in_any_window(times: list[float], seconds: float) -> int:
    times = sorted(times)
    return max(sum(1 for t in times[i:] if t < start + seconds) for i, start in enumerate(times))


def most_in_flight(log: list[dict[str, Any]]) -> int:
    """The most requests the sandbox held at once (arrived, not yet answered)."""
    edges = sorted([(r["arrived"], 1) for r in log] + [(r["time"], -1) for r in log])
    held = most = 0
    for _, change in edges:
        held += change
        most = max(most, held)
    return most


def paced_config(analytics: Analytics, sandbox: SandboxServer, tmp_path: Path, limit: int, **hubspot: Any) -> Any:
    data = config_data(analytics, sandbox.url, tmp_path / "state.db")
    data["hubspot"].update({"requests_per_10s": limit, **hubspot})
    return parse_config(data)


def test_requests_overlap_yet_no_rolling_10_s_window_holds_more_than_the_limit(
    analytics: Analytics, tmp_path: Path
) -> None:
    analytics.add_many(2500, calls=3)
    # 3 a second at 0.5 s: ceil(1.5) + 1 = 3 in flight; at 0.3 s it was 2 or 3 as the host's
    # speed put the measured answer time under or over a third of a second
    with SandboxServer(token=TOKEN, requests_per_10s=30, latency=Latency(0.5)) as hubspot:
        summary = run_sync(paced_config(analytics, hubspot, tmp_path, 30), dry_run=False)
        log = hubspot.store.request_log()
    assert summary.outcome == RunOutcome.OK and summary.written == 2500
    assert [r for r in log if r["status"] == 429] == []
    assert most_in_any_window([r["arrived"] for r in log], 10.0) <= 30
    assert len(log) > 30  # the sync needed more than one window
    assert most_in_flight(log) >= 3


def test_a_429_holds_back_every_request_not_yet_sent(
    analytics: Analytics, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    let_through: list[float] = []  # the budget's clock, when each request was let through
    pauses: list[tuple[float, float]] = []  # the budget's clock, before and after the pause took hold
    acquire, pause = RequestBudget.acquire, RequestBudget.pause

    def acquiring(budget: RequestBudget) -> Slot:
        slot = acquire(budget)
        let_through.append(slot.sent)
        return slot

    def pausing(budget: RequestBudget, seconds: float) -> None:
        before = time.monotonic()
        pause(budget, seconds)
        pauses.append((before, time.monotonic()))

    monkeypatch.setattr(RequestBudget, "acquire", acquiring)
    monkeypatch.setattr(RequestBudget, "pause", pausing)
    analytics.add_many(2000, calls=3)
    with SandboxServer(token=TOKEN, latency=Latency(0.2)) as hubspot:
        config = paced_config(analytics, hubspot, tmp_path, 250, concurrency=6)
        hubspot.inject_fault("POST", api_path(UPSERT), kind="status", status=429, count=1)
        summary = run_sync(config, dry_run=False)
        log = hubspot.store.request_log()
    assert summary.written == 2000
    [refused] = [r for r in log if r["status"] == 429]
    # HubSpot gave no Retry-After: from when funnelsync read the 429, nothing goes out for a second.
    # What was let through before it read it (its threads may get the GIL late) is not held back.
    [(before, after)] = pauses
    assert [sent for sent in let_through if after < sent < before + 0.99] == []
    assert any(sent >= before + 1.0 for sent in let_through), "requests went on after the pause"
    # and HubSpot saw it: a quiet second among the arrivals that came after the 429
    arrivals = sorted(r["arrived"] for r in log if r["arrived"] > refused["time"])
    assert max(later - earlier for earlier, later in itertools.pairwise([refused["time"], *arrivals])) >= 0.9


def test_a_sync_sharing_the_portal_keeps_to_its_own_limit_and_leaves_the_rest_to_others(
    analytics: Analytics, tmp_path: Path
) -> None:
    """The portal allows 40 requests per 10 s; funnelsync is given 28 of them, and another
    integration sends one a second. Neither is ever refused, and funnelsync, whatever the time
    each of its answers took, still uses all of its own 28."""
    analytics.add_many(3000, calls=3)
    someone_elses = api_path("/crm/v3/objects/contacts/someone-else")
    with SandboxServer(token=TOKEN, requests_per_10s=40, latency=Latency(0.4, 0.3, seed=3)) as hubspot:
        done = threading.Event()

        def someone_else() -> None:
            started = time.monotonic()
            with requests.Session() as session:
                for second in itertools.count(1):
                    session.get(hubspot.url + someone_elses, timeout=10,
                                headers={"Authorization": f"Bearer {TOKEN}"})
                    if done.wait(started + second - time.monotonic()):
                        return

        other = threading.Thread(target=someone_else)
        other.start()
        try:
            summary = run_sync(paced_config(analytics, hubspot, tmp_path, 28), dry_run=False)
        finally:
            done.set()
            other.join()
        log = hubspot.store.request_log()
    assert summary.outcome == RunOutcome.OK and summary.written == 3000
    assert [r for r in log if r["status"] == 429] == []
    ours = [r["arrived"] for r in log if r["path"] != someone_elses]
    assert len(ours) > 28 and len(log) - len(ours) >= 10  # over more than one window
    assert most_in_any_window(ours, 10.0) == 28


def test_answers_coming_back_out_of_order_are_each_recorded_for_their_own_contacts(
    analytics: Analytics, tmp_path: Path
) -> None:
    analytics.add_many(600, calls=3)
    with SandboxServer(token=TOKEN, latency=Latency(0.05)) as hubspot:
        config = paced_config(analytics, hubspot, tmp_path, 250, concurrency=4)
        hubspot.inject_fault("POST", api_path(UPSERT), kind="slow", delay=1.5, count=1)  # an early one answers last
        assert run_sync(config, dry_run=False).outcome == RunOutcome.OK
        upserts = [r for r in hubspot.store.request_log() if r["path"] == api_path(UPSERT)]
        held = {email: contact["id"] for email, contact in hubspot.store.contacts_by_email().items()}
    # the fault lands on whichever request the sandbox takes first, not always the first to arrive
    [slowed] = [r for r in upserts if r["time"] - r["arrived"] >= 1.5]
    overtook = [r for r in upserts if r["arrived"] > slowed["arrived"] and r["time"] < slowed["time"]]
    assert len(overtook) >= 2, "later requests were sent and answered while the slow one was in flight"
    assert slowed is max(upserts, key=lambda r: r["time"])
    state = StateStore(config.state.url)
    try:
        assert state.record_ids(held) == held and len(held) == 600
        [run] = state.recent_runs(1)
        assert run.contacts_written == 600
    finally:
        state.close()


def test_one_contact_is_never_in_two_requests_in_flight_at_once() -> None:
    in_flight: Counter[str] = Counter()
    most: Counter[str] = Counter()
    lock = threading.Lock()
    recorded: list[tuple[str, int]] = []

    def send(item: tuple[str, int]) -> int:
        with lock:
            in_flight[item[0]] += 1
            most[item[0]] = max(most[item[0]], in_flight[item[0]])
        time.sleep(0.02)
        with lock:
            in_flight[item[0]] -= 1
        return item[1] * 10

    items = [("ada", 1), ("ada", 2), ("bob", 3), ("ada", 4), ("cy", 5), ("bob", 6)]
    send_all(items, send, lambda answered: recorded.extend((item[0], result) for item, result in answered),
             width=lambda: 6, stop=threading.Event(), key=lambda item: item[0])
    assert max(most.values()) == 1
    assert sorted(recorded) == sorted((name, n * 10) for name, n in items)
    assert [r for r in recorded if r[0] == "ada"] == [("ada", 10), ("ada", 20), ("ada", 40)]  # in order


def test_an_error_stops_sending_and_what_is_in_flight_is_still_recorded() -> None:
    recorded: list[int] = []
    sent: list[int] = []
    started = threading.Event()

    def send(item: int) -> int:
        sent.append(item)
        if item == 0:
            started.wait(1)
            raise RuntimeError("HubSpot did not answer")
        started.set()
        time.sleep(0.05)
        return item

    try:
        send_all(range(100), send, lambda answered: recorded.extend(result for _, result in answered), width=lambda: 3,
                 stop=threading.Event())
    except RuntimeError as error:
        assert str(error) == "HubSpot did not answer"
    else:
        raise AssertionError("the error was not raised")
    assert len(sent) < 10 and sorted(recorded) == sorted(item for item in sent if item != 0)


def test_sending_goes_on_while_answers_are_recorded_and_those_waiting_are_recorded_together() -> None:
    """A slow record holds no place in flight; the answers that came meanwhile are recorded in
    one call, and what is sent and not yet recorded stays within its bound, which it reaches."""
    lock = threading.Lock()
    sent: list[int] = []
    calls: list[list[int]] = []
    most_waiting = 0

    threads: set[str] = set()

    def send(item: int) -> int:
        with lock:
            sent.append(item)
            threads.add(threading.current_thread().name)
        time.sleep(0.01)
        return item

    def record(answered: list[tuple[int, int]]) -> None:
        nonlocal most_waiting
        time.sleep(0.1)
        with lock:
            most_waiting = max(most_waiting, len(sent) - sum(len(call) for call in calls))
        calls.append([result for _, result in answered])

    send_all(range(40), send, record, width=lambda: 3, stop=threading.Event())
    assert sorted(result for call in calls for result in call) == list(range(40))
    assert len(calls) < 40 and max(len(call) for call in calls) > 1
    assert len(sent) == 40 and most_waiting == HELD_PER_PLACE * 3
    assert len(threads) <= 2 * 3  # a worker goes on with the next item: no thread for each request


def test_items_that_cannot_be_read_halt_the_phase_with_that_error() -> None:
    """The items come from the state, read as they are sent (by whichever request thread has
    just had its answer): a failure there is the phase's error, never a silent end."""
    recorded: list[int] = []

    def items() -> Iterator[int]:
        yield from range(5)
        raise OSError("the state's disk went away")

    def send(item: int) -> int:
        time.sleep(0.02)
        return item

    with pytest.raises(OSError, match="disk went away"):
        send_all(items(), send, lambda answered: recorded.extend(result for _, result in answered),
                 width=lambda: 2, stop=threading.Event())
    assert sorted(recorded) == list(range(5))


def test_a_stop_sends_nothing_more_and_waits_for_what_is_in_flight() -> None:
    stop = threading.Event()
    recorded: list[int] = []

    def send(item: int) -> int:
        if item == 2:
            stop.set()
        time.sleep(0.05)
        return item

    send_all(range(50), send, lambda answered: recorded.extend(result for _, result in answered), width=lambda: 2,
             stop=stop)
    assert 3 <= len(recorded) < 50  # the journal's side of a stop: tests/test_crash_recovery.py


def test_a_first_syncs_properties_are_created_several_at_once(analytics: Analytics, tmp_path: Path) -> None:
    analytics.add_many(5, calls=3)
    with SandboxServer(token=TOKEN, latency=Latency(0.3)) as hubspot:
        config = paced_config(analytics, hubspot, tmp_path, 190, concurrency=4)
        summary = run_sync(config, dry_run=False)
        log = hubspot.store.request_log()
        held = hubspot.store.properties()
    created = [r for r in log if r["method"] == "POST" and r["path"] == api_path("/crm/v3/properties/contacts")]
    assert summary.outcome == RunOutcome.OK
    assert len(created) == len(property_specs(config)) > 4
    assert {spec.name for spec in property_specs(config)} <= set(held)
    assert most_in_flight(created) == 4  # as many as `concurrency`, never more


def test_a_property_created_whose_answer_was_lost_is_taken_as_made_not_refused(
    analytics: Analytics, tmp_path: Path
) -> None:
    """Creating a property is retried when its answer is lost; HubSpot made it, so the retry
    gets 409, which means it exists: the sync goes on, each property made once."""
    analytics.add_many(5, calls=3)
    with SandboxServer(token=TOKEN, latency=Latency(0.05)) as hubspot:
        config = paced_config(analytics, hubspot, tmp_path, 190, concurrency=4)
        group = {"name": config.hubspot.property_group, "label": "funnelsync", "displayOrder": -1}
        made = requests.post(f"{hubspot.url}{api_path('/crm/v3/properties/contacts')}/groups", json=group,
                             headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        assert made.status_code == 201  # so that the faults below meet property creations only
        hubspot.inject_fault("POST", api_path("/crm/v3/properties/contacts"), kind="reset_after", count=2)
        summary = run_sync(config, dry_run=False)
        log = hubspot.store.request_log()
        held = hubspot.store.properties()
    creations = Counter(r["status"] for r in log
                        if r["method"] == "POST" and r["path"] == api_path("/crm/v3/properties/contacts"))
    assert hubspot.faults.pending() == []
    assert summary.outcome == RunOutcome.OK and summary.written == 5
    assert creations[409] == 2  # the two retries found what their lost answers had made
    assert {spec.name for spec in property_specs(config)} <= set(held)


def test_auto_concurrency_is_what_the_rate_and_answer_time_need_plus_one_at_most_32() -> None:
    def wanted(limit: int, answer_seconds: float, concurrency: int = 0) -> int:
        api = HubSpotApi(HubSpotSettings(requests_per_10s=limit, concurrency=concurrency), TOKEN)
        api.budget.latency = answer_seconds
        return api.requests_wanted_in_flight()

    assert wanted(250, 0.82) == 22  # 25 a second x 0.82 s = 20.5 -> 21, + 1
    assert wanted(100, 0.3) == 4  # 10 x 0.3 = 3, + 1
    assert wanted(190, 0.0) == 1  # nothing measured yet: one, until an answer says how long they take
    assert wanted(250, 5.0) == 32
    assert wanted(250, 0.8, concurrency=3) == 3
