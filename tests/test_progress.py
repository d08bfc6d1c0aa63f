"""Progress a person can act on: each phase with its counts and the time left, which is never
less than what the rate budget allows for the requests still to send."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from funnelsync.sandbox import SandboxServer
from funnelsync.sync.progress import PhaseClock, PhaseProgress
from tests.conftest import Analytics, config_data
from tests.test_cli import write_toml


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_time_left_follows_the_rate_seen_so_far() -> None:
    clock, seen = Clock(), list[PhaseProgress]()
    phase = PhaseClock("writing contacts", 10_000, seen.append, per_request=100, requests_per_second=100.0,
                       clock=clock)
    assert phase.now().seconds_left is None  # nothing done yet: no guess
    clock.now = 10.0
    phase.advance(1_000)
    assert seen[-1].seconds_left == 90.0  # 1,000 in 10 s: 9,000 more take 90 s


def test_the_time_left_is_never_less_than_the_budget_allows() -> None:
    clock = Clock()
    phase = PhaseClock("enrolling", 1_000, None, per_request=1, requests_per_second=9.0, clock=clock)
    clock.now = 1.0
    phase.advance(100)  # a burst went out fast: the budget, 9 a second, paces the other 900
    assert phase.now().seconds_left == 100.0


def test_a_sync_off_a_terminal_logs_each_phase_with_its_counts_and_time_left(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path
) -> None:
    for i in range(150):
        analytics.add(f"dev{i}@example.com", calls=10 if i % 2 else 0)
    data = config_data(analytics, sandbox.url, tmp_path / "state.db")
    data["funnel"]["stages"][1]["enroll"] = {"list": "Sandbox developers"}
    data["funnel"]["stages"][0]["enroll"] = {"event": "signed_up"}
    path = write_toml(tmp_path / "config.toml", data)
    synced = subprocess.run([sys.executable, "-m", "funnelsync", "-c", str(path), "sync"], capture_output=True,
                            text=True, timeout=120, env={**os.environ})
    assert synced.returncode == 0, synced.stderr
    lines = [json.loads(line) for line in synced.stderr.splitlines() if line.startswith("{")]
    last = {line["phase"]: line for line in lines if line.get("event") == "progress"}
    assert last["writing contacts"]["done"] == last["writing contacts"]["total"] == 150
    assert last["changing lists"]["done"] == last["changing lists"]["total"] == 75
    assert last["enrolling"]["done"] == last["enrolling"]["total"] == 75
    assert all("seconds_left" in line for line in last.values())
