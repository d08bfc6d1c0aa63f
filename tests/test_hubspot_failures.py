"""HubSpot's failures, over real HTTP against the sandbox: no row is ever dropped or invented."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import hubspot
import pytest
from hubspot.crm.properties import PropertyCreate

from funnelsync.config import Config, parse_config
from funnelsync.connectors.crm import ContactWrite, ContactWriting
from funnelsync.connectors.hubspot import HubSpotCrm
from funnelsync.connectors.sql import SqlUsageSource
from funnelsync.errors import ConfigError, DailyLimitReached, FatalError
from funnelsync.mappings.schema import property_specs
from funnelsync.sandbox import SandboxServer
from funnelsync.state import StateStore
from funnelsync.state.models import RunOutcome
from funnelsync.sync.engine import RunSummary, SyncEngine
from tests.conftest import TOKEN, Analytics, api_path, config_data

UPSERT = "/crm/v3/objects/contacts/batch/upsert"
sleeps: list[float] = []


def crm_for(config: Config, **kwargs: object) -> HubSpotCrm:
    sleeps.clear()
    options = {"rate_limit_wait": 0.01, "sleep": sleeps.append, **kwargs}
    return HubSpotCrm(config.hubspot, TOKEN, **options)  # type: ignore[arg-type]


def sync(config: Config, crm: HubSpotCrm | None = None) -> RunSummary:
    state = StateStore(config.state.url)
    try:
        return SyncEngine(config, SqlUsageSource(config.source), crm or crm_for(config), state).sync()
    finally:
        state.close()


def answered(sandbox: SandboxServer, status: int | None = None) -> list[dict[str, object]]:
    return [r for r in sandbox.store.request_log()
            if r["path"] == api_path(UPSERT) and (status is None or r["status"] == status)]


def writes(count: int, role: str = "Engineering") -> list[ContactWrite]:
    return [ContactWrite(f"dev{i}@example.com", {"developer_role": role, "used_event_count": str(i)})
            for i in range(count)]


@pytest.fixture
def provisioned(config: Config) -> Iterator[ContactWriting]:
    crm = crm_for(config)
    crm.properties.ensure_properties(property_specs(config))
    yield crm.contacts


def test_a_storm_of_429s_is_waited_out_and_every_contact_is_written(
    config: Config, analytics: Analytics, sandbox: SandboxServer
) -> None:
    emails = analytics.add_many(300, calls=3)
    sandbox.inject_fault(kind="status", status=429, count=12)
    summary = sync(config)
    assert (summary.written, summary.rejected) == (300, 0)
    assert set(sandbox.store.contacts_by_email()) == set(emails)
    assert len(answered(sandbox, 429)) == 12
    assert len(answered(sandbox, 200)) == 3


def test_the_client_paces_itself_from_the_headers_and_gets_no_429(
    analytics: Analytics, tmp_path: Path
) -> None:
    """The portal allows 12 requests a 10 s window; funnelsync was told 100 (e.g. another
    integration uses the rest). HubSpot's rate-limit headers bring it down without a 429."""
    analytics.add_many(300, calls=3)
    with SandboxServer(token=TOKEN, requests_per_10s=12) as tight:
        config = parse_config(config_data(analytics, tight.url, tmp_path / "state.db"))
        summary = sync(config)
        statuses = [r["status"] for r in tight.store.request_log()]
    assert summary.written == 300
    assert 429 not in statuses


def test_the_daily_limit_stops_the_run_cleanly_and_the_next_run_carries_on(
    analytics: Analytics, tmp_path: Path
) -> None:
    emails = analytics.add_many(1000, calls=3)
    with SandboxServer(token=TOKEN, daily_limit=14) as portal:
        config = parse_config(config_data(analytics, portal.url, tmp_path / "state.db"))
        with pytest.raises(DailyLimitReached):
            sync(config)
        in_hubspot = set(portal.store.contacts_by_email())
        state = StateStore(config.state.url)
        assert 0 < len(in_hubspot) < 1000
        assert state.contact_count() == len(in_hubspot)
        assert state.recent_runs()[0].outcome == RunOutcome.DAILY_LIMIT
        portal.limiter.reset()  # the day rolls over
        summary = sync(config)
        assert summary.written == 1000 - len(in_hubspot)
        assert set(portal.store.contacts_by_email()) == set(emails)


def test_5xx_and_connection_resets_mid_backfill_are_retried_without_losing_a_row(
    config: Config, analytics: Analytics, sandbox: SandboxServer
) -> None:
    emails = analytics.add_many(800, calls=3)
    sandbox.inject_fault(kind="slow", delay=0.0, count=3)  # let three batches through first
    sandbox.inject_fault(kind="status", status=503, count=2)
    sandbox.inject_fault(kind="reset", count=2)
    sandbox.inject_fault(kind="status", status=502)
    summary = sync(config)
    assert (summary.written, summary.rejected) == (800, 0)
    assert set(sandbox.store.contacts_by_email()) == set(emails)
    assert len(sleeps) == 5


