"""Kill -9 at random points: the next run finishes the job, nothing lost, nothing done twice.

A real `funnelsync sync` process is killed with SIGKILL at seeded random moments while it
syncs a few hundred contacts with enrollments into the sandbox, then started again; between
completed runs the data moves contacts forward through the funnel, so later runs make new
stage entries, list changes and enrollments. At the end the sandbox must hold exactly the
expected properties, stages, list memberships and enrollments, each enrollment once.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from funnelsync.sandbox import SandboxServer
from tests.conftest import TOKEN, TOKEN_ENV, Analytics, api_path, config_data
from tests.test_cli import write_toml

pytestmark = pytest.mark.slow

WORKFLOW = 1234567
SEQUENCE = "5550001"
USER = "7701"
PRODUCTION = "API funnel: production"
QUIET = "Quiet developers"
CALLS = {"top": 0, "middle": 40, "bottom": 4000}
NEXT = {"top": "middle", "middle": "bottom", "bottom": "bottom"}
STARTUP_SECONDS = 0.8
PHASES = {api_path("/crm/v3/properties/contacts"): "provisioning", api_path("/crm/v3/objects/contacts"): "writes",
          api_path("/crm/v3/lists"): "lists", "/automation": "enrollments"}
KILL_AIMS = ("provisioning", "writes", "lists", "enrollments", "anywhere")


def phase_of(path: str) -> str:
    phase = next((phase for prefix, phase in PHASES.items() if path.startswith(prefix)), "other")
    if phase == "lists" and "/memberships/" not in path:
        return "provisioning"  # a list's look-up and creation go beside the properties' set-up
    return phase


class Scenario:
    def __init__(self, tmp_path: Path, sandbox: SandboxServer, state_url: str, contacts: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.sandbox = sandbox
        self.analytics = Analytics(tmp_path / "analytics.db")
        self.stages: dict[str, str] = {}
        self.calls: dict[str, int] = {}
        self.history: dict[str, list[str]] = {}
        for i in range(contacts):
            email = f"dev{i}@example.com"
            stage = self.rng.choice(["top", "top", "middle", "bottom"])
            self.analytics.add(email, calls=CALLS[stage])
            self.stages[email] = stage
            self.calls[email] = CALLS[stage]
            self.history[email] = [stage]
        data = config_data(self.analytics, sandbox.url, tmp_path / "state.db")
        data["state"]["url"] = state_url
        data["hubspot"]["requests_per_10s"] = 250
        data["hubspot"]["concurrency"] = 8  # many requests in flight when the kill comes
        data["hubspot"]["batch_size"] = 20  # and enough batches that the writes last a while
        stages = data["funnel"]["stages"]
        stages[0]["enroll"] = {"sequence": {"id": SEQUENCE, "sender_email": "devrel@example.com", "user_id": USER}}
        stages[1]["enroll"] = {"workflow_id": WORKFLOW}
        stages[2]["enroll"] = {"list": PRODUCTION}
        self.config = write_toml(tmp_path / "config.toml", data)
        with self.config.open("a") as config:
            config.write(f'[[segments]]\nname = "quiet"\nlabel = "Quiet"\nwhen = "used_event_count == 0"\n'
                         f'enroll = {{ list = "{QUIET}" }}\n')
        sandbox.add_workflow(WORKFLOW, "Sandbox nurture")
        sandbox.add_sequence(SEQUENCE, USER, "Getting started")
        self.kill_phases: Counter[str] = Counter()
        self.runs_completed = 0

    def change_usage(self) -> None:
        """Some contacts move a stage forward (new entries, list moves, enrollments); others'
        usage changes within their stage (property writes only)."""
        for email, stage in self.stages.items():
            draw = self.rng.random()
            if stage != "bottom" and draw < 0.15:
                self.stages[email] = NEXT[stage]
                self.history[email].append(NEXT[stage])
            elif stage != "top" and draw < 0.5:
                self.calls[email] = CALLS[stage] + self.rng.randint(1, 900)
                self.analytics.set_calls(email, self.calls[email])
                continue
            else:
                continue
            self.calls[email] = CALLS[self.stages[email]]
            self.analytics.set_calls(email, self.calls[email])

    def start_sync(self, log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            return subprocess.Popen([sys.executable, "-m", "funnelsync", "-c", str(self.config), "sync"],
                                    stdout=out, stderr=subprocess.STDOUT, env={**os.environ, TOKEN_ENV: TOKEN})

    def phase_now(self) -> str:
        paths = self.sandbox.store.paths_since(0)
        return phase_of(paths[-1]) if paths else "starting"

    def kill_cycles(self, kills: int, log: Path, between_runs: Callable[[], None] = lambda: None) -> None:
        """Start syncs and kill each mid-run, until `kills` landed: as many kills aimed at each
        phase (right after its first request is answered), so that every phase gets kills however
        fast it runs, as at a random moment of a typical run. A run that finished first (or never
        reached the phase aimed at) is followed by new usage."""
        durations = [4.0]
        aimed: Counter[str] = Counter()
        for _ in range(kills * 5):
            if sum(self.kill_phases.values()) >= kills:
                return
            aim = min(KILL_AIMS, key=lambda phase: aimed[phase])  # the aim with fewest kills yet
            started = time.monotonic()
            seen = len(self.sandbox.store.paths_since(0))
            process = self.start_sync(log)
            typical = sorted(durations)[len(durations) // 2]
            if aim == "anywhere":
                time.sleep(self.rng.uniform(STARTUP_SECONDS, typical))
            elif self.wait_for_phase(aim, seen, process):
                time.sleep(self.rng.uniform(0, 0.01))
            if process.poll() is None:
                phase = self.phase_now()
                process.send_signal(signal.SIGKILL)
                process.wait()
                self.kill_phases[phase] += 1
                aimed[aim] += 1
                continue
            durations.append(time.monotonic() - started)
            assert process.returncode in (0, 1), log.read_text()[-3000:]
            self.runs_completed += 1
            self.change_usage()
            between_runs()
        raise AssertionError(f"only {sum(self.kill_phases.values())} kills landed mid-run")

    def wait_for_phase(self, phase: str, seen: int, process: subprocess.Popen[bytes]) -> bool:
        """Whether a request of `phase` was answered (after the first `seen`) before the run
        ended; a run without one (one that only finishes a killed run's journal) is let finish."""
        while process.poll() is None:
            if any(phase_of(path) == phase for path in self.sandbox.store.paths_since(seen)):
                return True
            time.sleep(0.005)
        return False

    def finish(self, log: Path) -> None:
        for _ in range(2):
            process = self.start_sync(log)
            assert process.wait(timeout=180) == 0, log.read_text()[-3000:]

    def check(self) -> None:
        contacts = self.sandbox.store.contacts_by_email()
        assert set(contacts) == set(self.stages)
        by_id = {c["id"]: email for email, c in contacts.items()}
        for email, stage in self.stages.items():
            properties = contacts[email]["properties"]
            assert properties["api_integration_stage"] == stage, email
            assert properties["used_event_count"] == str(self.calls[email]), email
        lists = self.sandbox.store.lists()
        assert {by_id[r] for r in lists[PRODUCTION]["members"]} == {e for e, s in self.stages.items() if s == "bottom"}
        quiet = lists.get(QUIET, {"members": set()})["members"]
        assert {by_id[r] for r in quiet} == {e for e, s in self.stages.items() if s == "top"}
        workflows = Counter(email for _, email, _ in self.sandbox.store.workflow_enrollments())
        assert workflows == Counter({e: 1 for e, h in self.history.items() if "middle" in h})
        sequences = Counter(by_id[str(s["contactId"])] for s in self.sandbox.store.sequence_enrollments())
        assert sequences == Counter({e: 1 for e, h in self.history.items() if "top" in h})


def run_scenario(tmp_path: Path, state_url: str, *, kills: int, seed: int,
                 faults: Callable[[SandboxServer, random.Random], None] | None = None) -> Scenario:
    with SandboxServer(token=TOKEN) as sandbox:
        scenario = Scenario(tmp_path, sandbox, state_url, contacts=400, seed=seed)
        for method in ("GET", "POST", "PUT"):  # slow enough that kills land in every phase
            sandbox.inject_fault(method=method, path_prefix="/", kind="slow", delay=0.004, count=10**6)
        log = tmp_path / "sync.log"
        inject = (lambda: faults(sandbox, scenario.rng)) if faults else (lambda: None)
        inject()
        scenario.kill_cycles(kills, log, between_runs=inject)
        sandbox.faults.clear()
        scenario.finish(log)
        scenario.check()
        print(f"kills by phase: {dict(scenario.kill_phases)}; runs completed between kills: "
              f"{scenario.runs_completed}")
        assert {"writes", "lists", "enrollments"} <= set(scenario.kill_phases), scenario.kill_phases
        return scenario


def test_kill_9_at_50_random_points_loses_nothing_and_enrolls_no_one_twice(tmp_path: Path) -> None:
    run_scenario(tmp_path, f"sqlite:///{tmp_path / 'state.db'}", kills=50, seed=20261122)


def test_kill_9_with_the_sandbox_failing_too(tmp_path: Path) -> None:
    def faults(sandbox: SandboxServer, rng: random.Random) -> None:
        for method in ("GET", "POST", "PUT"):
            for _ in range(2):
                sandbox.inject_fault(method=method, path_prefix="/", kind=rng.choice(["status", "reset"]),
                                     status=rng.choice([429, 500, 503]))

    run_scenario(tmp_path, f"sqlite:///{tmp_path / 'state.db'}", kills=20, seed=7, faults=faults)


def test_kill_9_with_the_state_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    run_scenario(tmp_path, postgres_url, kills=20, seed=11)


def test_the_check_catches_an_enrollment_made_twice(tmp_path: Path) -> None:
    """So that the kill tests above can fail."""
    with SandboxServer(token=TOKEN) as sandbox:
        scenario = Scenario(tmp_path, sandbox, f"sqlite:///{tmp_path / 'state.db'}", contacts=20, seed=3)
        scenario.finish(tmp_path / "sync.log")
        scenario.check()
        middle = next(e for e, h in scenario.history.items() if "middle" in h)
        again = requests.post(f"{sandbox.url}/automation/v2/workflows/{WORKFLOW}/enrollments/contacts/{middle}",
                              headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        assert again.status_code == 204
        with pytest.raises(AssertionError):
            scenario.check()
