"""HubSpot as it is in 2026-27: the date-versioned API by default, the numbered paths only when
asked for, custom-event enrollment sent once per entry, and a portal's own validation rules."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from funnelsync.config import parse_config
from funnelsync.connectors.hubspot_settings import NEWEST_API_VERSION
from funnelsync.sandbox import SandboxServer
from funnelsync.sandbox.routes import ALL_SCOPES
from funnelsync.state.models import OperationKind, OperationStatus, RunOutcome
from funnelsync.state.store import StateStore
from funnelsync.sync.enrollments import event_uuid
from funnelsync.sync.run import run_sync
from tests.conftest import TOKEN, Analytics, config_data
from tests.test_cli import write_toml

SEQUENCE, SEQUENCE_USER = "5550001", "7701"
WORKFLOW = 1234567


def enrolling_config(analytics: Analytics, sandbox: SandboxServer, tmp_path: Path, version: str,
                     *, workflow: bool = False) -> dict[str, Any]:
    """Every way of enrolling: a sequence (top), a list or a workflow (middle), an event (bottom),
    and a segment with a list and a property."""
    data = config_data(analytics, sandbox.url, tmp_path / "state.db")
    data["hubspot"]["api_version"] = version
    top, middle, bottom = data["funnel"]["stages"]
    top["enroll"] = {"sequence": {"id": SEQUENCE, "sender_email": "devrel@example.com", "user_id": SEQUENCE_USER}}
    middle["enroll"] = {"workflow_id": WORKFLOW} if workflow else {"list": "API funnel: sandbox"}
    bottom["enroll"] = {"event": "entered_production"}
    data["segments"] = [{"name": "engineers", "label": "Engineers", "when": "role == 'Engineering'",
                         "enroll": {"list": "Engineers"}, "property": "in_engineers"}]
    sandbox.add_sequence(SEQUENCE, SEQUENCE_USER, "Welcome")
    sandbox.add_workflow(WORKFLOW, "Sandbox nurture")
    return data


def seed(analytics: Analytics) -> None:
    analytics.add("ada@example.com", calls=0)
    analytics.add("bob@example.com", calls=20)
    analytics.add("cy@example.com", calls=5000, role="Sales")
    analytics.add("di@example.com", calls=9000)


def funnelsync(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "funnelsync", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ})


def paths_of(sandbox: SandboxServer, version: str | None) -> set[str]:
    return {entry["path"] for entry in sandbox.store.request_log() if entry["version"] == version}


@pytest.mark.parametrize("version", ["2026-09", "2026-03", "legacy"])
def test_a_full_sync_calls_only_the_configured_version(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path, version: str
) -> None:
    seed(analytics)
    config = parse_config(enrolling_config(analytics, sandbox, tmp_path, version))
    summary = run_sync(config, dry_run=False)
    assert summary.outcome == RunOutcome.OK, summary

    used = sandbox.store.versions_used()
    assert set(used) == {version}, used
    called = " ".join(paths_of(sandbox, version))
    for part in ("contacts/batch/upsert", "properties", "lists", "memberships/add", "sequences", "/send"):
        assert part in called, f"no {part} call under {version}"
    state = sandbox.store
    assert {c["properties"].get("api_integration_stage") for c in state.contacts_by_email().values()} == \
        {"top", "middle", "bottom"}
    assert sorted(o["email"] for o in state.event_occurrences()) == ["cy@example.com", "di@example.com"]
    assert len(state.sequence_enrollments()) == 1


def test_under_a_date_version_only_the_v2_workflow_enrollment_is_numbered(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path
) -> None:
    seed(analytics)
    config = parse_config(enrolling_config(analytics, sandbox, tmp_path, NEWEST_API_VERSION, workflow=True))
    assert run_sync(config, dry_run=False).outcome == RunOutcome.OK

    numbered = paths_of(sandbox, "legacy")
    assert numbered == {f"/automation/v2/workflows/{WORKFLOW}/enrollments/contacts/bob@example.com"}
    assert [(workflow, email) for workflow, email, _ in sandbox.store.workflow_enrollments()] == \
        [(WORKFLOW, "bob@example.com")]


def test_validate_warns_of_v2_enrollment_and_legacy_paths_with_their_dates_and_says_what_it_cannot_check(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path
) -> None:
    seed(analytics)
    data = enrolling_config(analytics, sandbox, tmp_path, "legacy", workflow=True)
    result = funnelsync("-c", str(write_toml(tmp_path / "config.toml", data)), "validate")
    assert result.returncode == 0, result.stderr
    assert "warning: funnel.stages[1].enroll.workflow_id: direct enrollment uses HubSpot's v2 workflow API, " \
           "which HubSpot stops serving in September 2027" in result.stderr
    assert "warning: hubspot.api_version:" in result.stderr and "30 March 2027" in result.stderr
    assert "not checked: funnel.stages[2]: that a workflow enrolls on the custom event 'entered_production'" \
        in result.stdout
    assert "not checked: segments[0]: that a workflow enrolls on membership of the list 'Engineers'" in result.stdout
    assert sandbox.store.event_occurrences() == [] and not sandbox.store.contacts_by_email()

    synced = funnelsync("-c", str(tmp_path / "config.toml"), "sync")
    assert synced.returncode == 0, synced.stderr
    assert any('"config warning"' in line and "September 2027" in line for line in synced.stderr.splitlines())


def test_a_custom_event_is_defined_when_missing_and_sent_once_per_entry_across_reruns(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path
) -> None:
    seed(analytics)
    config = parse_config(enrolling_config(analytics, sandbox, tmp_path, NEWEST_API_VERSION))
    run_sync(config, dry_run=False)
    run_sync(config, dry_run=False)
    [definition] = sandbox.store.all_event_definitions()
    assert definition.name == "entered_production"

    occurrences = sandbox.store.event_occurrences()
    assert sorted(o["email"] for o in occurrences) == ["cy@example.com", "di@example.com"]
    assert all(o["eventName"] == f"pe{sandbox.portal_id}_entered_production" for o in occurrences)
    assert sandbox.store.dropped_event_occurrences() == []  # the rerun sent nothing


def test_an_event_whose_answer_was_lost_is_resent_with_the_same_uuid_and_kept_once(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path
) -> None:
    seed(analytics)
    config = parse_config(enrolling_config(analytics, sandbox, tmp_path, NEWEST_API_VERSION))
    sandbox.inject_fault("POST", sandbox_events_send(), kind="reset_after", count=2)
    assert run_sync(config, dry_run=False).outcome == RunOutcome.OK

    kept = {o["email"]: o["uuid"] for o in sandbox.store.event_occurrences()}
    dropped = [(o["email"], o["uuid"]) for o in sandbox.store.dropped_event_occurrences()]
    assert sorted(kept) == ["cy@example.com", "di@example.com"]
    assert len(dropped) == 2 and all(kept[email] == uuid for email, uuid in dropped)


def sandbox_events_send() -> str:
    return f"/events/custom/{NEWEST_API_VERSION}/send"


@pytest.mark.slow
def test_a_kill_9_while_an_event_is_in_flight_resends_it_with_the_same_uuid(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path
) -> None:
    seed(analytics)
    path = write_toml(tmp_path / "config.toml", enrolling_config(analytics, sandbox, tmp_path, NEWEST_API_VERSION))
    sandbox.inject_fault("POST", sandbox_events_send(), kind="late", delay=60, count=1)
    process = subprocess.Popen([sys.executable, "-m", "funnelsync", "-c", str(path), "sync"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while len(sandbox.store.event_occurrences()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # the answer that was not held back is recorded; the held one never will be
    os.kill(process.pid, signal.SIGKILL)
    process.wait()

    state = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    [in_flight] = [op for op in state.pending_enrollments() if op.kind == OperationKind.ENROLL_EVENT
                   and op.status == OperationStatus.STARTED]
    state.close()
    [applied] = [o for o in sandbox.store.event_occurrences() if o["email"] == in_flight.email]
    assert applied["uuid"] == event_uuid(in_flight.key)  # HubSpot holds it; the journal does not know

    sandbox.faults.clear()
    again = funnelsync("-c", str(path), "sync")
    assert again.returncode == 0, again.stderr
    kept = sandbox.store.event_occurrences()
    assert sorted(o["email"] for o in kept) == ["cy@example.com", "di@example.com"]
    assert applied["uuid"] in [o["uuid"] for o in sandbox.store.dropped_event_occurrences()]


def test_a_row_refused_by_the_portals_validation_rule_is_a_reject_retried_next_run(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path
) -> None:
    seed(analytics)
    data = enrolling_config(analytics, sandbox, tmp_path, "2026-09")
    path = write_toml(tmp_path / "config.toml", data)
    sandbox.add_validation_rule("developer_role", required_when={"api_integration_stage": "bottom"},
                                message="Developer role is required for production contacts")
    analytics.set_role("di@example.com", None)

    synced = funnelsync("-c", str(path), "sync")
    assert synced.returncode == 1, synced.stderr
    rejects = funnelsync("-c", str(path), "rejects")
    assert "di@example.com" in rejects.stdout
    assert "Developer role is required for production contacts" in rejects.stdout
    held = sandbox.store.contacts_by_email()
    assert "di@example.com" not in held and {"ada@example.com", "bob@example.com", "cy@example.com"} <= set(held)

    analytics.set_role("di@example.com", "Engineering")
    assert funnelsync("-c", str(path), "sync").returncode == 0
    assert "di@example.com" in sandbox.store.contacts_by_email()


def test_the_same_rule_is_not_enforced_under_2026_03(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path
) -> None:
    seed(analytics)
    config = parse_config(enrolling_config(analytics, sandbox, tmp_path, "2026-03"))
    sandbox.add_validation_rule("developer_role", required_when={"api_integration_stage": "bottom"})
    analytics.set_role("di@example.com", None)
    assert run_sync(config, dry_run=False).outcome == RunOutcome.OK
    assert "di@example.com" in sandbox.store.contacts_by_email()


def test_a_token_without_the_event_scopes_fails_only_the_event_enrollment_naming_the_scope(
    analytics: Analytics, tmp_path: Path
) -> None:
    scopes = {s for s in ALL_SCOPES if "behavioral_events" not in s}
    with SandboxServer(token=TOKEN, scopes=scopes) as sandbox:
        seed(analytics)
        path = write_toml(tmp_path / "config.toml", enrolling_config(analytics, sandbox, tmp_path, NEWEST_API_VERSION))
        checked = funnelsync("-c", str(path), "validate")
        assert checked.returncode == 2
        assert "funnel.stages[2].enroll: event entered_production:" in checked.stderr
        assert "behavioral_events.event_definitions.read_write" in checked.stderr
        synced = funnelsync("-c", str(path), "sync")
        assert synced.returncode == 1, synced.stderr
        assert len(sandbox.store.contacts_by_email()) == 4
        assert sandbox.store.event_occurrences() == []


def test_an_event_definition_whose_answer_was_lost_is_read_back_not_made_twice(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path
) -> None:
    seed(analytics)
    config = parse_config(enrolling_config(analytics, sandbox, tmp_path, NEWEST_API_VERSION))
    sandbox.inject_fault("POST", f"/events/custom/{NEWEST_API_VERSION}/event-definitions", kind="reset_after", count=1)
    assert run_sync(config, dry_run=False).outcome == RunOutcome.OK
    [definition] = sandbox.store.all_event_definitions()
    assert definition.name == "entered_production"
    assert sorted(o["email"] for o in sandbox.store.event_occurrences()) == ["cy@example.com", "di@example.com"]
