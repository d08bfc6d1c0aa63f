"""Shared fixtures: a sandbox over real HTTP, and a small analytics database with a config."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from funnelsync.config import Config, parse_config
from funnelsync.connectors.hubspot.paths import ApiPaths
from funnelsync.connectors.hubspot_settings import NEWEST_API_VERSION
from funnelsync.sandbox import SandboxServer
from tests.postgres import postgres_cluster, postgres_url, state_url  # noqa: F401  (fixtures)

TOKEN = "test-token-0123456789"
TOKEN_ENV = "FUNNELSYNC_TEST_HUBSPOT_TOKEN"


# These suites run under both the newest date version and the numbered ("legacy") paths; every
# other test under the default version.
UNDER_BOTH_API_VERSIONS = {"test_sync", "test_enrollment", "test_hubspot_failures", "test_rejections"}
_api_version = [NEWEST_API_VERSION]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.module.__name__.rpartition(".")[2] in UNDER_BOTH_API_VERSIONS:
        metafunc.parametrize("hubspot_api_version", [NEWEST_API_VERSION, "legacy"], indirect=True)


@pytest.fixture(autouse=True)
def hubspot_api_version(request: pytest.FixtureRequest) -> Iterator[str]:
    """The `[hubspot].api_version` that `config_data` writes."""
    _api_version[0] = getattr(request, "param", NEWEST_API_VERSION)
    yield _api_version[0]
    _api_version[0] = NEWEST_API_VERSION


def api_path(numbered: str) -> str:
    """A numbered HubSpot path (`/crm/v3/...`) as the running test's API version spells it."""
    paths = ApiPaths(_api_version[0])
    for legacy, current in (("/crm/v3/objects/contacts", paths.contacts),
                            ("/crm/v3/properties/contacts", paths.properties),
                            ("/crm/v3/lists", paths.lists), ("/automation/v4/sequences", paths.sequences)):
        if numbered.startswith(legacy):
            return current + numbered.removeprefix(legacy)
    return numbered


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    with SandboxServer(token=TOKEN) as server:
        yield server


@pytest.fixture(autouse=True)
def hubspot_token(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    return TOKEN


class Analytics:
    """A SQLite analytics database with one `usage` row per developer."""

    COLUMNS = ("email", "role", "used_event_count", "signed_up_at", "last_event_at")

    def __init__(self, path: Path) -> None:
        self.path = path
        with self._connect() as db:
            db.execute(
                "CREATE TABLE usage (email TEXT, role TEXT, used_event_count INTEGER, "
                "signed_up_at TEXT, last_event_at TEXT)"
            )

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path)

    @property
    def url(self) -> str:
        return f"sqlite:///{self.path}"

    def add(self, email: str, role: str | None = "Engineering", calls: Any = 0,
            signed_up_at: str | None = "2026-01-15", last_event_at: str | None = None) -> None:
        with self._connect() as db:
            db.execute("INSERT INTO usage VALUES (?, ?, ?, ?, ?)", (email, role, calls, signed_up_at, last_event_at))

    def add_many(self, count: int, *, calls: int = 0, prefix: str = "dev") -> list[str]:
        emails = [f"{prefix}{i}@example.com" for i in range(count)]
        with self._connect() as db:
            db.executemany(
                "INSERT INTO usage VALUES (?, 'Engineering', ?, '2026-01-15', NULL)",
                [(email, calls) for email in emails],
            )
        return emails

    def set_calls(self, email: str, calls: int) -> None:
        with self._connect() as db:
            db.execute("UPDATE usage SET used_event_count = ? WHERE email = ?", (calls, email))

    def set_role(self, email: str, role: str | None) -> None:
        with self._connect() as db:
            db.execute("UPDATE usage SET role = ? WHERE email = ?", (role, email))

    def remove(self, email: str) -> None:
        with self._connect() as db:
            db.execute("DELETE FROM usage WHERE email = ?", (email,))


@pytest.fixture
def analytics(tmp_path: Path) -> Analytics:
    return Analytics(tmp_path / "analytics.db")


def config_data(analytics: Analytics, base_url: str, state_path: Path) -> dict[str, Any]:
    return {
        "source": {"kind": "sql", "url": analytics.url, "key": "email",
                   "query": "SELECT email, role, used_event_count, signed_up_at, last_event_at FROM usage"},
        "hubspot": {"base_url": base_url, "token_env": TOKEN_ENV, "requests_per_10s": 250,
                    "property_group": "funnelsync", "api_version": _api_version[0]},
        "state": {"url": f"sqlite:///{state_path}"},
        "properties": [
            {"column": "used_event_count", "name": "used_event_count", "label": "Used Event Count", "type": "number"},
            {"column": "role", "name": "developer_role", "label": "Developer role", "type": "enumeration",
             "options": ["Engineering", "Product", "Sales"]},
            {"column": "signed_up_at", "name": "api_signed_up_at", "label": "Signed up", "type": "date"},
            {"column": "last_event_at", "name": "last_api_call_at", "label": "Last call", "type": "datetime"},
        ],
        "funnel": {
            "metric": "used_event_count", "property": "api_integration_stage", "label": "API integration stage",
            "stages": [
                {"value": "top", "label": "Not yet integrated"},
                {"value": "middle", "label": "Integrated in sandbox", "above": 0},
                {"value": "bottom", "label": "Integrated in production", "above": 1000},
            ],
        },
    }


@pytest.fixture
def config(analytics: Analytics, sandbox: SandboxServer, tmp_path: Path) -> Config:
    return parse_config(config_data(analytics, sandbox.url, tmp_path / "state.db"))
