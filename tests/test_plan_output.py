"""`funnelsync plan` as a RevOps admin reads it, and as a program reads it (`--format json|csv`):
values as HubSpot shows them, a summary first, every change, and the HubSpot requests the sync
then makes."""

from __future__ import annotations

import csv
import io
import json
import re
import sqlite3
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from funnelsync.cli.demo import seed_enrollment_targets
from funnelsync.cli.plan_report import CSV_COLUMNS, JSON_FORMAT, duration
from funnelsync.config import parse_config
from funnelsync.mappings.display import shown
from funnelsync.mappings.schema import Option, PropertySpec, property_specs
from funnelsync.mappings.values import to_hubspot
from funnelsync.sandbox import SandboxServer
from funnelsync.sandbox.demo_data import build_demo_database
from funnelsync.state.models import OperationKind
from funnelsync.sync.estimate import PlannedSync, estimate_requests, least_seconds
from tests.conftest import TOKEN_ENV, Analytics, config_data
from tests.test_cli import funnelsync, write_toml

REPOSITORY = Path(__file__).resolve().parent.parent
EPOCH_MS = re.compile(r"\b\d{13}\b")
WIDE = {"COLUMNS": "2000"}  # every change of a line, whatever the terminal


def demo_config_file(tmp_path: Path, sandbox: SandboxServer, *, developers: int,
                     requests_per_10s: int | None = None) -> Path:
    """The repository's config.toml over a fresh demo database, pointed at the test sandbox."""
    build_demo_database(tmp_path / "analytics.db", developers=developers)
    data: dict[str, Any] = tomllib.loads((REPOSITORY / "config.toml").read_text())
    data["source"]["url"] = f"sqlite:///{tmp_path / 'analytics.db'}"
    data["state"] = {"url": f"sqlite:///{tmp_path / 'state.db'}"}
    data["hubspot"].update(base_url=sandbox.url, token_env=TOKEN_ENV)
    if requests_per_10s is not None:
        data["hubspot"]["requests_per_10s"] = requests_per_10s
    seed_enrollment_targets(sandbox, parse_config(data))
    return write_toml(tmp_path / "config.toml", data)


