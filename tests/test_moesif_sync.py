"""A sync with `kind = "moesif"` end to end: the fake Moesif of tests/test_moesif.py (behind
`responses`, evaluating the Elasticsearch DSL it is sent and checking every request against
Moesif's OpenAPI description) -> funnelsync in-process (`run_sync`) -> the real
hubspot-api-client -> the sandbox over real HTTP -> the state.

The fixture org has a few hundred users in every stage, with sampled traffic (weights 20 and
10/3), events without a weight, custom actions that are not API calls, traffic older than the
window or than the lookback, and users without an email. The expected values are computed here
with plain loops over the fixture's events, never by the connector.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from funnelsync.cli.runner import run_sync
from funnelsync.config import Config, parse_config
from funnelsync.errors import CredentialsError
from funnelsync.sandbox import SandboxServer
from funnelsync.state import StateStore
from funnelsync.state.models import RunOutcome
from tests.conftest import TOKEN_ENV, api_path
from tests.test_moesif import BASE_URL, EVENTS, USERS, FakeMoesif, make_event, make_user

MOESIF_TOKEN = "eyJvcmciOiJzeW5jLXRlc3QifQ.moesif-management-token"
MOESIF_TOKEN_ENV = "FUNNELSYNC_TEST_MOESIF_TOKEN"
UPSERT = api_path("/crm/v3/objects/contacts/batch/upsert")

N_USERS = 320
PAGE_SIZE = 75
PAGES = -(-N_USERS // PAGE_SIZE)  # 5: four full pages and a short one

ROLES = ["Engineering", "Product", "Developer Relations", "Support"]
MIDDLE_WORKFLOW = 4400101
PRODUCTION_LIST = "API funnel: production"
STOPPED_LIST = "Moesif: stopped sending traffic"
STOPPED_RULE = "used_event_count == 0 && days_since(last_event_at) >= 7"
NEVER_PAID_RULE = "calls_payments == 0 && used_event_count > 0"


# -- the fixture org ------------------------------------------------------------------------------


@dataclass
class Org:
    now: datetime  # the fake Moesif's clock; the sync runs a few seconds after it
    users: list[dict[str, Any]]
    events: list[dict[str, Any]]


def build_org(now: datetime) -> Org:
    """N_USERS users; `i % 16` says what kind of user each is (see the comments)."""
    rng = random.Random(20240514)
    users: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []

    def recent(rng: random.Random) -> datetime:
        """Inside the -24h window, clear of its edges (it starts at the top of an hour)."""
        return now - timedelta(minutes=rng.randint(1, 22 * 60), milliseconds=rng.randint(0, 999))

    def days_ago(low: int, high: int) -> datetime:
        return now - timedelta(days=low + rng.random() * (high - low))

    for i in range(N_USERS):
        uid = f"usr_{i:04d}"
        kind = i % 16
        email: Any = f"dev{i}@example.com"
        if kind == 14:  # no usable email: Moesif has users known only by id
            email = ["missing", None, "", "   "][i // 16 % 4]
        elif kind == 15:
            email = f"Dev{i}@Example.COM"  # HubSpot keys contacts by the lower-cased email
        metadata: Any = {"role": ROLES[i % 4], "plan": "pro"}
        if i % 13 == 0:
            metadata = "missing"  # no metadata: the role is cleared
        users.append(make_user(uid, email, metadata))

        def add(at: datetime, uid: str = uid, **kw: Any) -> None:
            events.append(make_event(uid, at, **kw))

        if kind == 0:  # signed up, never called
            continue
        if kind == 1:  # stopped: sampled traffic 8 to 40 days ago, nothing since
            for _ in range(rng.randint(1, 6)):
                add(days_ago(8, 40), route="/payments", weight=rng.choice([1, 20]))
        elif kind == 2:  # quiet for 2 to 5 days: no calls in the window, but not 7 days yet
            for _ in range(rng.randint(1, 4)):
                add(days_ago(2, 5), route="/users", status=rng.choice([200, 500]))
        elif kind == 3:  # only traffic older than the 90-day lookback
            add(days_ago(100, 200), route="/payments")
        elif kind == 4:  # custom actions in the window (not API calls) and a call 10 days ago
            for _ in range(3):
                add(recent(rng), event_type="user_action")
            if i % 32 == 4:
                add(days_ago(10, 11), route="/users")
        elif kind in (5, 6, 7, 15):  # trying it out in a sandbox, /payments among the calls
            for n in range(rng.randint(1, 40)):
                add(
                    recent(rng),
                    route=rng.choice(["/payments", "/users", "/refunds"]),
                    status=rng.choice([200, 201, 400, 404, 500]) if n % 3 == 0 else 200,
                    weight=rng.choice([1, 2, None]),  # None: no weight, counts 1
                )
        elif kind == 8:  # calls, but never /payments; and an old /payments call that is outside
            for _ in range(rng.randint(1, 25)):
                add(recent(rng), route="/users", weight=rng.choice([1, 2]))
            add(days_ago(3, 4), route="/payments")
        elif kind == 9:  # production, sampled at 5%: 51 to 80 stored events of weight 20
            for n in range(rng.randint(51, 80)):
                add(
                    recent(rng),
                    route="/payments" if n % 4 else "/refunds",
                    status=500 if n % 15 == 0 else 200,
                    weight=20,
                )
        elif kind == 10:  # exactly 1,000 calls (50 x 20): not above the bottom's bound
            for n in range(50):
                add(recent(rng), route="/users", status=429 if n % 10 == 0 else 200, weight=20)
        elif kind == 11:  # sampled at 30% (weight 10/3): 299 or 301 events, 997 or 1003 calls
            for _ in range(299 if i % 32 == 11 else 301):
                add(recent(rng), route="/payments", weight=10 / 3)
        elif kind == 12:  # heavy, unsampled: 1,001 to 1,040 calls of weight 1
            for n in range(rng.randint(1001, 1040)):
                add(recent(rng), route="/payments", status=503 if n % 97 == 0 else 200)
        elif kind == 13:  # a little, long ago in the lookback and in the window
            add(days_ago(30, 60), route="/payments", status=401)
            for _ in range(rng.randint(1, 3)):
                add(recent(rng), route="/users", weight=20)
        elif kind == 14:  # traffic from users without email: never synced
            for _ in range(5):
                add(recent(rng), route="/payments")
    return Org(now, users, events)


# -- what the sync should write, by plain loops over the fixture -----------------------------------


@dataclass
class Expected:
    used: int
    errors: int
    payments: int
    last: datetime | None
    role: str | None

    @property
    def stage(self) -> str:
        return "bottom" if self.used > 1000 else "middle" if self.used > 0 else "top"

    def stopped(self, now: datetime) -> bool:
        return self.used == 0 and self.last is not None and (now - self.last).days >= 7

    @property
    def never_paid(self) -> bool:
        return self.payments == 0 and self.used > 0


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)  # Moesif's times are UTC, no zone


def expected(org: Org) -> dict[str, Expected]:
    """Moesif's -24h starts at the top of the hour 24 hours back; -90d at midnight 90 days back."""
    window_start = (org.now - timedelta(hours=24)).replace(minute=0, second=0, microsecond=0)
    lookback_start = (org.now - timedelta(days=90)).replace(hour=0, minute=0, second=0,
                                                            microsecond=0)
    out: dict[str, Expected] = {}
    for user in org.users:
        profile = user["_source"]
        email = profile.get("email")
        if not isinstance(email, str) or not email.strip():
            continue
        used = errors = payments = 0.0
        last: datetime | None = None
        for event in org.events:
            if event["user_id"] != user["_id"] or event["event_type"] != "api_call":
                continue
            at = parse_time(event["request"]["time"])
            weight = event.get("weight", 1)
            if window_start <= at <= org.now:
                used += weight
                errors += weight if event["response"]["status"] >= 400 else 0
                payments += weight if event["request"]["route"] == "/payments" else 0
            if lookback_start <= at <= org.now and (last is None or at > last):
                last = at
        metadata = profile.get("metadata")
        role = metadata.get("role") if isinstance(metadata, dict) else None
        out[email.lower()] = Expected(round(used), round(errors), round(payments), last, role)
    return out


