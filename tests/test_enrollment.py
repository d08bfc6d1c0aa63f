"""Stages, segments and enrollment over real HTTP: each entry enrolls once, never twice."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from funnelsync.config import Config, parse_config
from funnelsync.connectors.hubspot import HubSpotCrm
from funnelsync.connectors.hubspot.automation import Automation
from funnelsync.connectors.sql import SqlUsageSource
from funnelsync.sandbox import SandboxServer
from funnelsync.state import StateStore
from funnelsync.state.models import OperationKind, OperationStatus, RunOutcome
from funnelsync.sync.engine import RunSummary, SyncEngine
from funnelsync.sync.enrollments import SENDS_PER_RUN
from tests.conftest import TOKEN, Analytics, api_path, config_data

WORKFLOW = 1234567
SEQUENCE = "5550001"
USER = "7701"
PRODUCTION_LIST = "API funnel: production"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 1, 12, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def enrolling_config(analytics: Analytics, sandbox: SandboxServer, tmp_path: Path, **funnel: Any) -> Config:
    data = config_data(analytics, sandbox.url, tmp_path / "state.db")
    stages = data["funnel"]["stages"]
    stages[0]["enroll"] = {"sequence": {"id": SEQUENCE, "sender_email": "devrel@example.com", "user_id": USER}}
    stages[1]["enroll"] = {"workflow_id": WORKFLOW}
    stages[2]["enroll"] = {"list": PRODUCTION_LIST}
    data["funnel"].update(funnel)
    data["segments"] = [{"name": "quiet_engineers", "label": "Engineers with no calls",
                         "when": "role == 'Engineering' && used_event_count == 0",
                         "enroll": {"list": "Onboarding: no API calls yet"}, "property": "in_quiet_engineers"}]
    sandbox.add_workflow(WORKFLOW, "Sandbox nurture")
    sandbox.add_sequence(SEQUENCE, USER, "Getting started")
    return parse_config(data)


def sync(config: Config, clock: Clock | None = None, crm: HubSpotCrm | None = None) -> RunSummary:
    state = StateStore(config.state.url)
    try:
        engine = SyncEngine(config, SqlUsageSource(config.source), crm or HubSpotCrm(config.hubspot, TOKEN),
                            state, now=clock or (lambda: datetime.now(UTC)))
        return engine.sync()
    finally:
        state.close()


def workflow_enrollments(sandbox: SandboxServer) -> Counter[str]:
    return Counter(email for _, email, _ in sandbox.store.workflow_enrollments())


def sequence_enrollments(sandbox: SandboxServer) -> Counter[str]:
    emails = {c["id"]: email for email, c in sandbox.store.contacts_by_email().items()}
    return Counter(emails[str(e["contactId"])] for e in sandbox.store.sequence_enrollments())


def members(sandbox: SandboxServer, name: str) -> set[str]:
    emails = {c["id"]: email for email, c in sandbox.store.contacts_by_email().items()}
    lists = sandbox.store.lists()
    return {emails[rid] for rid in lists[name]["members"]} if name in lists else set()


@pytest.fixture
def config(analytics: Analytics, sandbox: SandboxServer, tmp_path: Path) -> Config:
    return enrolling_config(analytics, sandbox, tmp_path)


def test_each_kind_of_enrollment_fires_once_on_entry_and_not_on_the_next_run(
    config: Config, analytics: Analytics, sandbox: SandboxServer
) -> None:
    analytics.add("top@example.com", calls=0, role="Sales")
    analytics.add("middle@example.com", calls=10)
    analytics.add("bottom@example.com", calls=5000)
    first = sync(config)
    assert first.enrollments.done == {OperationKind.ENROLL_SEQUENCE: 1, OperationKind.ENROLL_WORKFLOW: 1,
                                      OperationKind.LIST_ADD: 1}
    second = sync(config)
    assert second.enrollments.done == {}
    assert sequence_enrollments(sandbox) == {"top@example.com": 1}
    assert workflow_enrollments(sandbox) == {"middle@example.com": 1}
    assert members(sandbox, PRODUCTION_LIST) == {"bottom@example.com"}


def test_moving_forward_enrolls_in_each_stage_once(
    config: Config, analytics: Analytics, sandbox: SandboxServer
) -> None:
    analytics.add("ada@example.com", calls=0, role="Sales")
    sync(config)
    analytics.set_calls("ada@example.com", 50)
    sync(config)
    sync(config)
    analytics.set_calls("ada@example.com", 9000)
    sync(config)
    sync(config)
    assert sequence_enrollments(sandbox) == {"ada@example.com": 1}
    assert workflow_enrollments(sandbox) == {"ada@example.com": 1}
    assert members(sandbox, PRODUCTION_LIST) == {"ada@example.com"}
    props = sandbox.store.contacts_by_email()["ada@example.com"]["properties"]
    assert props["api_integration_stage"] == "bottom"
    assert props["api_integration_stage_top_entered_at"] < props["api_integration_stage_bottom_entered_at"]


def test_without_demote_after_days_a_contact_never_moves_back(
    config: Config, analytics: Analytics, sandbox: SandboxServer
) -> None:
    analytics.add("ada@example.com", calls=9000)
    sync(config)
    analytics.set_calls("ada@example.com", 0)
    for _ in range(3):
        sync(config)
    assert sandbox.store.contacts_by_email()["ada@example.com"]["properties"]["api_integration_stage"] == "bottom"
    assert members(sandbox, PRODUCTION_LIST) == {"ada@example.com"}


def test_demotion_waits_the_days_leaves_the_list_and_a_new_entry_enrolls_again(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path
) -> None:
    config = enrolling_config(analytics, sandbox, tmp_path, demote_after_days=7)
    clock = Clock()
    analytics.add("ada@example.com", calls=10)
    sync(config, clock)
    analytics.set_calls("ada@example.com", 9000)
    sync(config, clock)
    assert members(sandbox, PRODUCTION_LIST) == {"ada@example.com"}
    analytics.set_calls("ada@example.com", 10)  # back to sandbox traffic
    entered = clock.now
    for day in (1, 3, 7):  # first measured below on day 1
        clock.now = entered + timedelta(days=day)
        sync(config, clock)
        assert sandbox.store.contacts_by_email()["ada@example.com"]["properties"]["api_integration_stage"] == "bottom"
    clock.now = entered + timedelta(days=8)  # 7 days below the bound
    demoted = sync(config, clock)
    assert sandbox.store.contacts_by_email()["ada@example.com"]["properties"]["api_integration_stage"] == "middle"
    assert demoted.enrollments.done == {OperationKind.ENROLL_WORKFLOW: 1, OperationKind.LIST_REMOVE: 1}
    assert members(sandbox, PRODUCTION_LIST) == set()
    assert workflow_enrollments(sandbox) == {"ada@example.com": 2}  # re-entering middle is a new entry
    analytics.set_calls("ada@example.com", 9000)
    clock.now += timedelta(days=1)
    sync(config, clock)
    assert members(sandbox, PRODUCTION_LIST) == {"ada@example.com"}


class CrashAfterEnrolling(Automation):
    """HubSpot enrolls the contact, then the process dies before the state records it."""

    def enroll_in_workflow(self, workflow_id: int, email: str) -> None:
        super().enroll_in_workflow(workflow_id, email)
        raise KeyboardInterrupt("killed")


def test_a_crash_between_the_enrollment_call_and_its_record_does_not_enroll_twice(
    config: Config, analytics: Analytics, sandbox: SandboxServer
) -> None:
    analytics.add("ada@example.com", calls=10)
    crashing = HubSpotCrm(config.hubspot, TOKEN)
    crashing.enrollment = CrashAfterEnrolling(crashing.api)
    with pytest.raises(KeyboardInterrupt):
        sync(config, crm=crashing)
    assert workflow_enrollments(sandbox) == {"ada@example.com": 1}
    retry = sync(config)
    assert retry.enrollments.already_enrolled == 1
    assert workflow_enrollments(sandbox) == {"ada@example.com": 1}


def test_segment_list_membership_follows_the_data_both_ways(
    config: Config, analytics: Analytics, sandbox: SandboxServer
) -> None:
    analytics.add("ada@example.com", calls=0, role="Engineering")
    analytics.add("bob@example.com", calls=0, role="Sales")
    first = sync(config)
    assert first.segment_moves == {"entered quiet_engineers": 1}
    assert members(sandbox, "Onboarding: no API calls yet") == {"ada@example.com"}
    contacts = sandbox.store.contacts_by_email()
    assert contacts["ada@example.com"]["properties"]["in_quiet_engineers"] == "true"
    assert contacts["bob@example.com"]["properties"]["in_quiet_engineers"] == "false"
    analytics.set_calls("ada@example.com", 3)
    second = sync(config)
    assert second.segment_moves == {"left quiet_engineers": 1}
    assert members(sandbox, "Onboarding: no API calls yet") == set()
    assert sandbox.store.contacts_by_email()["ada@example.com"]["properties"]["in_quiet_engineers"] == "false"


def test_a_lists_adds_and_removes_of_one_run_go_in_one_call_each_however_the_journal_interleaves_them(
    config: Config, analytics: Analytics, sandbox: SandboxServer
) -> None:
    quiet = "Onboarding: no API calls yet"
    for i in range(8):
        analytics.add(f"dev{i}@example.com", calls=0, role="Engineering" if i % 2 else "Sales")
    sync(config)
    for i in range(8):  # the engineers leave the segment, the others enter it, alternating in the data
        analytics.set_role(f"dev{i}@example.com", "Sales" if i % 2 else "Engineering")
    before = len(answered_requests(sandbox, api_path("/crm/v3/lists")))
    second = sync(config)
    calls = [r["path"] for r in answered_requests(sandbox, api_path("/crm/v3/lists"))[before:]]
    assert second.segment_moves == {"entered quiet_engineers": 4, "left quiet_engineers": 4}
    assert members(sandbox, quiet) == {f"dev{i}@example.com" for i in range(0, 8, 2)}
    assert sorted(path.rpartition("/")[2] for path in calls if "/memberships/" in path) == ["add", "remove"]


def test_the_lists_a_run_changes_are_found_or_made_alongside_the_set_up_before_any_write(
    config: Config, analytics: Analytics, sandbox: SandboxServer
) -> None:
    analytics.add("bottom@example.com", calls=5000)
    analytics.add("quiet@example.com", calls=0, role="Engineering")
    first = sync(config)
    assert first.enrollments.done[OperationKind.LIST_ADD] == 2
    lists = answered_requests(sandbox, api_path("/crm/v3/lists"))
    found = [r for r in lists if "/memberships/" not in r["path"]]
    changed = [r for r in lists if "/memberships/" in r["path"]]
    upserts = answered_requests(sandbox, api_path("/crm/v3/objects/contacts/batch/upsert"))
    assert sorted(r["method"] for r in found) == ["GET", "GET", "POST", "POST"]  # each looked up, then made
    assert max(r["time"] for r in found) < min(r["arrived"] for r in upserts)
    assert len(changed) == 2 and min(r["arrived"] for r in changed) > max(r["time"] for r in upserts)
    assert members(sandbox, PRODUCTION_LIST) == {"bottom@example.com"}


def test_a_list_that_cannot_be_found_is_asked_for_once_and_its_changes_wait_for_the_next_run(
    config: Config, analytics: Analytics, sandbox: SandboxServer
) -> None:
    analytics.add("bottom@example.com", calls=5000)
    look_up = api_path("/crm/v3/lists/object-type-id/0-1/name/")
    sandbox.inject_fault(method="GET", path_prefix=look_up, kind="status", status=503, count=1000)
    first = sync(config, crm=HubSpotCrm(config.hubspot, TOKEN, sleep=lambda _: None))
    asked = [r for r in answered_requests(sandbox, look_up) if PRODUCTION_LIST in r["path"]]
    assert len(asked) == 6  # one look-up and its retries, in the set-up, and not again for its changes
    assert first.written == 1 and first.enrollments.failed == 1 and first.exit_status == 1
    assert "did not answer" in first.enrollments.halted
    sandbox.faults.clear()
    second = sync(config)
    assert second.enrollments.done == {OperationKind.LIST_ADD: 1}
    assert members(sandbox, PRODUCTION_LIST) == {"bottom@example.com"}


@pytest.mark.parametrize("fault", [{"kind": "reset_after"}, {"kind": "status_after", "status": 503},
                                   {"kind": "cut_after"}, {"kind": "status", "status": 503}],
                         ids=["applied-then-reset", "applied-then-5xx", "applied-then-cut", "5xx-before-applying"])
def test_a_list_whose_creation_went_unanswered_is_looked_up_before_it_is_made_again(
    fault: dict[str, Any], config: Config, analytics: Analytics, sandbox: SandboxServer
) -> None:
    """HubSpot refuses a second list of a name: a blind resend after a lost answer would fail the
    list's changes for the run. The list is looked up again, and made only if still missing."""
    analytics.add("bottom@example.com", calls=5000)
    sandbox.inject_fault(method="POST", path_prefix=api_path("/crm/v3/lists"), **fault)
    summary = sync(config, crm=HubSpotCrm(config.hubspot, TOKEN, sleep=lambda _: None))
    look_ups = [r for r in answered_requests(sandbox, api_path("/crm/v3/lists/object-type-id/0-1/name/"))
                if PRODUCTION_LIST in r["path"]]
    assert sandbox.faults.pending() == []
    assert (summary.outcome, summary.enrollments.failed) == (RunOutcome.OK, 0)
    assert [r["status"] for r in look_ups] == [404, 404 if fault["kind"] == "status" else 200]
    assert members(sandbox, PRODUCTION_LIST) == {"bottom@example.com"}


