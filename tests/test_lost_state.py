"""A lost state: the next sync stops before writing anything, `plan` says so, and
`funnelsync state rebuild` reads the state back from HubSpot, so that nobody is enrolled twice
and every contact keeps the date it first entered each stage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from hubspot import Client
from hubspot.crm.contacts import Filter, FilterGroup, PublicObjectSearchRequest
from hubspot.crm.contacts.exceptions import ApiException

from funnelsync.cli.report import plan_text
from funnelsync.config import Config, parse_config
from funnelsync.connectors.hubspot import HubSpotCrm
from funnelsync.connectors.sql import SqlUsageSource
from funnelsync.errors import FatalError, RebuildRefused, StateLost
from funnelsync.sandbox import SandboxServer
from funnelsync.state import StateStore
from funnelsync.state.models import OperationKind
from funnelsync.state.records import RebuiltContact
from funnelsync.sync.engine import SyncEngine
from funnelsync.sync.rebuild import RebuildReport, StateRebuilder
from tests.conftest import TOKEN, TOKEN_ENV, Analytics, api_path, config_data
from tests.test_cli import funnelsync, write_toml
from tests.test_enrollment import (
    PRODUCTION_LIST,
    WORKFLOW,
    Clock,
    enrolling_config,
    members,
    sequence_enrollments,
    sync,
    workflow_enrollments,
)

ONBOARDING_LIST = "Onboarding: no API calls yet"
STAGE = "api_integration_stage"
ENTERED = tuple(f"{STAGE}_{stage}_entered_at" for stage in ("top", "middle", "bottom"))
REBUILD = "funnelsync state rebuild"


def with_state(config: Config, url: str) -> Config:
    return config.model_copy(update={"state": config.state.model_copy(update={"url": url})})


@pytest.fixture(params=["sqlite-deleted", "sqlite-empty-file", "postgresql-empty-schema"])
def loss(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """(how the state is lost, the state's URL)."""
    if request.param.startswith("sqlite"):
        return request.param, f"sqlite:///{tmp_path / 'state.db'}"
    return request.param, str(request.getfixturevalue("postgres_url"))


def lose_state(how: str, url: str) -> None:
    if how == "sqlite-deleted":
        Path(sa.make_url(url).database or "").unlink()
    elif how == "sqlite-empty-file":
        Path(sa.make_url(url).database or "").write_bytes(b"")
    else:
        engine = sa.create_engine(url)
        with engine.begin() as connection:
            connection.exec_driver_sql("DROP SCHEMA public CASCADE")
            connection.exec_driver_sql("CREATE SCHEMA public")
        engine.dispose()


def add_funnel(analytics: Analytics) -> None:
    analytics.add("top@example.com", calls=0, role="Sales")  # top: sequence
    analytics.add("quiet@example.com", calls=0, role="Engineering")  # top, and the segment's list
    analytics.add("middle@example.com", calls=10)  # middle: workflow
    analytics.add("mover@example.com", calls=10)  # middle, then bottom while the state is lost
    analytics.add("bottom@example.com", calls=5000)  # bottom: list


def entry_dates(sandbox: SandboxServer) -> dict[str, dict[str, str | None]]:
    return {email: {name: contact["properties"].get(name) for name in ENTERED}
            for email, contact in sandbox.store.contacts_by_email().items()}


def rebuild(config: Config, *, dry_run: bool, now: datetime | None = None,
            crm: HubSpotCrm | None = None) -> RebuildReport:
    state = StateStore(config.state.url)
    try:
        return StateRebuilder(config, SqlUsageSource(config.source), crm or HubSpotCrm(config.hubspot, TOKEN),
                              state, now=now).rebuild(dry_run=dry_run)
    finally:
        state.close()


def preview_text(config: Config) -> str:
    state = StateStore(config.state.url)
    try:
        engine = SyncEngine(config, SqlUsageSource(config.source), HubSpotCrm(config.hubspot, TOKEN), state)
        return plan_text(engine.sync(dry_run=True), config)
    finally:
        state.close()


def held_nothing(config: Config) -> bool:
    state = StateStore(config.state.url)
    try:
        return state.holds_nothing() and state.contact_count() == 0
    finally:
        state.close()


def test_after_a_lost_state_the_sync_stops_and_a_rebuild_enrolls_nobody_twice_and_keeps_entry_dates(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path, loss: tuple[str, str]
) -> None:
    how, url = loss
    config = with_state(enrolling_config(analytics, sandbox, tmp_path), url)
    clock = Clock()
    add_funnel(analytics)
    first = sync(config, clock)
    assert first.enrollments.done == {OperationKind.ENROLL_SEQUENCE: 2, OperationKind.ENROLL_WORKFLOW: 2,
                                      OperationKind.LIST_ADD: 2}
    original = entry_dates(sandbox)
    writes = sandbox.store.write_count()

    lose_state(how, url)
    clock.now += timedelta(days=3)
    with pytest.raises(StateLost) as stopped:
        sync(config, clock)
    assert isinstance(stopped.value, FatalError) and stopped.value.exit_status == 3
    assert REBUILD in str(stopped.value)
    assert sandbox.store.write_count() == writes  # nothing written, nobody enrolled

    assert ("the state is empty but HubSpot holds 5+ contacts with api_integration_stage: a sync would stop; "
            f"run `{REBUILD}`") in preview_text(config)

    dry = rebuild(config, dry_run=True, now=clock())
    assert len(dry.contacts) == 5 and held_nothing(config)
    assert sandbox.store.write_count() == writes

    report = rebuild(config, dry_run=False, now=clock())
    assert report.stages == {"top": 2, "middle": 2, "bottom": 1}
    assert report.segment_members == {"quiet_engineers": 1}

    analytics.set_calls("mover@example.com", 5000)  # moved on while the state was lost
    after = sync(config, clock)
    assert after.enrollments.done == {OperationKind.LIST_ADD: 1} and after.enrollments.failed == 0
    assert after.written == 1  # only the contact that moved: everything else HubSpot holds already
    assert workflow_enrollments(sandbox) == {"middle@example.com": 1, "mover@example.com": 1}
    assert sequence_enrollments(sandbox) == {"top@example.com": 1, "quiet@example.com": 1}
    assert members(sandbox, PRODUCTION_LIST) == {"bottom@example.com", "mover@example.com"}
    assert members(sandbox, ONBOARDING_LIST) == {"quiet@example.com"}
    now = entry_dates(sandbox)
    moved_in = clock().strftime("%Y-%m-%dT%H:%M:%S.000Z")  # as HubSpot answers a datetime
    assert now["mover@example.com"] == {**original["mover@example.com"], ENTERED[2]: moved_in}
    assert {e: d for e, d in now.items() if e != "mover@example.com"} == {
        e: d for e, d in original.items() if e != "mover@example.com"}

    again = sync(config, clock)
    assert again.enrollments.done == {} and again.written == 0


def segment_config(analytics: Analytics, sandbox: SandboxServer, tmp_path: Path) -> Config:
    """A segment HubSpot shows only by its workflow: no property, no list."""
    data = config_data(analytics, sandbox.url, tmp_path / "state.db")
    data["segments"] = [{"name": "stalled", "label": "Integrated, no calls now",
                         "when": "used_event_count == 0 && role == 'Engineering'",
                         "enroll": {"workflow_id": WORKFLOW}}]
    sandbox.add_workflow(WORKFLOW, "Re-engage")
    return parse_config(data)


def test_a_segment_seen_only_through_its_workflow_is_read_from_the_enrollments_of_its_members_only(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path
) -> None:
    config = segment_config(analytics, sandbox, tmp_path)
    analytics.add("ada@example.com", calls=0, role="Engineering")
    analytics.add("bob@example.com", calls=50)
    sync(config)
    assert workflow_enrollments(sandbox) == {"ada@example.com": 1}
    lose_state("sqlite-deleted", config.state.url)
    report = rebuild(config, dry_run=False)
    assert report.segment_members == {"stalled": 1}
    assert report.enrollment_lookups == 1  # bob is not in the segment: nothing to look up
    assert sync(config).enrollments.done == {}
    assert workflow_enrollments(sandbox) == {"ada@example.com": 1}


def test_rebuild_refuses_a_state_that_holds_contacts_and_a_second_rebuild(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path
) -> None:
    config = enrolling_config(analytics, sandbox, tmp_path)
    analytics.add("ada@example.com", calls=10)
    sync(config)
    with pytest.raises(RebuildRefused) as refused:
        rebuild(config, dry_run=True)
    assert refused.value.exit_status == 2 and "already holds contacts" in str(refused.value)
    lose_state("sqlite-deleted", config.state.url)
    rebuild(config, dry_run=False)
    with pytest.raises(RebuildRefused):
        rebuild(config, dry_run=False)


def test_a_rebuild_that_fails_midway_leaves_the_state_as_it_was(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path
) -> None:
    config = enrolling_config(analytics, sandbox, tmp_path)
    add_funnel(analytics)
    sync(config)
    lose_state("sqlite-deleted", config.state.url)
    sandbox.inject_fault(method="GET", path_prefix=api_path("/crm/v3/lists"), kind="status", status=503, count=50)
    with pytest.raises(FatalError):
        rebuild(config, dry_run=False, crm=HubSpotCrm(config.hubspot, TOKEN, sleep=lambda _: None))
    assert held_nothing(config)


def test_rebuilt_contacts_are_recorded_in_one_transaction(state_url: str) -> None:
    state = StateStore(state_url)
    at = datetime(2026, 11, 1, tzinfo=UTC)
    ada = RebuiltContact("ada@example.com", "1001", {STAGE: "top"}, "top", {"top": at}, frozenset({"quiet"}))
    try:
        with pytest.raises(sa.exc.IntegrityError):
            state.record_rebuilt_state([ada, ada], at)
        assert state.holds_nothing() and state.contact_count() == 0
        state.record_rebuilt_state([ada], at)
        [known] = state.known_contacts([ada.email]).values()
        assert (known.stage, dict(known.entries), known.segments) == ("top", {"top": at}, {"quiet"})
        assert not state.holds_nothing()
    finally:
        state.close()


def test_a_first_sync_into_a_portal_without_funnelsyncs_data_goes_ahead(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path
) -> None:
    config = enrolling_config(analytics, sandbox, tmp_path)
    analytics.add("ada@example.com", calls=10)
    assert "the state is empty" not in preview_text(config)
    assert sync(config).enrollments.done == {OperationKind.ENROLL_WORKFLOW: 1}
    state = StateStore(config.state.url)
    assert state.rebuilt_at() is None and state.contact_count() == 1
    state.close()


def cli_config(analytics: Analytics, sandbox: SandboxServer, tmp_path: Path) -> Path:
    data = config_data(analytics, sandbox.url, tmp_path / "state.db")
    stages = data["funnel"]["stages"]
    stages[1]["enroll"] = {"workflow_id": WORKFLOW}
    stages[2]["enroll"] = {"list": PRODUCTION_LIST}
    sandbox.add_workflow(WORKFLOW, "Sandbox nurture")
    path = write_toml(tmp_path / "config.toml", data)
    path.write_text(path.read_text() + '[[segments]]\nname = "quiet_engineers"\nlabel = "Engineers, no calls"\n'
                    "when = \"role == 'Engineering' && used_event_count == 0\"\n"
                    f'enroll = {{ list = "{ONBOARDING_LIST}" }}\nproperty = "in_quiet_engineers"\n')
    return path


def test_through_the_command_line_sync_exits_3_naming_the_rebuild_which_then_lets_it_sync(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path
) -> None:
    config_file = cli_config(analytics, sandbox, tmp_path)
    env = {TOKEN_ENV: TOKEN}
    add_funnel(analytics)
    assert funnelsync("-c", str(config_file), "sync", env=env).returncode == 0
    state_file = tmp_path / "state.db"
    state_file.unlink()
    writes = sandbox.store.write_count()

    checked = funnelsync("-c", str(config_file), "validate", env=env)
    assert checked.returncode == 3 and f"run `{REBUILD}`" in checked.stderr, checked.stderr
    assert not state_file.exists()  # validate only reads
    stopped = funnelsync("-c", str(config_file), "sync", env=env)
    assert stopped.returncode == 3, stopped.stderr
    assert f"run `{REBUILD}`" in stopped.stderr and "Traceback" not in stopped.stderr
    state_file.unlink()
    planned = funnelsync("-c", str(config_file), "plan", env=env)
    assert planned.returncode == 0 and "a sync would stop; run `funnelsync state rebuild`" in planned.stdout
    dry = funnelsync("-c", str(config_file), "state", "rebuild", "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    assert "would record 5 contacts" in dry.stdout and "quiet@example.com" in dry.stdout
    assert not state_file.exists() and sandbox.store.write_count() == writes

    rebuilt = funnelsync("-c", str(config_file), "state", "rebuild", env=env)
    assert rebuilt.returncode == 0 and "recorded 5 contacts" in rebuilt.stdout, rebuilt.stderr
    synced = funnelsync("-c", str(config_file), "sync", env=env)
    assert synced.returncode == 0, synced.stderr
    assert workflow_enrollments(sandbox) == {"middle@example.com": 1, "mover@example.com": 1}
    assert members(sandbox, ONBOARDING_LIST) == {"quiet@example.com"}
    again = funnelsync("-c", str(config_file), "state", "rebuild", env=env)
    assert again.returncode == 2 and "already holds contacts" in again.stderr


# -- the sandbox's search, as HubSpot answers it ---------------------------------------------------


def searching(sandbox: SandboxServer, body: dict[str, Any]) -> Any:
    client = Client.create(access_token=TOKEN, host=sandbox.url)
    request = PublicObjectSearchRequest(**body)
    return client.crm.contacts.search_api.do_search(request)


def test_the_sandbox_searches_with_has_property_and_eq_and_pages_with_a_total(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path
) -> None:
    config = enrolling_config(analytics, sandbox, tmp_path)
    analytics.add_many(5, calls=10, prefix="mid")
    analytics.add_many(2, calls=0, prefix="top")
    sync(config)
    has_stage = [FilterGroup(filters=[Filter(property_name=STAGE, operator="HAS_PROPERTY")])]
    first = searching(sandbox, {"filter_groups": has_stage, "limit": 3, "properties": ["email", STAGE]})
    assert first.total == 7 and len(first.results) == 3 and first.paging.next.after == "3"
    rest = searching(sandbox, {"filter_groups": has_stage, "limit": 3, "after": first.paging.next.after})
    last = searching(sandbox, {"filter_groups": has_stage, "limit": 3, "after": rest.paging.next.after})
    assert len(rest.results) == 3 and len(last.results) == 1 and last.paging is None
    top = [FilterGroup(filters=[Filter(property_name=STAGE, operator="EQ", value="top")])]
    found = searching(sandbox, {"filter_groups": top, "properties": [STAGE]})
    assert found.total == 2 and {r.properties[STAGE] for r in found.results} == {"top"}
    either = [top[0], FilterGroup(filters=[Filter(property_name=STAGE, operator="EQ", value="middle")])]
    assert searching(sandbox, {"filter_groups": either, "limit": 1}).total == 7


def test_the_sandbox_refuses_a_search_hubspot_would_refuse(sandbox: SandboxServer) -> None:
    unknown = [FilterGroup(filters=[Filter(property_name="no_such_property", operator="HAS_PROPERTY")])]
    for body in ({"filter_groups": unknown}, {"limit": 201},
                 {"filter_groups": [FilterGroup(filters=[])] * 6}):
        with pytest.raises(ApiException) as refused:
            searching(sandbox, body)
        assert refused.value.status == 400 and "VALIDATION_ERROR" in str(refused.value.body)
    raw = sandbox.url + api_path("/crm/v3/objects/contacts/search")
    answer = requests.post(raw, json={"filterGroups": [{"filters": [{"propertyName": "email", "operator": "LIKE"}]}]},
                           headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert answer.status_code == 400  # not an operator HubSpot's model knows