def plan(config_file: Path, *args: str, env: dict[str, str] | None = None) -> str:
    result = funnelsync("-c", str(config_file), "plan", *args, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def contact_lines(text: str) -> dict[str, str]:
    """email -> its line in the text plan's changes."""
    changes = text.split("\nchanges", 1)[1]
    return {line.split()[0]: line for line in changes.splitlines()[1:] if line.startswith("  ") and "@" in line}


# -- values as HubSpot shows them -----------------------------------------------------------------


def spec(type_: str, options: tuple[Option, ...] = ()) -> PropertySpec:
    return PropertySpec("p", "P", type_, "text", options)


@pytest.mark.parametrize(("value", "type_", "expected"), [
    ("1795996800000", "date", "2026-11-30"),
    ("1796047500000", "datetime", "2026-11-30 14:05 UTC"),
    ("1234567", "number", "1,234,567"),
    ("152.5", "number", "152.5"),
    ("-0.25", "number", "-0.25"),
    ("true", "bool", "Yes"),
    ("false", "bool", "No"),
    ("", "number", ""),
    ("not a date", "date", "not a date"),
    ("free text, as it is", "string", "free text, as it is"),
])
def test_a_value_is_shown_as_hubspot_shows_its_type(value: str, type_: str, expected: str) -> None:
    options = (Option("true", "Yes"), Option("false", "No")) if type_ == "bool" else ()
    assert shown(value, spec(type_, options)) == expected


@pytest.mark.parametrize(("source", "type_", "expected"), [
    ("2026-11-30", "date", "2026-11-30"), ("2026-11-30T14:05:59+00:00", "datetime", "2026-11-30 14:05 UTC"),
    (1234567, "number", "1,234,567"), ("yes", "bool", "Yes"),
])
def test_what_funnelsync_sends_reads_back_as_the_source_said_it(source: object, type_: str, expected: str) -> None:
    config = parse_config({"source": {"kind": "sql", "url": "sqlite://", "key": "email", "query": "SELECT 1"},
                           "properties": [{"column": "c", "name": "p", "label": "P", "type": type_}]})
    prop = next(s for s in property_specs(config) if s.name == "p")
    sent = to_hubspot(source, config.properties[0])
    assert sent != expected and shown(sent, prop) == expected


def test_an_option_is_shown_by_its_label() -> None:
    stages = spec("enumeration", (Option("middle", "Integrated in sandbox"), Option("top", "Not yet integrated")))
    assert shown("middle", stages) == "Integrated in sandbox"
    assert shown("gone", stages) == "gone"  # an option the portal no longer has: its value


def test_the_plan_of_the_demo_shows_dates_numbers_and_labels_as_hubspot_will(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    text = plan(demo_config_file(tmp_path, sandbox, developers=3000), env=WIDE)

    summary, changes = text.split("\nchanges", 1)
    assert re.search(r"^  contacts to create +3,000 ", summary, re.MULTILINE)
    assert re.search(r"^  \(none\) -> Integrated in production +\d", summary, re.MULTILINE)
    assert re.search(r"^  add to 'API funnel: production' +\d+ +stage Integrated in production$", summary,
                     re.MULTILINE)
    assert "changes (the first 50 of 3,000 contacts; every change: --format json or --format csv)" in text
    lines = contact_lines(text)
    assert len(lines) == 50
    assert not EPOCH_MS.search(changes) and not re.search(r"\w='", changes)  # no epoch ms, no name='value'
    production = next(line for line in lines.values() if "API integration stage: Integrated in production" in line)
    assert re.search(r"Used Event Count: \d{1,3}(,\d{3})+;", production)  # more than 1,000, and readable
    assert re.search(r"Signed up for the API: \d{4}-\d{2}-\d{2};", production)
    assert re.search(r"Entered: Integrated in production: \d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC", production)
    assert re.search(r"Over the monthly quota: (Yes|No)", production)
    assert re.search(r"Developer role: (Product|Engineering|Marketing|Customer Success|Developer Relations|Sales|"
                     r"Support|Executive)", production)


def test_a_contact_that_changes_shows_only_what_changes_from_old_to_new(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path
) -> None:
    config_file = write_toml(tmp_path / "config.toml", config_data(analytics, sandbox.url, tmp_path / "state.db"))
    analytics.add("ada@example.com", calls=5, signed_up_at="2026-01-15", last_event_at="2026-11-30T14:05:00Z")
    analytics.add("grace@example.com", calls=7)
    first = plan(config_file, env=WIDE)
    assert ("ada@example.com (new): API integration stage: Integrated in sandbox; Used Event Count: 5; "
            "Developer role: Engineering; Signed up: 2026-01-15; Last call: 2026-11-30 14:05 UTC; "
            "Entered: Integrated in sandbox: ") in first
    assert funnelsync("-c", str(config_file), "sync").returncode == 0

    analytics.set_calls("ada@example.com", 2000)
    text = plan(config_file, env=WIDE)

    assert re.search(r"^  contacts to update +1$", text, re.MULTILINE)
    assert re.search(r"^  unchanged +1$", text, re.MULTILINE)
    assert re.search(r"^  Integrated in sandbox -> Integrated in production +1$", text, re.MULTILINE)
    line = contact_lines(text)["ada@example.com:"]
    assert re.fullmatch(r"  ada@example.com: API integration stage: Integrated in sandbox -> Integrated in "
                        r"production; Used Event Count: 5 -> 2,000; Entered: Integrated in production: "
                        r"\(none\) -> \d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC", line)
    assert "grace@example.com" not in text


def test_a_long_line_is_cut_to_the_terminal_saying_how_many_more(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path
) -> None:
    config_file = write_toml(tmp_path / "config.toml", config_data(analytics, sandbox.url, tmp_path / "state.db"))
    analytics.add("ada@example.com", calls=5, last_event_at="2026-11-30T14:05:00Z")
    line = contact_lines(plan(config_file, env={"COLUMNS": "100"}))["ada@example.com"]
    assert len(line) <= 100
    assert re.search(r"; \(\+\d more\)$", line)


# -- every change for a program --------------------------------------------------------------------


def test_json_and_csv_hold_every_change_of_3000_contacts(sandbox: SandboxServer, tmp_path: Path) -> None:
    config_file = demo_config_file(tmp_path, sandbox, developers=3000)

    result = funnelsync("-c", str(config_file), "plan", "--format", "json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    as_csv = funnelsync("-c", str(config_file), "sync", "--dry-run", "--format", "csv")
    assert as_csv.returncode == 0, as_csv.stderr
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))

    assert document["format"] == JSON_FORMAT
    summary, contacts = document["summary"], document["contacts"]
    assert len(contacts) == summary["to_create"] == 3000 and len({c["email"] for c in contacts}) == 3000
    assert "more" not in result.stdout.split('"contacts"', 1)[0]
    stages = Counter(c["stage"]["to"] for c in contacts)
    assert stages == {move["to"]: move["contacts"] for move in summary["stage_moves"]}
    entering = Counter(name for c in contacts for name in c["segments"]["entering"])
    assert entering == {s["segment"]: s["entering"] for s in summary["segments"] if s["entering"]}
    workflows = Counter(e["target"] for c in contacts for e in c["enrollments"] if e["kind"] == "enroll_workflow")
    assert workflows == {e["target"]: e["contacts"] for e in summary["enrollments"] if e["kind"] == "enroll_workflow"}
    signup = next(p for p in contacts[0]["properties"] if p["name"] == "api_signed_up_at")
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", signup["new"]) and EPOCH_MS.fullmatch(signup["new_value"])
    assert signup["old"] is None and signup["old_value"] is None

    assert tuple(rows[0].keys()) == CSV_COLUMNS
    properties = [row for row in rows if row["change"] == "property"]
    assert len(properties) == sum(len(c["properties"]) for c in contacts)
    assert len({row["email"] for row in properties}) == 3000
    segments = [row for row in rows if row["change"] == "segment"]
    assert len(segments) == sum(entering.values()) and {row["new"] for row in segments} == {"Yes"}
    in_csv = {(row["email"], row["name"]): (row["old"], row["new"], row["new_value"]) for row in properties}
    in_json = {(c["email"], p["name"]): ("", p["new"], p["new_value"]) for c in contacts for p in c["properties"]}
    assert in_csv.keys() == in_json.keys()
    timed = ("_entered_at", "time_to_first_")  # from each plan's own time
    assert {k: v for k, v in in_csv.items() if not k[1].endswith(timed[0]) and not k[1].startswith(timed[1])} == {
        k: v for k, v in in_json.items() if not k[1].endswith(timed[0]) and not k[1].startswith(timed[1])}
    stage_rows = [row for row in properties if row["name"] == "api_integration_stage"]
    assert all(row["stage_to"] == row["new_value"] and row["stage_from"] == "" for row in stage_rows)


def test_json_and_csv_list_rejected_contacts_and_keep_notes_on_stderr(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path
) -> None:
    config_file = write_toml(tmp_path / "config.toml", config_data(analytics, sandbox.url, tmp_path / "state.db"))
    analytics.add("ada@example.com", calls=5)
    analytics.add("grace@example.com", role="Astronaut")
    assert funnelsync("-c", str(config_file), "sync").returncode == 1
    (tmp_path / "state.db").unlink()  # a lost state: the sync would stop, and the plan says so

    result = funnelsync("-c", str(config_file), "plan", "--format", "json")
    as_csv = funnelsync("-c", str(config_file), "plan", "--format", "csv")

    assert result.returncode == 1 and as_csv.returncode == 1  # as `sync`: some records would be rejected
    document = json.loads(result.stdout)
    assert document["summary"]["lost_state"].endswith("a sync would stop; run `funnelsync state rebuild`")
    assert document["summary"]["requests"] is None
    assert [r["email"] for r in document["rejected"]] == ["grace@example.com"]
    assert "Astronaut" in document["rejected"][0]["reason"]
    rejected = [row for row in csv.DictReader(io.StringIO(as_csv.stdout)) if row["change"] == "rejected"]
    assert [(row["email"], row["contact"]) for row in rejected] == [("grace@example.com", "rejected")]
    assert "Astronaut" in rejected[0]["reason"]
    for output in (result, as_csv):
        assert "a sync would stop" in output.stderr


def test_format_is_for_a_dry_run_only(analytics: Analytics, sandbox: SandboxServer, tmp_path: Path) -> None:
    config_file = write_toml(tmp_path / "config.toml", config_data(analytics, sandbox.url, tmp_path / "state.db"))
    analytics.add("ada@example.com")
    result = funnelsync("-c", str(config_file), "sync", "--format", "json")
    assert result.returncode == 2 and "--format is for a dry run" in result.stderr
    assert sandbox.store.contacts_by_email() == {}


# -- the requests the sync will make -------------------------------------------------------------------


def test_no_change_costs_the_property_read_and_the_group_look_up() -> None:
    estimate = estimate_requests(PlannedSync(contacts_to_write=0), batch_size=100)
    assert estimate.total == 2 and estimate.parts["reads"] == 2


def test_contacts_go_in_batches_and_list_changes_in_chunks() -> None:
    operations = {(OperationKind.LIST_ADD, "Production"): 251, (OperationKind.LIST_REMOVE, "Production"): 3,
                  (OperationKind.LIST_ADD, "Onboarding"): 1, (OperationKind.ENROLL_WORKFLOW, "1234567"): 40,
                  (OperationKind.ENROLL_SEQUENCE, "5550001"): 7}
    estimate = estimate_requests(PlannedSync(contacts_to_write=201, operations=operations), batch_size=100)
    assert estimate.parts == {"reads": 2 + 2, "property set-up": 0, "contact batches": 3,
                              "lists and events set up": 0, "list membership": 2 + 1 + 1,
                              "workflow enrollments": 40, "sequence enrollments": 7, "custom events": 0}
    assert estimate.total == 58


def test_a_first_sync_checks_for_a_lost_state_and_sets_up_the_portal() -> None:
    planned = PlannedSync(contacts_to_write=1, properties_to_create=16, properties_gaining_options=1,
                          operations={(OperationKind.LIST_ADD, "Production"): 1,
                                      (OperationKind.ENROLL_EVENT, "api_over_quota"): 3},
                          state_is_empty=True, properties_to_search=6, portal_is_new=True)
    parts = estimate_requests(planned, batch_size=100).parts
    assert parts["reads"] == (1 + 2) + 2 + 2  # properties, 2 searches of 5; properties, group; list, event
    assert parts["property set-up"] == 1 + 16 + 1  # the group, the properties, the options
    assert parts["lists and events set up"] == 2
    assert parts["custom events"] == 3


@pytest.mark.parametrize(("requests", "per_10s", "seconds"), [
    (0, 90, 0.0), (1, 90, 0.0), (90, 90, 0.0), (91, 90, 10.0), (1234, 90, 130.0), (2978, 90, 330.0),
])
def test_the_rate_budget_lets_a_window_of_requests_through_every_10_seconds(
    requests: int, per_10s: int, seconds: float
) -> None:
    assert least_seconds(requests, per_10s) == seconds


def test_a_duration_reads_in_minutes_and_hours() -> None:
    assert [duration(s) for s in (40, 137, 330, 3900)] == ["40 s", "2 min 17 s", "5 min 30 s", "1 h 5 min"]


def _requests_during(sandbox: SandboxServer, config_file: Path, *command: str) -> int:
    before = len(sandbox.store.request_log())
    result = funnelsync("-c", str(config_file), *command, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return len(sandbox.store.request_log()) - before


def _estimate(config_file: Path) -> dict[str, Any]:
    requests: dict[str, Any] = json.loads(plan(config_file, "--format", "json"))["summary"]["requests"]
    return requests


def _bring_to_production(analytics: Path, developers: int) -> None:
    """Developers who made no call yesterday make 5,000: into production, out of the no-calls segments."""
    with sqlite3.connect(analytics) as db:
        idle = [email for (email,) in db.execute("SELECT email FROM usage WHERE used_event_count = 0 "
                                                 "ORDER BY email LIMIT ?", (developers,))]
        db.executemany("INSERT INTO api_calls_daily VALUES (?, date('now', '-1 day'), '/v1/customers', 200, 5000)",
                       [(email,) for email in idle])


def test_the_request_estimate_is_what_the_sync_then_sends(sandbox: SandboxServer, tmp_path: Path) -> None:
    """Within 2% (at least 3 requests): the estimate leaves out retries and refused batches narrowed
    down, which a sandbox without faults never needs; lists are taken to exist in a portal that
    has funnelsync's properties."""
    config_file = demo_config_file(tmp_path, sandbox, developers=400, requests_per_10s=5000)

    first = _estimate(config_file)
    sent = _requests_during(sandbox, config_file, "sync")
    assert abs(sent - first["total"]) <= max(3, sent // 50), (sent, first)
    one_a_contact = ("workflow enrollments", "sequence enrollments", "custom events")
    assert sum(first["parts"][part] for part in one_a_contact) > 100  # most of what a first sync sends

    _bring_to_production(tmp_path / "analytics.db", 40)
    again = _estimate(config_file)
    assert again["parts"]["list membership"] >= 2  # added to production, removed from the no-calls lists
    sent_again = _requests_during(sandbox, config_file, "sync")
    assert abs(sent_again - again["total"]) <= max(3, sent_again // 50), (sent_again, again)

    unchanged = _estimate(config_file)
    assert unchanged["total"] == _requests_during(sandbox, config_file, "sync") == 2


def test_the_plan_says_how_long_the_budget_makes_the_sync_take(sandbox: SandboxServer, tmp_path: Path) -> None:
    config_file = demo_config_file(tmp_path, sandbox, developers=400, requests_per_10s=90)
    requests = _estimate(config_file)
    total = requests["total"]
    seconds = 10 * ((total - 1) // 90)
    assert requests["at_least_seconds"] == seconds
    assert f"HubSpot requests: about {total:,}; at 90 per 10 s at least {duration(seconds)}\n" in plan(config_file)
