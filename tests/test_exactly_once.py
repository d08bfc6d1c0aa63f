"""Exactly once under the faults a network makes: every kind of HubSpot call, every way its
answer can go wrong, on both state backends, over real HTTP against the sandbox.

A call that is not idempotent (workflow and sequence enrollment) whose answer is lost is
settled against the contact's enrollments before it is sent again; idempotent calls (upserts,
list membership) are simply resent. Either way the sandbox ends exactly right.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from funnelsync.config import Config, parse_config
from funnelsync.connectors.hubspot import HubSpotCrm
from funnelsync.connectors.sql import SqlUsageSource
from funnelsync.sandbox import SandboxServer
from funnelsync.state import StateStore
from funnelsync.state.models import OperationKind, OperationStatus, RunOutcome
from funnelsync.sync.engine import RunSummary, SyncEngine
from funnelsync.sync.enrollments import SENDS_PER_RUN
from tests.conftest import TOKEN, TOKEN_ENV, Analytics, api_path, config_data
from tests.test_cli import free_port, wait_for, write_toml

WORKFLOW = 1234567
SEQUENCE = "5550001"
USER = "7701"
PRODUCTION = "API funnel: production"
ONBOARDING = "Onboarding: no API calls yet"
PER_STAGE = 20

# call kind -> (method, path prefix, every n-th call, faults in all): enrollments go one call a
# contact, so every 4th of them; the batched calls are few, so the first ones. Requests in flight
# come in any order, so an enrollment lost before HubSpot applied it can be resent into each fault
# that follows: fewer than SENDS_PER_RUN keeps it within one run (giving up is test_enrollment's)
ENROLLMENT_FAULTS = SENDS_PER_RUN - 1
CALLS = {
    "upsert": ("POST", api_path("/crm/v3/objects/contacts/batch/upsert"), 1, 2),
    "list_add": ("PUT", api_path("/crm/v3/lists/*/memberships/add"), 1, 2),
    "list_remove": ("PUT", api_path("/crm/v3/lists/*/memberships/remove"), 1, 2),
    "workflow": ("POST", "/automation/v2/workflows/", 4, ENROLLMENT_FAULTS),
    "sequence": ("POST", api_path("/automation/v4/sequences/enrollments"), 4, ENROLLMENT_FAULTS),
}
TIMEOUT = 1.5  # the client's read timeout: the "late" faults wait it out; an ordinary answer under load never
FAULTS: dict[str, dict[str, Any]] = {
    "reset-before-applying": {"kind": "reset"},
    "applied-then-reset": {"kind": "reset_after"},
    "applied-then-answered-after-the-timeout": {"kind": "late", "delay": TIMEOUT * 3},
    "applied-then-5xx": {"kind": "status_after", "status": 503},
    "applied-then-cut-mid-body": {"kind": "cut_after"},
    "429": {"kind": "status", "status": 429},
}


def enrolling_data(analytics: Analytics, sandbox: SandboxServer, state_url: str) -> dict[str, Any]:
    data = config_data(analytics, sandbox.url, Path("unused"))
    data["state"]["url"] = state_url
    data["hubspot"]["timeout_seconds"] = TIMEOUT
    data["hubspot"]["concurrency"] = 8  # faults land while other requests are in flight
    stages = data["funnel"]["stages"]
    stages[0]["enroll"] = {"sequence": {"id": SEQUENCE, "sender_email": "devrel@example.com", "user_id": USER}}
    stages[1]["enroll"] = {"workflow_id": WORKFLOW}
    stages[2]["enroll"] = {"list": PRODUCTION}
    data["segments"] = [{"name": "quiet_engineers", "label": "Engineers with no calls",
                         "when": "role == 'Engineering' && used_event_count == 0", "enroll": {"list": ONBOARDING}}]
    sandbox.add_workflow(WORKFLOW, "Sandbox nurture")
    sandbox.add_sequence(SEQUENCE, USER, "Getting started")
    return data


def add_developers(analytics: Analytics) -> dict[str, list[str]]:
    return {"top": analytics.add_many(PER_STAGE, calls=0, prefix="top"),
            "middle": analytics.add_many(PER_STAGE, calls=10, prefix="middle"),
            "bottom": analytics.add_many(PER_STAGE, calls=5000, prefix="bottom")}


def quiet_engineers_become_sales(analytics: Analytics) -> None:
    with sqlite3.connect(analytics.path) as db:
        db.execute("UPDATE usage SET role = 'Sales' WHERE used_event_count = 0")


def sync(config: Config) -> RunSummary:
    state = StateStore(config.state.url)
    crm = HubSpotCrm(config.hubspot, TOKEN, rate_limit_wait=0.05, sleep=lambda seconds: time.sleep(min(seconds, 0.05)))
    try:
        return SyncEngine(config, SqlUsageSource(config.source), crm, state).sync()
    finally:
        state.close()


def emails_by_record_id(sandbox: SandboxServer) -> dict[str, str]:
    return {contact["id"]: email for email, contact in sandbox.store.contacts_by_email().items()}


def workflow_enrollments(sandbox: SandboxServer) -> Counter[str]:
    return Counter(email for _, email, _ in sandbox.store.workflow_enrollments())


def sequence_enrollments(sandbox: SandboxServer) -> Counter[str]:
    emails = emails_by_record_id(sandbox)
    return Counter(emails[str(e["contactId"])] for e in sandbox.store.sequence_enrollments())


def members(sandbox: SandboxServer, name: str) -> set[str]:
    emails = emails_by_record_id(sandbox)
    lists = sandbox.store.lists()
    return {emails[rid] for rid in lists[name]["members"]} if name in lists else set()


def assert_exactly_right(sandbox: SandboxServer, developers: dict[str, list[str]]) -> None:
    contacts = sandbox.store.contacts_by_email()
    assert {email: c["properties"]["api_integration_stage"] for email, c in contacts.items()} == {
        email: stage for stage, emails in developers.items() for email in emails}
    assert workflow_enrollments(sandbox) == dict.fromkeys(developers["middle"], 1)
    assert sequence_enrollments(sandbox) == dict.fromkeys(developers["top"], 1)
    assert members(sandbox, PRODUCTION) == set(developers["bottom"])


@pytest.mark.slow
@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("call", CALLS)
def test_every_fault_on_every_call_ends_exactly_right_with_each_enrollment_once(
    call: str, fault: str, analytics: Analytics, sandbox: SandboxServer, state_url: str
) -> None:
    config = parse_config(enrolling_data(analytics, sandbox, state_url))
    developers = add_developers(analytics)
    method, path, every, count = CALLS[call]

    def inject() -> None:
        sandbox.inject_fault(method=method, path_prefix=path, every=every, count=count, **FAULTS[fault])

    if call != "list_remove":
        inject()
    first = sync(config)
    assert members(sandbox, ONBOARDING) == set(developers["top"])
    quiet_engineers_become_sales(analytics)  # they leave the segment: its list loses them
    if call == "list_remove":
        inject()
    second = sync(config)

    assert sandbox.faults.pending() == []  # every fault was met
    assert (first.outcome, second.outcome) == (RunOutcome.OK, RunOutcome.OK)
    assert_exactly_right(sandbox, developers)
    assert members(sandbox, ONBOARDING) == set()
    if call in ("workflow", "sequence") and fault != "429":
        assert first.enrollments.answers_lost == count
        assert first.enrollments.already_enrolled == (0 if fault == "reset-before-applying" else count)


def test_a_lost_answer_after_a_crash_is_settled_before_it_is_sent_again(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path
) -> None:
    """Every 4th enrollment applied and its answer dropped, then the process killed while HubSpot
    hangs: the real CLI, and the next run settles what was in flight."""
    data = enrolling_data(analytics, sandbox, f"sqlite:///{tmp_path / 'state.db'}")
    config_path = write_toml(tmp_path / "config.toml", data)
    developers = add_developers(analytics)
    for _, path, _, _ in (CALLS["workflow"], CALLS["sequence"]):
        sandbox.inject_fault(method="POST", path_prefix=path, kind="reset_after", every=4, count=4)
    result = subprocess.run([sys.executable, "-m", "funnelsync", "-c", str(config_path), "sync"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert sandbox.faults.pending() == []
    assert_exactly_right(sandbox, developers)
    assert "found already made: 8" in result.stdout


def sigterm_config(analytics: Analytics, sandbox: SandboxServer, tmp_path: Path, **daemon: Any) -> Path:
    data = enrolling_data(analytics, sandbox, f"sqlite:///{tmp_path / 'state.db'}")
    data["hubspot"]["timeout_seconds"] = 300  # HubSpot hangs for longer than any grace period
    data["daemon"] = {"stop_grace_seconds": 4, **daemon}
    return write_toml(tmp_path / "config.toml", data)


def hang_on_the_third_enrollment(sandbox: SandboxServer) -> None:
    sandbox.inject_fault(method="POST", path_prefix=CALLS["workflow"][1], kind="slow", delay=0, count=2)
    sandbox.inject_fault(method="POST", path_prefix=CALLS["workflow"][1], kind="late", delay=600)


def enrollments_begun(sandbox: SandboxServer) -> bool:
    return len(sandbox.store.workflow_enrollments()) >= 3


def state_after(tmp_path: Path) -> StateStore:
    return StateStore(f"sqlite:///{tmp_path / 'state.db'}")


@pytest.mark.parametrize("command", ["sync", "run"])
def test_sigterm_while_hubspot_hangs_stops_within_the_grace_and_the_next_run_settles_it(
    command: str, analytics: Analytics, sandbox: SandboxServer, tmp_path: Path
) -> None:
    port = free_port()
    config_path = sigterm_config(analytics, sandbox, tmp_path, schedule="0 0 1 1 *", http=f"127.0.0.1:{port}")
    developers = add_developers(analytics)
    hang_on_the_third_enrollment(sandbox)
    log_path = tmp_path / "process.log"
    with log_path.open("w") as log:
        process = subprocess.Popen([sys.executable, "-m", "funnelsync", "-c", str(config_path), command],
                                   stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: enrollments_begun(sandbox), timeout=60)
            time.sleep(0.3)  # the third enrollment is in flight, its answer 600 s away
            asked = time.monotonic()
            process.send_signal(signal.SIGTERM)
            status = process.wait(timeout=30)
            took = time.monotonic() - asked
        finally:
            if process.poll() is None:
                process.kill()
    logs = log_path.read_text()
    assert status == 128 + signal.SIGTERM, logs
    assert took < 4 + 1.5, logs  # the grace, and the time to exit
    assert "Traceback" not in logs
    state = state_after(tmp_path)
    [run] = state.recent_runs(1)
    assert run.outcome == RunOutcome.STOPPED and "in flight" in run.message
    [in_flight] = [op for op in state.pending_enrollments() if op.status == OperationStatus.STARTED]
    state.close()
    assert in_flight.kind == OperationKind.ENROLL_WORKFLOW

    sandbox.faults.clear()
    again = subprocess.run([sys.executable, "-m", "funnelsync", "-c", str(config_path), "sync"],
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert "found already made: 1" in again.stdout
    assert_exactly_right(sandbox, developers)


def test_a_stop_waits_out_no_rate_limit_pause(analytics: Analytics, sandbox: SandboxServer, tmp_path: Path) -> None:
    """429s without end: a run asked to stop does not sit out the 10-minute patience."""
    config_path = sigterm_config(analytics, sandbox, tmp_path)
    add_developers(analytics)
    sandbox.inject_fault(method="POST", path_prefix=CALLS["upsert"][1], kind="status", status=429, count=10**6)
    process = subprocess.Popen([sys.executable, "-m", "funnelsync", "-c", str(config_path), "sync"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: any(r["status"] == 429 for r in sandbox.store.request_log()), timeout=60)
        asked = time.monotonic()
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
        took = time.monotonic() - asked
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 128 + signal.SIGTERM, output
    assert took < 2.5, output  # well inside the grace: the wait itself was cut short
    state = state_after(tmp_path)
    [run] = state.recent_runs(1)
    state.close()
    assert run.outcome == RunOutcome.STOPPED


def test_a_stop_between_enrollments_is_recorded_stopped_not_ok(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path
) -> None:
    config_path = sigterm_config(analytics, sandbox, tmp_path)
    developers = add_developers(analytics)
    sandbox.inject_fault(method="POST", path_prefix=CALLS["workflow"][1], kind="slow", delay=0.5, count=10**6)
    process = subprocess.Popen([sys.executable, "-m", "funnelsync", "-c", str(config_path), "sync"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: len(sandbox.store.workflow_enrollments()) >= 2, timeout=60)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 128 + signal.SIGTERM, output
    assert "stopped early on request" in output
    state = state_after(tmp_path)
    [run] = state.recent_runs(1)
    left = [op for op in state.pending_enrollments() if op.kind == OperationKind.ENROLL_WORKFLOW]
    state.close()
    assert run.outcome == RunOutcome.STOPPED and "stopped on request" in run.message
    assert left and all(op.status == OperationStatus.PLANNED for op in left)  # the one in flight was answered
    sandbox.faults.clear()
    again = subprocess.run([sys.executable, "-m", "funnelsync", "-c", str(config_path), "sync"],
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert_exactly_right(sandbox, developers)


def test_enrollments_into_a_missing_workflow_fail_the_run_with_exit_1_and_are_listed_by_rejects(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path
) -> None:
    data = enrolling_data(analytics, sandbox, f"sqlite:///{tmp_path / 'state.db'}")
    data["funnel"]["stages"][1]["enroll"] = {"workflow_id": 999}
    config_path = write_toml(tmp_path / "config.toml", data)
    analytics.add_many(3, calls=10)

    def funnelsync(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "funnelsync", "-c", str(config_path), *args],
                              capture_output=True, text=True, timeout=120)

    synced = funnelsync("sync")
    assert synced.returncode == 1, synced.stderr
    listed = funnelsync("rejects")
    assert listed.returncode == 0
    assert "3 failed enrollment(s), retried next run" in listed.stdout
    assert "dev0@example.com enroll workflow 999: workflow 999 does not exist" in listed.stdout
    state = state_after(tmp_path)
    [run] = state.recent_runs(1)
    state.close()
    assert run.outcome == RunOutcome.ENROLLMENTS_FAILED and run.contacts_written == 3
    assert funnelsync("sync").returncode == 1  # tried again, still failing: still said


def test_debug_adds_the_traceback_and_keeps_the_exit_status(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path
) -> None:
    data = enrolling_data(analytics, sandbox, f"sqlite:///{tmp_path / 'state.db'}")
    config_path = write_toml(tmp_path / "config.toml", data)
    analytics.add_many(1)
    result = subprocess.run([sys.executable, "-m", "funnelsync", "-c", str(config_path), "--debug", "sync"],
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, TOKEN_ENV: "not-the-token"})
    assert result.returncode == 3
    assert "Traceback" in result.stderr and "CredentialsError" in result.stderr
    assert "not-the-token" not in result.stderr + result.stdout


def test_hubspots_already_enrolled_settles_an_enrollment_as_done_unless_it_is_another_sequence(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path
) -> None:
    config = parse_config(enrolling_data(analytics, sandbox, f"sqlite:///{tmp_path / 'state.db'}"))
    for email in ("ada@example.com", "bob@example.com", "cy@example.com"):
        analytics.add(email, calls=0, role="Sales")
    other = sandbox.add_sequence("5550002", USER, "Another sequence")
    by_hand = {"ada@example.com": sandbox.store.sequence(SEQUENCE), "bob@example.com": other}
    for email, sequence in by_hand.items():  # enrolled in HubSpot by hand before funnelsync saw them
        assert sequence is not None
        contact, _ = sandbox.store.write_contact(email, {})
        sandbox.store.enroll_in_sequence(sequence, contact, "devrel@example.com", USER)

    first = sync(config)
    assert (first.enrollments.already_enrolled, first.enrollments.done, first.enrollments.failed) == (
        1, {OperationKind.ENROLL_SEQUENCE: 1}, 1)
    assert first.outcome == RunOutcome.ENROLLMENTS_FAILED
    assert sequence_enrollments(sandbox) == {"ada@example.com": 1, "bob@example.com": 1, "cy@example.com": 1}
    state = StateStore(config.state.url)
    [failed] = state.failed_enrollments()
    state.close()
    assert failed.email == "bob@example.com" and "already enrolled in sequence 5550002" in failed.last_error