def test_an_answer_cut_short_mid_body_is_a_lost_answer_and_the_batch_is_sent_again(
    config: Config, analytics: Analytics, sandbox: SandboxServer
) -> None:
    """HubSpot applied the batch and sent its status line, then the connection dropped in the
    body: the batch counts as unanswered (never as written), and its resend is what is recorded."""
    emails = analytics.add_many(250, calls=3)
    sandbox.inject_fault(kind="slow", delay=0.0, count=1)
    sandbox.inject_fault(kind="cut_after", count=2)
    crm = crm_for(config)
    summary = sync(config, crm)
    assert (summary.written, summary.rejected) == (250, 0)
    assert set(sandbox.store.contacts_by_email()) == set(emails)
    assert len(answered(sandbox, 200)) == 3 + 2 and len(sleeps) == 2  # two cut, each sent again
    assert crm.contacts.api.budget.in_flight() == 0  # their places in the budget were given back


def test_5xx_beyond_the_retry_limit_is_fatal_and_records_only_what_was_confirmed(
    config: Config, analytics: Analytics, sandbox: SandboxServer
) -> None:
    analytics.add_many(300, calls=3)
    sandbox.inject_fault(kind="slow", delay=0.0, count=1)
    sandbox.inject_fault(kind="status", status=500, count=50)
    with pytest.raises(FatalError, match="did not answer writing contacts after 6 attempts"):
        sync(config)
    state = StateStore(config.state.url)
    assert state.contact_count() == len(sandbox.store.contacts_by_email()) == 100


def test_three_invalid_emails_among_100_sink_only_themselves(
    provisioned: ContactWriting, sandbox: SandboxServer
) -> None:
    batch = writes(100)
    for position, bad in ((5, "ada@exa mple.com"), (50, "grace@@example.com"), (99, "linus@example.")):
        batch[position] = ContactWrite(bad, batch[position].properties)
    before = provisioned.calls_made
    results = provisioned.write_contacts(batch)
    assert len(results) == 100
    refused = {r.email: r for r in results if not r.ok}
    assert set(refused) == {"ada@exa mple.com", "grace@@example.com", "linus@example."}
    assert all(r.code == "INVALID_EMAIL" and r.email in r.reason for r in refused.values())
    assert len(sandbox.store.contacts_by_email()) == 97
    assert provisioned.calls_made - before <= 5


def test_an_option_hubspot_refuses_sets_aside_only_the_rows_with_that_value(
    provisioned: ContactWriting, sandbox: SandboxServer
) -> None:
    batch = writes(100)
    for position in (10, 20):
        batch[position] = ContactWrite(batch[position].email, {"developer_role": "Astronaut"})
    before = provisioned.calls_made
    results = provisioned.write_contacts(batch)
    assert sorted(r.email for r in results if not r.ok) == ["dev10@example.com", "dev20@example.com"]
    assert len(sandbox.store.contacts_by_email()) == 98
    assert provisioned.calls_made - before == 2


def test_a_batch_refused_without_naming_rows_is_halved_until_the_good_rows_are_written(
    provisioned: ContactWriting, sandbox: SandboxServer
) -> None:
    sandbox.inject_fault(kind="status", status=400)
    before = provisioned.calls_made
    results = provisioned.write_contacts(writes(100))
    assert all(r.ok for r in results) and len(results) == 100
    assert len(sandbox.store.contacts_by_email()) == 100
    assert provisioned.calls_made - before == 3


def test_a_207_keeps_the_written_rows_records_the_failed_ones_and_retries_them_next_run(
    config: Config, analytics: Analytics, sandbox: SandboxServer
) -> None:
    analytics.add_many(100, calls=3)
    sandbox.inject_fault(kind="reject_rows", emails=["dev7@example.com", "dev70@example.com"])
    first = sync(config)
    assert (first.written, first.rejected, first.exit_status) == (98, 2, 1)
    rejects = {r.email: r for r in StateStore(config.state.url).rejects()}
    assert set(rejects) == {"dev7@example.com", "dev70@example.com"}
    assert all(r.reason and r.will_retry for r in rejects.values())
    second = sync(config)  # the data did not change; the rejected rows go again
    assert (second.written, second.rejected) == (2, 0)
    assert len(sandbox.store.contacts_by_email()) == 100
    assert StateStore(config.state.url).rejects() == []
    assert len(answered(sandbox)) == 2


def test_a_property_that_exists_with_another_type_is_a_config_error_before_any_write(
    config: Config, analytics: Analytics, sandbox: SandboxServer
) -> None:
    analytics.add_many(5)
    client = hubspot.Client.create(access_token=TOKEN, host=sandbox.url)
    client.crm.properties.core_api.create("contacts", PropertyCreate(
        name="used_event_count", label="Used events", type="string", field_type="text",
        group_name="contactinformation"))
    with pytest.raises(ConfigError) as caught:
        sync(config)
    assert caught.value.problems[0].key == "properties[0]"
    assert "'string'" in str(caught.value) and "'number'" in str(caught.value)
    assert answered(sandbox) == []


def test_an_option_added_to_the_config_is_added_in_hubspot_and_none_removed(
    config: Config, analytics: Analytics, sandbox: SandboxServer, tmp_path: Path
) -> None:
    analytics.add("ada@example.com")
    sync(config)
    data = config_data(analytics, sandbox.url, tmp_path / "state.db")
    data["properties"][1]["options"] = ["Engineering", "Sales", "Support"]  # Product dropped, Support added
    summary = sync(parse_config(data))
    assert summary.schema.options_added == {"developer_role": ["Support"]}
    options = [o["value"] for o in sandbox.store.properties()["developer_role"]["options"]]
    assert options == ["Engineering", "Product", "Sales", "Support"]