def test_funnel_timing_is_computed_from_signup_and_stage_entries(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path
) -> None:
    config = enrolling_config(analytics, sandbox, tmp_path, signup_column="signed_up_at")
    clock = Clock()  # 2026-11-01 12:00 UTC
    analytics.add("ada@example.com", calls=0, signed_up_at="2026-10-29T12:00:00")
    sync(config, clock)
    clock.now += timedelta(days=2, hours=12)  # first call 5.5 days after signup
    analytics.set_calls("ada@example.com", 20)
    sync(config, clock)
    clock.now += timedelta(days=10)  # production 15.5 days after signup
    analytics.set_calls("ada@example.com", 2000)
    sync(config, clock)
    props = sandbox.store.contacts_by_email()["ada@example.com"]["properties"]
    assert props["time_to_first_hello_world_days"] == "5.5"
    assert props["time_to_first_working_app_days"] == "15.5"
    # a contact that goes straight to production has one figure for both
    analytics.add("bob@example.com", calls=5000, signed_up_at="2026-11-10")
    sync(config, clock)
    bob = sandbox.store.contacts_by_email()["bob@example.com"]["properties"]
    assert bob["time_to_first_hello_world_days"] == bob["time_to_first_working_app_days"] == "4"


def test_a_workflow_that_does_not_exist_fails_the_enrollment_not_the_sync_and_is_retried(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path
) -> None:
    config = enrolling_config(analytics, sandbox, tmp_path)
    sandbox.reset()  # the portal has no such workflow or sequence
    analytics.add("ada@example.com", calls=10)
    first = sync(config)
    assert first.written == 1
    assert first.enrollments.failed == 1
    assert "does not exist" in first.enrollments.problems[f"workflow {WORKFLOW}"]
    sandbox.add_workflow(WORKFLOW, "Created later")
    second = sync(config)
    assert second.enrollments.done == {OperationKind.ENROLL_WORKFLOW: 1}
    assert workflow_enrollments(sandbox) == {"ada@example.com": 1}