def no_email_users(org: Org) -> int:
    return sum(
        1
        for user in org.users
        if not isinstance(user["_source"].get("email"), str) or not user["_source"]["email"].strip()
    )


def stored_time(value: str | None) -> datetime | None:
    """A datetime property as the sandbox holds it (HubSpot's ISO form, or epoch milliseconds)."""
    if not value:
        return None
    if value.isdigit():
        return datetime.fromtimestamp(int(value) / 1000, tz=UTC)
    return datetime.fromisoformat(value)


# -- harness --------------------------------------------------------------------------------------


@pytest.fixture
def org() -> Org:
    return build_org(datetime.now(UTC))


@pytest.fixture
def moesif(org: Org, sandbox: SandboxServer) -> Iterator[FakeMoesif]:
    # funnelsync's workflow enrollments go over `requests` too: they must reach the sandbox
    with FakeMoesif(org.users, org.events, token=MOESIF_TOKEN, now=org.now).serving(sandbox.url) as fake:
        yield fake


@pytest.fixture
def config(
    sandbox: SandboxServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Config:
    monkeypatch.setenv(MOESIF_TOKEN_ENV, MOESIF_TOKEN)
    sandbox.add_workflow(MIDDLE_WORKFLOW, "Sandbox nurture")
    return parse_config(
        {
            "source": {
                "kind": "moesif",
                "base_url": BASE_URL + "/",
                "token_env": MOESIF_TOKEN_ENV,
                "window": "-24h",
                "lookback": "-90d",
                "page_size": PAGE_SIZE,
                "fields": {"email": "email", "role": "metadata.role"},
                "routes": {"calls_payments": "/payments"},
            },
            "hubspot": {
                "base_url": sandbox.url,
                "token_env": TOKEN_ENV,
                "requests_per_10s": 250,
                "property_group": "funnelsync",
            },
            "state": {"url": f"sqlite:///{tmp_path / 'state.db'}"},
            "properties": [
                {"column": "used_event_count", "name": "used_event_count",
                 "label": "Used Event Count", "type": "number"},
                {"column": "error_count", "name": "api_error_count", "label": "API errors",
                 "type": "number"},
                {"column": "last_event_at", "name": "last_api_call_at", "label": "Last API call",
                 "type": "datetime"},
                {"column": "role", "name": "developer_role", "label": "Developer role",
                 "type": "enumeration", "options": ROLES},
            ],
            "funnel": {
                "metric": "used_event_count",
                "property": "api_integration_stage",
                "stages": [
                    {"value": "top", "label": "Not yet integrated"},
                    {"value": "middle", "label": "Integrated in sandbox", "above": 0,
                     "enroll": {"workflow_id": MIDDLE_WORKFLOW}},
                    {"value": "bottom", "label": "Integrated in production", "above": 1000,
                     "enroll": {"list": PRODUCTION_LIST}},
                ],
            },
            "segments": [
                {"name": "stopped_sending", "label": "Stopped sending traffic",
                 "when": STOPPED_RULE, "enroll": {"list": STOPPED_LIST}},
                {"name": "never_called_payments", "label": "Calls the API, never /payments",
                 "when": NEVER_PAID_RULE, "property": "never_called_payments"},
            ],
        }
    )


def upserts(sandbox: SandboxServer) -> int:
    return sum(
        1 for r in sandbox.store.request_log() if r["method"] == "POST" and r["path"] == UPSERT
    )


def calls_to(fake: FakeMoesif, path: str) -> list[dict[str, Any]]:
    return [c for c in fake.calls if c["path"] == path]


# -- tests ----------------------------------------------------------------------------------------


def test_the_fixture_covers_every_stage_sampling_and_several_pages(org: Org) -> None:
    want = expected(org)
    stages = [e.stage for e in want.values()]
    assert len(org.users) == N_USERS and PAGES >= 4
    assert {s: stages.count(s) for s in ("top", "middle", "bottom")} == {
        "top": 100, "middle": 150, "bottom": 50,
    }
    assert 1000 in {e.used for e in want.values()}, "a user exactly on the bottom's bound"
    weights = {e.get("weight") for e in org.events}
    assert {20, 10 / 3, 2, None} <= weights, "sampled and weightless events"
    assert any(e["event_type"] != "api_call" for e in org.events)
    assert sum(e.stopped(org.now) for e in want.values()) >= 20
    assert sum(e.never_paid for e in want.values()) >= 20
    assert sum(e.used == 0 and e.last is not None and not e.stopped(org.now)
               for e in want.values()) >= 20, "quiet, but not for 7 days"
    assert no_email_users(org) == 20


def test_a_moesif_sync_writes_usage_stage_and_segments_to_hubspot(
    org: Org, moesif: FakeMoesif, config: Config, sandbox: SandboxServer
) -> None:
    summary = run_sync(config, dry_run=False)

    want = expected(org)
    assert (summary.exit_status, summary.rejected) == (0, 0)
    assert summary.rows_read == summary.contacts == summary.written == len(want) == 300
    assert summary.skipped == {"moesif user without email": no_email_users(org)}

    contacts = sandbox.store.contacts_by_email()
    assert set(contacts) == set(want)
    for email, exp in want.items():
        props = contacts[email]["properties"]
        got = (
            props["used_event_count"],
            props["api_error_count"],
            props["api_integration_stage"],
            stored_time(props.get("last_api_call_at")),
            props.get("developer_role") or None,
            props["never_called_payments"],
        )
        assert got == (
            str(exp.used),
            str(exp.errors),
            exp.stage,
            exp.last,  # Moesif's times have milliseconds, as HubSpot's
            exp.role,
            "true" if exp.never_paid else "false",
        ), email

    ids = {email: contact["id"] for email, contact in contacts.items()}
    lists = sandbox.store.lists()
    assert lists[STOPPED_LIST]["members"] == {
        ids[email] for email, exp in want.items() if exp.stopped(org.now)
    }
    assert lists[PRODUCTION_LIST]["members"] == {
        ids[email] for email, exp in want.items() if exp.stage == "bottom"
    }
    enrolled = sorted(email for workflow, email, _ in sandbox.store.workflow_enrollments()
                      if workflow == MIDDLE_WORKFLOW)
    assert enrolled == sorted(email for email, exp in want.items() if exp.stage == "middle")

    # Two requests a page of users, and the empty page that ends the paging.
    assert len(calls_to(moesif, USERS)) == PAGES + 1
    assert len(calls_to(moesif, EVENTS)) == PAGES
    assert len(moesif.calls) == 2 * PAGES + 1
    assert all(c["params"] == {"from": "-90d", "to": "now"} for c in calls_to(moesif, EVENTS))
    assert all(
        c["request"].headers["Authorization"] == f"Bearer {MOESIF_TOKEN}" for c in moesif.calls
    )


def test_a_second_sync_over_the_same_moesif_data_writes_nothing(
    org: Org, moesif: FakeMoesif, config: Config, sandbox: SandboxServer
) -> None:
    first = run_sync(config, dry_run=False)
    assert first.written == 300
    upserts_before, writes_before = upserts(sandbox), sandbox.store.write_count()
    lists_before = sandbox.store.lists()
    assert upserts_before == -(-300 // config.hubspot.batch_size)

    second = run_sync(config, dry_run=False)

    assert (second.written, second.to_write, second.unchanged) == (0, 0, 300)
    assert second.skipped == {"moesif user without email": no_email_users(org)}
    assert upserts(sandbox) == upserts_before
    assert sandbox.store.write_count() == writes_before, "no list or enrollment call either"
    assert sandbox.store.lists() == lists_before
    assert len(moesif.calls) == 2 * (2 * PAGES + 1), "the second sync reads Moesif the same way"
    runs = StateStore(config.state.url).recent_runs()
    assert [r.outcome for r in runs] == [RunOutcome.OK, RunOutcome.OK]


@pytest.mark.parametrize(
    "refused", [USERS, EVENTS], ids=["wrong-token", "token-without-read-events"]
)
def test_a_refused_moesif_token_fails_the_sync_before_anything_is_written(
    org: Org, moesif: FakeMoesif, config: Config, sandbox: SandboxServer, refused: str
) -> None:
    moesif.fail(refused, lambda n: True, (401, {}, json.dumps({"message": "Unauthorized"})))

    with pytest.raises(CredentialsError) as raised:
        run_sync(config, dry_run=False)

    error = raised.value
    assert error.exit_status == 3
    message = str(error)
    assert MOESIF_TOKEN_ENV in message
    assert "read:users" in message and "read:events" in message
    assert MOESIF_TOKEN not in message
    assert len(calls_to(moesif, refused)) == 1, "a refused token is not retried"
    assert sandbox.store.contacts_by_email() == {}
    assert sandbox.store.lists() == {}
    assert sandbox.store.write_count() == 0
    assert sandbox.store.workflow_enrollments() == []
    [run] = StateStore(config.state.url).recent_runs()
    assert run.outcome == RunOutcome.FAILED
    assert MOESIF_TOKEN_ENV in run.message and MOESIF_TOKEN not in run.message
    assert run.contacts_written == 0
