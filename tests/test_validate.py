"""`funnelsync validate` as a RevOps admin relies on it: every problem a sync would refuse the
config for, found in one run, each at its key; and what it passes, a sync runs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from funnelsync.config import parse_config
from funnelsync.sandbox import SandboxServer
from funnelsync.sync.preflight import preflight
from tests.conftest import TOKEN_ENV, Analytics, config_data
from tests.test_cli import free_port, funnelsync, write_toml
from tests.test_moesif import BASE_URL, NOW, FakeMoesif, make_user
from tests.test_moesif import TOKEN as MOESIF_TOKEN

Mistake = Callable[[dict[str, Any], Path], None]


def unknown_function(data: dict[str, Any], _: Path) -> None:
    data.setdefault("segments", []).append(
        {"name": "quiet", "label": "Quiet for a week", "when": "days_ago(last_event_at) >= 7"})


def rule_column_missing(data: dict[str, Any], _: Path) -> None:
    data.setdefault("segments", []).append(
        {"name": "heavy", "label": "Heavy users", "when": "calls_last_30_days > 100"})


def metric_missing(data: dict[str, Any], _: Path) -> None:
    data["funnel"]["metric"] = "calls_a_day"


def signup_column_missing(data: dict[str, Any], _: Path) -> None:
    data["funnel"]["signup_column"] = "signed_up_on"


def state_folder_missing(data: dict[str, Any], tmp_path: Path) -> None:
    data["state"]["url"] = f"sqlite:///{tmp_path / 'no-such-folder' / 'state.db'}"


# (the mistake, the key it is reported at when it is the config's only mistake, what is said)
MISTAKES: list[tuple[Mistake, str, str]] = [
    (unknown_function, "segments[0].when", "unknown function 'days_ago'"),
    (rule_column_missing, "segments[0].when", "no column 'calls_last_30_days'"),
    (metric_missing, "funnel.metric", "no column 'calls_a_day'"),
    (signup_column_missing, "funnel.signup_column", "no column 'signed_up_on'"),
    (state_folder_missing, "state.url", "there is no folder"),
]


def config_file(analytics: Analytics, sandbox: SandboxServer, tmp_path: Path, *mistakes: Mistake,
                **hubspot: Any) -> Path:
    data = config_data(analytics, sandbox.url, tmp_path / "state.db")
    data["hubspot"].update(hubspot)
    for mistake in mistakes:
        mistake(data, tmp_path)
    return write_toml(tmp_path / "config.toml", data)


def test_validate_reports_every_mistake_a_sync_would_refuse_in_one_run(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path
) -> None:
    analytics.add("ada@example.com", calls=5)
    path = config_file(analytics, sandbox, tmp_path, *(mistake for mistake, _, _ in MISTAKES))
    result = funnelsync("-c", str(path), "validate")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "5 problem(s)" in result.stderr
    for key, says in [("segments[0].when", "unknown function 'days_ago'"),
                      ("segments[1].when", "no column 'calls_last_30_days'"),
                      ("funnel.metric", "no column 'calls_a_day'"),
                      ("funnel.signup_column", "no column 'signed_up_on'"),
                      ("state.url", "there is no folder")]:
        assert any(line.startswith(f"  - {key}: ") and says in line for line in result.stderr.splitlines()), key
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "no-such-folder").exists()
    assert sandbox.store.write_count() == 0


@pytest.mark.parametrize(("mistake", "key", "says"), MISTAKES, ids=[m.__name__ for m, _, _ in MISTAKES])
def test_what_validate_reports_sync_refuses_at_the_same_key_before_writing_anything(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path, mistake: Mistake, key: str, says: str
) -> None:
    analytics.add("ada@example.com", calls=5)
    path = config_file(analytics, sandbox, tmp_path, mistake)
    for command in ("validate", "sync"):
        result = funnelsync("-c", str(path), command)
        assert result.returncode == 2, (command, result.stdout + result.stderr)
        assert f"  - {key}: " in result.stderr and says in result.stderr, (command, result.stderr)
        assert "Traceback" not in result.stderr and "lock file" not in result.stderr
    assert sandbox.store.write_count() == 0
    assert not (tmp_path / "no-such-folder").exists()


def test_what_validate_passes_a_sync_runs_and_validate_creates_no_state(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path
) -> None:
    analytics.add("ada@example.com", calls=5)
    data = config_data(analytics, sandbox.url, tmp_path / "state.db")
    data["funnel"]["signup_column"] = "signed_up_at"
    data["segments"] = [{"name": "quiet", "label": "Quiet", "when": "days_since(last_event_at) >= 7"}]
    path = write_toml(tmp_path / "config.toml", data)
    result = funnelsync("-c", str(path), "validate")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "every segment rule compiles" in result.stdout and "state: can be opened" in result.stdout
    assert not (tmp_path / "state.db").exists()
    assert sandbox.store.write_count() == 0
    assert funnelsync("-c", str(path), "sync").returncode == 0


def test_validate_opens_the_state_on_either_backend_and_creates_nothing(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path, state_url: str
) -> None:
    analytics.add("ada@example.com", calls=5)
    data = config_data(analytics, sandbox.url, tmp_path / "state.db")
    data["state"]["url"] = state_url
    result = funnelsync("-c", str(write_toml(tmp_path / "config.toml", data)), "validate")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "state: can be opened" in result.stdout
    if state_url.startswith("sqlite"):
        assert not (tmp_path / "state_url.db").exists()
        return
    engine = sa.create_engine(state_url)
    try:
        assert sa.inspect(engine).get_table_names() == []
    finally:
        engine.dispose()


def test_an_unreachable_state_server_is_named_beside_the_configs_mistakes(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path
) -> None:
    data = config_data(analytics, sandbox.url, tmp_path / "state.db")
    data["state"]["url"] = f"postgresql+psycopg://funnelsync@127.0.0.1:{free_port()}/state?connect_timeout=5"
    metric_missing(data, tmp_path)
    result = funnelsync("-c", str(write_toml(tmp_path / "config.toml", data)), "validate")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "  - funnel.metric: " in result.stderr
    assert "  - state.url: cannot open the state database" in result.stderr
    assert "Traceback" not in result.stderr


def test_validate_names_a_missing_key_column_with_the_other_mistakes(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path
) -> None:
    data = config_data(analytics, sandbox.url, tmp_path / "state.db")
    data["source"]["key"] = "contact_email"
    metric_missing(data, tmp_path)
    result = funnelsync("-c", str(write_toml(tmp_path / "config.toml", data)), "validate")
    assert result.returncode == 2
    assert "  - source.key: " in result.stderr and "  - funnel.metric: " in result.stderr


def test_a_rate_above_hubspots_limit_is_allowed_for_another_server_without_a_warning(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path
) -> None:
    analytics.add("ada@example.com", calls=5)
    path = config_file(analytics, sandbox, tmp_path, requests_per_10s=1000)
    result = funnelsync("-c", str(path), "validate")
    assert result.returncode == 0, result.stderr
    assert "requests_per_10s" not in result.stderr
    assert funnelsync("-c", str(path), "sync").returncode == 0


def test_a_rate_above_hubspots_limit_against_hubspot_is_a_warning_from_validate_and_sync(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path
) -> None:
    # the token's variable is unset, so that nothing is sent to the real HubSpot
    path = config_file(analytics, sandbox, tmp_path, requests_per_10s=400, base_url="https://api.hubapi.com",
                       token_env="FUNNELSYNC_TEST_UNSET_TOKEN")
    result = funnelsync("-c", str(path), "validate")
    assert result.returncode == 2
    assert "warning: hubspot.requests_per_10s: 400 is above HubSpot's highest published burst limit" \
        in result.stderr
    assert "1 problem(s)" in result.stderr and "  - hubspot.token_env: " in result.stderr
    synced = funnelsync("-c", str(path), "sync")
    assert synced.returncode == 2
    [logged] = [line for line in synced.stderr.splitlines()
                if '"config warning"' in line and "hubspot.requests_per_10s" in line]
    assert '"level": "warning"' in logged


def test_a_quoted_number_is_named_at_its_key_by_validate_and_sync(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path
) -> None:
    path = config_file(analytics, sandbox, tmp_path, requests_per_10s="90")
    for command in ("validate", "sync"):
        result = funnelsync("-c", str(path), command)
        assert result.returncode == 2
        assert "hubspot.requests_per_10s: a whole number, not the string '90'" in result.stderr


def test_validate_checks_a_moesif_config_against_the_columns_its_settings_give(
    sandbox: SandboxServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FUNNELSYNC_TEST_MOESIF_TOKEN", MOESIF_TOKEN)
    config = parse_config({
        "source": {"kind": "moesif", "base_url": BASE_URL, "token_env": "FUNNELSYNC_TEST_MOESIF_TOKEN",
                   "fields": {"email": "email", "role": "metadata.role"}, "routes": {"calls_payments": "/payments"}},
        "hubspot": {"base_url": sandbox.url, "token_env": TOKEN_ENV},
        "state": {"url": f"sqlite:///{tmp_path / 'state.db'}"},
        "funnel": {"metric": "used_event_count",
                   "stages": [{"value": "top", "label": "Top"}, {"value": "middle", "label": "Middle", "above": 0}]},
        "segments": [
            {"name": "never_paid", "label": "Never paid", "when": "calls_payments == 0 && used_event_count > 0"},
            {"name": "refunds", "label": "Refunds", "when": "calls_refunds > 0"},
        ],
    })
    with FakeMoesif([make_user("u1", "ada@example.com")], [], now=NOW).serving(sandbox.url):
        found = preflight(config)
    assert found.columns is not None and {"role", "calls_payments", "last_event_at"} <= set(found.columns)
    assert [problem.key for problem in found.problems] == ["segments[1].when"]
    assert "calls_refunds" in found.problems[0].message
