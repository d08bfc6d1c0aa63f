"""The config: a RevOps admin's mistakes are reported with their TOML key, all at once."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from funnelsync.config import load_config, parse_config, read_token
from funnelsync.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def minimal(**overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "source": {"kind": "sql", "url": "sqlite://", "query": "SELECT 1"},
        "properties": [{"column": "n", "name": "used_event_count", "label": "Used", "type": "number"}],
        "funnel": {
            "metric": "n",
            "stages": [{"value": "top", "label": "Top"}, {"value": "middle", "label": "Middle", "above": 0}],
        },
    }
    data.update(overrides)
    return data


def problems_of(data: dict[str, object]) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    assert caught.value.exit_status == 2
    return {p.key: p.message for p in caught.value.problems}


def test_the_repository_default_config_is_valid() -> None:
    config = load_config(ROOT / "config.toml")
    assert [s.value for s in config.funnel.stages] == ["top", "middle", "bottom"]
    assert [s.above for s in config.funnel.stages] == [None, 0, 1000]


def test_every_problem_is_reported_at_once_with_its_key() -> None:
    data = minimal(
        hubspot={"requests_per_10s": 0, "tokn_env": "X"},
        properties=[
            {"column": "n", "name": "Bad Name", "label": "x", "type": "number"},
            {"column": "r", "name": "role", "label": "Role", "type": "enumeration"},
            {"column": "d", "name": "d", "label": "D", "type": "timestamp"},
        ],
    )
    found = problems_of(data)
    assert "hubspot.requests_per_10s" in found
    assert found["hubspot.tokn_env"] == "is not a known setting (check its spelling)"
    assert "not a HubSpot internal name" in found["properties[0].name"]
    assert "needs `options`" in found["properties[1]"]
    assert "properties[2].type" in found


def test_a_missing_section_is_named() -> None:
    found = problems_of({"properties": []})
    assert found == {"source": "is required"}


def test_an_unknown_source_kind_is_named() -> None:
    found = problems_of(minimal(source={"kind": "bigquery", "url": "x"}))
    assert found["source.kind"] == 'must be "sql" or "moesif"'


def test_stage_bounds_must_rise_in_funnel_order() -> None:
    funnel = {"metric": "n", "stages": [
        {"value": "top", "label": "T"},
        {"value": "bottom", "label": "B", "above": 1000},
        {"value": "middle", "label": "M", "above": 0},
    ]}
    found = problems_of(minimal(funnel=funnel))
    assert "rise strictly" in found["funnel"]


def test_a_malformed_cron_schedule_is_named() -> None:
    found = problems_of(minimal(daemon={"schedule": "every 15 minutes"}))
    assert "cron" in found["daemon.schedule"]


def test_two_mappings_to_one_property_are_refused() -> None:
    props = [
        {"column": "a", "name": "x", "label": "X", "type": "number"},
        {"column": "b", "name": "x", "label": "X again", "type": "number"},
    ]
    found = problems_of(minimal(properties=props))
    assert found == {"properties[1].name": "property 'x' is already written by properties[0].name"}


def test_malformed_toml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[source]\nkind = \n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "line 2" in str(caught.value)


def test_a_missing_config_file_says_how_to_point_at_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="FUNNELSYNC_CONFIG"):
        load_config(tmp_path / "nope.toml")


def test_the_token_comes_only_from_the_named_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_TOKEN", "  secret-value ")
    assert read_token("MY_TOKEN", "hubspot.token_env") == "secret-value"
    monkeypatch.delenv("MY_TOKEN")
    with pytest.raises(ConfigError) as caught:
        read_token("MY_TOKEN", "hubspot.token_env")
    assert "hubspot.token_env: the environment variable MY_TOKEN is not set" in str(caught.value)


DOCUMENTED_EXAMPLE = '''
[source]
kind = "sql"                         # "sql": any SQLAlchemy URL; "moesif": Management API
url = "sqlite:///analytics.db"
key = "email"                        # the column that identifies the contact
query = """
SELECT email, role, used_event_count, last_event_days_ago, signed_up_days_ago FROM usage
"""

[hubspot]
base_url = "https://api.hubapi.com"  # the sandbox: http://127.0.0.1:8765
token_env = "HUBSPOT_ACCESS_TOKEN"   # name of the environment variable with the private-app token
requests_per_10s = 90                # this daemon's share of the portal's burst limit
daily_request_budget = 200000
property_group = "funnelsync"        # created if missing

[state]
url = "sqlite:///funnelsync-state.db"   # or postgresql+psycopg://...

[daemon]
schedule = "*/15 * * * *"            # cron in UTC
http = "127.0.0.1:9108"

[[properties]]                       # field mappings: source column -> contact property
column = "used_event_count"
name = "used_event_count"            # HubSpot internal name; created if missing
label = "Used Event Count"
type = "number"                      # number | string | bool | date | datetime | enumeration

[[properties]]
column = "role"
name = "developer_role"
label = "Developer role"
type = "enumeration"
options = ["Product", "Engineering", "Marketing", "Customer Success", "Developer Relations", "Sales", "Support", "Executive"]

[funnel]
metric = "used_event_count"          # a source column
property = "api_integration_stage"   # an enumeration property, created with the stages as options
label = "API integration stage"
demote_after_days = 7                # leave out: stages only move forward

[[funnel.stages]]                    # in funnel order; a contact is in the last stage whose bound it is above
value = "top"
label = "Not yet integrated"

[[funnel.stages]]
value = "middle"
label = "Integrated in sandbox"
above = 0
enroll = { workflow_id = 1234567 }   # legacy v2 direct enrollment, once per entry into the stage

[[funnel.stages]]
value = "bottom"
label = "Integrated in production"
above = 1000
enroll = { list = "API funnel: production" }   # a static list kept in step: added on entry, removed on exit

[[segments]]                         # behavioural cohorts from the usage, kept in step in the CRM
name = "signed_up_no_calls"
label = "Signed up this week, no API calls yet"
when = "signed_up_days_ago <= 7 && used_event_count == 0"
enroll = { list = "Onboarding: no API calls yet" }
'''


def test_the_documented_example_is_a_valid_config() -> None:
    config = parse_config(tomllib.loads(DOCUMENTED_EXAMPLE))
    assert config.funnel.stages[1].enroll.workflow_id == 1234567
    assert config.funnel.stages[2].enroll.list == "API funnel: production"
    assert config.segments[0].enroll.list == "Onboarding: no API calls yet"
    assert config.columns_used()["signed_up_days_ago"] == "segments[0].when"


def test_a_segment_rule_that_does_not_parse_is_named_at_load() -> None:
    found = problems_of(minimal(segments=[{"name": "broken", "label": "B", "when": "used_event_count = 0"}]))
    assert "does not parse" in found["segments[0].when"]


def test_an_enroll_that_names_nothing_is_refused() -> None:
    funnel = minimal()["funnel"]
    funnel["stages"][1]["enroll"] = {}  # type: ignore[index]
    found = problems_of(minimal(funnel=funnel))
    assert "names none of workflow_id, list, sequence" in found["funnel.stages[1].enroll"]


def test_sequence_ids_must_be_digits() -> None:
    funnel = minimal()["funnel"]
    funnel["stages"][1]["enroll"] = {"sequence": {"id": "abc", "sender_email": "a@b.c", "user_id": 7}}  # type: ignore[index]
    found = problems_of(minimal(funnel=funnel))
    assert "not a HubSpot id" in found["funnel.stages[1].enroll.sequence.id"]


def test_the_environment_wins_over_the_file_for_what_differs_between_environments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "conf" / "config.toml"
    path.parent.mkdir()
    path.write_text((Path(__file__).parent.parent / "config.toml").read_text())
    monkeypatch.setenv("FUNNELSYNC_STATE_URL", "postgresql+psycopg://funnelsync:secret@db/state")
    monkeypatch.setenv("FUNNELSYNC_HTTP", "0.0.0.0:9108")
    monkeypatch.setenv("FUNNELSYNC_SOURCE_URL", "sqlite:///analytics.db")
    monkeypatch.chdir(tmp_path)
    config = load_config(path)
    assert config.state.url == "postgresql+psycopg://funnelsync:secret@db/state"
    assert config.daemon.http == "0.0.0.0:9108"
    assert config.source.url == "sqlite:///analytics.db"  # type: ignore[union-attr]  (a variable's path is the caller's)


def test_a_bad_value_from_the_environment_names_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "config.toml"
    path.write_text((Path(__file__).parent.parent / "config.toml").read_text())
    monkeypatch.setenv("FUNNELSYNC_HTTP", "no-port")
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    [problem] = raised.value.problems
    assert problem.key == "daemon.http (from $FUNNELSYNC_HTTP)" and "HOST:PORT" in problem.message


def test_relative_sqlite_paths_in_the_file_are_taken_from_its_folder(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "config.toml"
    path.parent.mkdir()
    path.write_text((Path(__file__).parent.parent / "config.toml").read_text())
    config = load_config(path)
    assert config.state.url.endswith(str(tmp_path / "conf" / "funnelsync-state.db"))


@pytest.mark.parametrize(("section", "key", "value", "says"), [
    ("hubspot", "requests_per_10s", "90", "a whole number, not the string '90'"),
    ("hubspot", "timeout_seconds", "30", "a number, not the string '30'"),
    ("hubspot", "batch_size", 50.0, "a whole number, not 50.0"),
    ("daemon", "stop_grace_seconds", True, "a number, not true"),
    ("state", "retention_days", "30", "a whole number, not the string '30'"),
    ("hubspot", "property_group", 7, "a string in quotes, not 7"),
])
def test_a_value_of_the_wrong_type_is_named_and_never_coerced(section: str, key: str, value: object,
                                                               says: str) -> None:
    found = problems_of(minimal(**{section: {key: value}}))
    assert found == {f"{section}.{key}": found[f"{section}.{key}"]}
    assert found[f"{section}.{key}"].startswith(says)


def test_a_quoted_stage_bound_or_workflow_id_is_named() -> None:
    funnel = minimal()["funnel"]
    funnel["stages"][1].update(above="0", enroll={"workflow_id": "1234567"})  # type: ignore[index]
    found = problems_of(minimal(funnel=funnel))
    assert found["funnel.stages[1].above"].startswith("a number, not the string '0'")
    assert found["funnel.stages[1].enroll.workflow_id"].startswith("a whole number, not the string '1234567'")


@pytest.mark.parametrize("given", [5550001, "5550001"])
def test_sequence_ids_may_be_integers_or_strings_of_digits(given: int | str) -> None:
    funnel = minimal()["funnel"]
    funnel["stages"][1]["enroll"] = {"sequence": {"id": given, "sender_email": "a@b.c", "user_id": given}}  # type: ignore[index]
    sequence = parse_config(minimal(funnel=funnel)).funnel.stages[1].enroll.sequence  # type: ignore[union-attr]
    assert sequence is not None and sequence.id == sequence.user_id == "5550001"


def test_a_sequence_id_that_is_a_boolean_is_named_once() -> None:
    funnel = minimal()["funnel"]
    funnel["stages"][1]["enroll"] = {"sequence": {"id": True, "sender_email": "a@b.c", "user_id": 7}}  # type: ignore[index]
    assert list(problems_of(minimal(funnel=funnel))) == ["funnel.stages[1].enroll.sequence.id"]


def test_any_positive_rate_is_accepted_and_only_hubspots_own_api_warns_above_its_limit() -> None:
    proxy = parse_config(minimal(hubspot={"requests_per_10s": 5000, "base_url": "https://hubspot-proxy.internal"}))
    assert proxy.hubspot.requests_per_10s == 5000 and proxy.warnings() == []
    assert parse_config(minimal(hubspot={"requests_per_10s": 250})).warnings() == []
    [warning] = parse_config(minimal(hubspot={"requests_per_10s": 251})).warnings()  # the default base URL
    assert warning.key == "hubspot.requests_per_10s" and "highest published burst limit" in warning.message
    assert "hubspot.requests_per_10s" in problems_of(minimal(hubspot={"requests_per_10s": 0}))


def test_the_readmes_configuration_example_is_a_valid_config() -> None:
    readme = (ROOT / "README.md").read_text()
    example = readme.split("## Configuration", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    config = parse_config(tomllib.loads(example))
    assert config.hubspot.requests_per_10s == 90 and config.warnings() == []