def test_a_token_without_the_automation_scope_still_writes_contacts(
    analytics: Analytics, tmp_path: Path
) -> None:
    scopes = {"crm.objects.contacts.read", "crm.objects.contacts.write", "crm.schemas.contacts.read",
              "crm.schemas.contacts.write", "crm.lists.read", "crm.lists.write"}
    with SandboxServer(token=TOKEN, scopes=scopes) as portal:
        config = enrolling_config(analytics, portal, tmp_path)
        analytics.add("ada@example.com", calls=10)
        summary = sync(config)
        assert summary.written == 1 and summary.enrollments.failed == 1
        assert "automation" in summary.enrollments.problems[f"workflow {WORKFLOW}"]
        assert summary.exit_status == 1
        state = StateStore(config.state.url)
        [run] = state.recent_runs(1)
        assert run.outcome == RunOutcome.ENROLLMENTS_FAILED and "1 enrollment(s) failed" in run.message
        [failed] = state.failed_enrollments()
        assert (failed.email, failed.kind, failed.status) == (
            "ada@example.com", OperationKind.ENROLL_WORKFLOW, OperationStatus.PLANNED)
        assert "automation" in failed.last_error
        state.close()


def test_hubspot_not_answering_during_enrollment_leaves_the_rest_for_the_next_run(
    config: Config, analytics: Analytics, sandbox: SandboxServer
) -> None:
    for i in range(5):
        analytics.add(f"dev{i}@example.com", calls=10)
    sandbox.inject_fault(method="POST", path_prefix="/automation/v2/workflows", kind="status", status=503,
                         count=SENDS_PER_RUN)
    one_at_a_time = config.hubspot.model_copy(update={"concurrency": 1})  # the order of one contact's calls
    crm = HubSpotCrm(one_at_a_time, TOKEN, sleep=lambda _: None)
    first = sync(config, crm=crm)
    assert first.written == 5
    assert first.enrollments.halted and first.enrollments.failed == 1
    sent = [r["method"] for r in answered_requests(sandbox, "/automation/v2/workflows")]
    # a 5xx may follow an apply: each send but the first is preceded by a look at the contact
    assert sent == ["POST", "GET"] * (SENDS_PER_RUN - 1) + ["POST"]
    second = sync(config)
    assert second.enrollments.done == {OperationKind.ENROLL_WORKFLOW: 5}
    assert workflow_enrollments(sandbox) == {f"dev{i}@example.com": 1 for i in range(5)}


def answered_requests(sandbox: SandboxServer, prefix: str) -> list[dict[str, Any]]:
    return [r for r in sandbox.store.request_log() if str(r["path"]).startswith(prefix)]
