"""A sync end to end: SQL source -> real hubspot-api-client -> sandbox over real HTTP -> state."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from funnelsync.cli.runner import run_sync
from funnelsync.config import Config, parse_config
from funnelsync.errors import ConfigError, CredentialsError, FatalError
from funnelsync.sandbox import SandboxServer
from funnelsync.state import StateStore
from funnelsync.state.models import RunOutcome
from funnelsync.sync import planner as plan_module
from funnelsync.sync.planner import Planner
from funnelsync.sync.shutdown import Shutdown
from tests.conftest import Analytics, api_path, config_data

UPSERT = "/crm/v3/objects/contacts/batch/upsert"


def upserts(sandbox: SandboxServer) -> list[dict[str, object]]:
    return [r for r in sandbox.store.request_log() if r["path"] == api_path(UPSERT)]


def state_of(config: Config) -> StateStore:
    return StateStore(config.state.url)


def test_first_sync_writes_every_contact_with_its_properties_and_stage(
    config: Config, analytics: Analytics, sandbox: SandboxServer
) -> None:
    analytics.add("  Ada@Example.com ", role="Engineering", calls=0, signed_up_at="2026-01-15")
    analytics.add(
        "grace@example.com", role="product", calls=250, last_event_at="2026-11-20T08:30:00"
    )
    analytics.add("linus@example.com", role="Sales", calls=5000)

    summary = run_sync(config, dry_run=False)

    assert (summary.written, summary.rejected, summary.exit_status) == (3, 0, 0)
    contacts = sandbox.store.contacts_by_email()
    assert set(contacts) == {"ada@example.com", "grace@example.com", "linus@example.com"}
    ada = contacts["ada@example.com"]["properties"]
    assert ada["api_integration_stage"] == "top"
    assert ada["used_event_count"] == "0"
    assert ada["developer_role"] == "Engineering"
    assert ada["api_signed_up_at"] in (
        "2026-01-15",
        str(int(datetime(2026, 1, 15, tzinfo=UTC).timestamp() * 1000)),
    )
    grace = contacts["grace@example.com"]["properties"]
    assert grace["api_integration_stage"] == "middle"
    assert grace["developer_role"] == "Product"
    assert grace["last_api_call_at"].startswith("2026-11-20T08:30:00") or grace[
        "last_api_call_at"
    ] == str(int(datetime(2026, 11, 20, 8, 30, tzinfo=UTC).timestamp() * 1000))
    assert contacts["linus@example.com"]["properties"]["api_integration_stage"] == "bottom"


def test_the_stage_property_is_created_as_an_enumeration_of_the_stages(
    config: Config, analytics: Analytics, sandbox: SandboxServer
) -> None:
    analytics.add("ada@example.com")
    run_sync(config, dry_run=False)
    stage = sandbox.store.properties()["api_integration_stage"]
    assert (stage["type"], stage["fieldType"], stage["groupName"]) == (
        "enumeration",
        "select",
        "funnelsync",
    )
    assert [(o["value"], o["label"]) for o in stage["options"]] == [
        ("top", "Not yet integrated"),
        ("middle", "Integrated in sandbox"),
        ("bottom", "Integrated in production"),
    ]
    assert sandbox.store.properties()["used_event_count"]["type"] == "number"
    assert "funnelsync" in sandbox.store.groups()


def test_second_sync_over_unchanged_data_writes_nothing(
    config: Config, analytics: Analytics, sandbox: SandboxServer
) -> None:
    analytics.add_many(250, calls=10)
    run_sync(config, dry_run=False)
    assert len(upserts(sandbox)) == 3

    second = run_sync(config, dry_run=False)

    assert (second.written, second.unchanged, second.to_write) == (0, 250, 0)
    assert len(upserts(sandbox)) == 3


def test_changing_one_contacts_usage_writes_exactly_that_contact(
    config: Config, analytics: Analytics, sandbox: SandboxServer
) -> None:
    emails = analytics.add_many(150, calls=10)
    run_sync(config, dry_run=False)
    before = len(upserts(sandbox))
    analytics.set_calls(emails[42], 4000)

    summary = run_sync(config, dry_run=False)

    assert summary.written == 1
    assert len(upserts(sandbox)) == before + 1
    contact = sandbox.store.contacts_by_email()[emails[42]]["properties"]
    assert (contact["used_event_count"], contact["api_integration_stage"]) == ("4000", "bottom")
    assert summary.stage_moves == {"bottom": 1}


def test_stages_only_move_forward(
    config: Config, analytics: Analytics, sandbox: SandboxServer
) -> None:
    analytics.add("ada@example.com", calls=5000)
    run_sync(config, dry_run=False)
    analytics.set_calls("ada@example.com", 3)
    run_sync(config, dry_run=False)
    props = sandbox.store.contacts_by_email()["ada@example.com"]["properties"]
    assert (props["used_event_count"], props["api_integration_stage"]) == ("3", "bottom")


def test_rows_without_an_email_are_skipped_and_counted(
    config: Config, analytics: Analytics, sandbox: SandboxServer
) -> None:
    analytics.add("ada@example.com")
    analytics.add(None)  # type: ignore[arg-type]
    analytics.add("   ")
    summary = run_sync(config, dry_run=False)
    assert summary.skipped == {"no email": 2}
    assert summary.written == 1 and summary.exit_status == 0


def test_malformed_emails_are_caught_before_sending_and_listed_with_the_rejects(
    config: Config, analytics: Analytics, sandbox: SandboxServer
) -> None:
    analytics.add_many(97)
    for bad in ("ada@", "grace at example.com", "linus@@example.com"):
        analytics.add(bad)
    summary = run_sync(config, dry_run=False)
    assert (summary.written, summary.rejected, summary.exit_status) == (97, 3, 1)
    assert summary.skipped == {"invalid email": 3}
    assert len(upserts(sandbox)) == 1
    reasons = {r.email: r.reason for r in state_of(config).rejects()}
    assert set(reasons) == {"ada@", "grace at example.com", "linus@@example.com"}
    assert all("not a valid email address" in reason for reason in reasons.values())


def test_two_rows_for_one_email_are_an_error_for_that_contact_only(
    config: Config, analytics: Analytics, sandbox: SandboxServer
) -> None:
    analytics.add("ada@example.com", calls=1)
    analytics.add("ADA@example.com ", calls=2000)
    analytics.add("grace@example.com")
    summary = run_sync(config, dry_run=False)
    assert (summary.written, summary.rejected, summary.exit_status) == (1, 1, 1)
    assert set(sandbox.store.contacts_by_email()) == {"grace@example.com"}
    [reject] = state_of(config).rejects()
    assert reject.email == "ada@example.com" and "2 rows" in reject.reason


def test_a_value_hubspot_would_refuse_is_rejected_before_sending_and_retried(
    config: Config, analytics: Analytics, sandbox: SandboxServer
) -> None:
    analytics.add("ada@example.com", role="Astronaut")
    analytics.add("grace@example.com")
    first = run_sync(config, dry_run=False)
    assert (first.written, first.rejected) == (1, 1)
    [reject] = state_of(config).rejects()
    assert "Astronaut" in reject.reason and "developer_role" in reject.reason
    with sa.create_engine(analytics.url).begin() as db:
        db.execute(sa.text("UPDATE usage SET role = 'Sales' WHERE email = 'ada@example.com'"))
    second = run_sync(config, dry_run=False)
    assert (second.written, second.rejected) == (1, 0)
    assert state_of(config).rejects() == []


def test_an_unknown_column_is_a_config_error_naming_the_mapping(
    config: Config, analytics: Analytics, sandbox: SandboxServer, tmp_path: Path
) -> None:
    data = config_data(analytics, sandbox.url, tmp_path / "state.db")
    data["properties"][0]["column"] = "used_events"
    with pytest.raises(ConfigError) as caught:
        run_sync(parse_config(data), dry_run=False)
    assert caught.value.problems[0].key == "properties[0].column"
    assert "used_events" in str(caught.value)
    assert upserts(sandbox) == []


def test_a_failing_source_query_is_a_config_error(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path
) -> None:
    data = config_data(analytics, sandbox.url, tmp_path / "state.db")
    data["source"]["query"] = "SELECT email FROM usages"
    with pytest.raises(ConfigError) as caught:
        run_sync(parse_config(data), dry_run=False)
    assert caught.value.problems[0].key == "source.query"
    assert "no such table: usages" in str(caught.value)


def test_an_unreachable_source_is_fatal_and_writes_nothing(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    data = config_data(Analytics(tmp_path / "a.db"), sandbox.url, tmp_path / "state.db")
    (tmp_path / "not-a-database").mkdir()  # a missing file is a config error, not an unreachable source
    data["source"]["url"] = f"sqlite:///{tmp_path}/not-a-database"
    with pytest.raises(FatalError, match="cannot reach the source database"):
        run_sync(parse_config(data), dry_run=False)
    assert upserts(sandbox) == []


def test_a_wrong_token_is_a_credentials_error_and_leaves_no_half_written_state(
    config: Config, analytics: Analytics, sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    analytics.add("ada@example.com")
    monkeypatch.setenv(config.hubspot.token_env, "wrong-token-secret")
    with pytest.raises(CredentialsError) as caught:
        run_sync(config, dry_run=False)
    assert caught.value.exit_status == 3
    assert config.hubspot.token_env in str(caught.value)
    assert "wrong-token-secret" not in str(caught.value)
    state = state_of(config)
    assert state.contact_count() == 0
    [run] = state.recent_runs()
    assert run.outcome == RunOutcome.FAILED and "401" in run.message


def test_a_missing_scope_is_named(analytics: Analytics, tmp_path: Path) -> None:
    analytics.add("ada@example.com")
    scopes = {
        "crm.objects.contacts.read",
        "crm.objects.contacts.write",
        "crm.schemas.contacts.read",
    }
    with SandboxServer(token="test-token-0123456789", scopes=scopes) as limited:
        config = parse_config(config_data(analytics, limited.url, tmp_path / "state.db"))
        with pytest.raises(CredentialsError) as caught:
            run_sync(config, dry_run=False)
    assert "crm.schemas.contacts.write" in str(caught.value)
    assert state_of(config).contact_count() == 0


def test_a_dry_run_writes_nothing_to_hubspot_or_the_state(
    config: Config, analytics: Analytics, sandbox: SandboxServer
) -> None:
    analytics.add_many(5, calls=2000)
    summary = run_sync(config, dry_run=True)
    assert summary.to_write == 5 and summary.stage_moves == {"bottom": 5}
    assert "api_integration_stage" in summary.schema.created
    assert sandbox.store.contacts_by_email() == {}
    assert sandbox.store.properties().get("api_integration_stage") is None
    assert not Path(sa.engine.make_url(config.state.url).database or "").exists()


def test_a_stop_while_planning_sends_nothing_and_the_next_run_plans_everything(
    config: Config, analytics: Analytics, sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    analytics.add_many(250, calls=5)
    monkeypatch.setattr(plan_module, "CHUNK", 100)
    shutdown = Shutdown(grace_seconds=20)
    diff_chunk = Planner._diff_chunk

    def stop_after_the_first_chunk(self: Planner, *args: object) -> None:
        diff_chunk(self, *args)  # type: ignore[arg-type]
        shutdown.stop.set()

    monkeypatch.setattr(Planner, "_diff_chunk", stop_after_the_first_chunk)
    stopped = run_sync(config, dry_run=False, shutdown=shutdown)

    assert (stopped.outcome, stopped.rows_read, stopped.written) == (RunOutcome.STOPPED, 100, 0)
    assert upserts(sandbox) == []
    state = state_of(config)
    assert state.pending_enrollments() == [] and state.interrupted_run() is not None
    assert state.interrupted_run().unfinished == {}  # type: ignore[union-attr]  (the first chunk's writes: not kept)
    state.close()
    monkeypatch.setattr(Planner, "_diff_chunk", diff_chunk)
    finished = run_sync(config, dry_run=False)
    assert (finished.outcome, finished.written, finished.resumed_writes) == (RunOutcome.OK, 250, 0)
    assert len(sandbox.store.contacts_by_email()) == 250
    state = state_of(config)
    assert [run.outcome for run in state.recent_runs()] == [RunOutcome.OK, RunOutcome.STOPPED]
    state.close()
