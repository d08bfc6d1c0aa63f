"""What funnelsync refuses to do even when the config asks: change the source database, send a
token in clear text, write a property HubSpot sets itself, or resend an email HubSpot refuses."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from funnelsync.cli.runner import run_sync
from funnelsync.config import Config, load_config, parse_config
from funnelsync.connectors.sql import SqlUsageSource
from funnelsync.connectors.sql_settings import SqlSource
from funnelsync.errors import ConfigError
from funnelsync.mappings.contacts import normalize_email
from funnelsync.sandbox import SandboxServer
from tests.conftest import TOKEN, Analytics, api_path, config_data
from tests.test_cli import funnelsync, write_toml

UPSERT = api_path("/crm/v3/objects/contacts/batch/upsert")
NOT_A_SELECT = "the source query must be a SELECT"


def problem(caught: pytest.ExceptionInfo[ConfigError]) -> tuple[str, str]:
    [only] = caught.value.problems
    return only.key, only.message


def read_all(url: str, query: str) -> list[dict[str, Any]]:
    source = SqlUsageSource(SqlSource(kind="sql", url=url, query=query))
    try:
        return list(source.read().rows)
    finally:
        source.close()


# 1. The SQL source is only ever read


class Warehouse:
    """A SQLite analytics file whose `usage` is a view, as analytics databases often have."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / "warehouse.db"
        with sqlite3.connect(self.path) as db:
            db.execute("CREATE TABLE events (email TEXT, used_event_count INTEGER)")
            db.execute("INSERT INTO events VALUES ('ada@example.com', 5), ('grace@example.com', 0)")
            db.execute("CREATE VIEW usage AS SELECT email, used_event_count FROM events")
        self.url = f"sqlite:///{self.path}"

    def digest(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()

    def schema(self) -> list[tuple[str, str]]:
        with sqlite3.connect(f"file:{self.path}?mode=ro", uri=True) as db:
            return db.execute("SELECT type, name FROM sqlite_master ORDER BY name").fetchall()

    def journal_mode(self) -> str:
        with sqlite3.connect(f"file:{self.path}?mode=ro", uri=True) as db:
            return str(db.execute("PRAGMA journal_mode").fetchone()[0])

    def files(self) -> set[str]:
        return {p.name for p in self.folder.iterdir()}


@pytest.fixture
def warehouse(tmp_path: Path) -> Warehouse:
    folder = tmp_path / "warehouse"
    folder.mkdir()
    return Warehouse(folder)


def writing_statements(folder: Path) -> list[str]:
    return [
        "DROP VIEW usage",
        "CREATE TABLE copied AS SELECT * FROM events",
        f"ATTACH '{folder / 'attached.db'}' AS other",
        "PRAGMA journal_mode = WAL",
        "DELETE FROM events",
        "UPDATE events SET used_event_count = 0",
        "WITH gone AS (SELECT email FROM events) DELETE FROM events WHERE email IN gone",
    ]


@pytest.mark.parametrize("index", range(len(writing_statements(Path()))))
def test_a_sqlite_source_query_that_is_not_a_select_is_refused_and_the_file_left_as_it_was(
    warehouse: Warehouse, index: int
) -> None:
    statement = writing_statements(warehouse.folder)[index]
    before = (warehouse.digest(), warehouse.schema(), warehouse.journal_mode(), warehouse.files())
    with pytest.raises(ConfigError) as caught:
        read_all(warehouse.url, statement)
    key, message = problem(caught)
    assert key == "source.query"
    assert message.startswith(NOT_A_SELECT)
    assert caught.value.exit_status == 2
    after = (warehouse.digest(), warehouse.schema(), warehouse.journal_mode(), warehouse.files())
    assert after == before
    assert ("view", "usage") in warehouse.schema() and warehouse.journal_mode() == "delete"
    assert "attached.db" not in warehouse.files()


def test_a_sqlite_source_query_that_returns_no_rows_is_refused(warehouse: Warehouse) -> None:
    with pytest.raises(ConfigError) as caught:
        read_all(warehouse.url, "-- the query was left out")
    key, message = problem(caught)
    assert key == "source.query"
    assert message.startswith(NOT_A_SELECT) and "returns no rows" in message


def test_a_sqlite_source_still_reads_its_rows(warehouse: Warehouse) -> None:
    rows = read_all(warehouse.url, "SELECT email, used_event_count FROM usage ORDER BY email")
    assert rows == [{"email": "ada@example.com", "used_event_count": 5},
                    {"email": "grace@example.com", "used_event_count": 0}]
    assert warehouse.files() == {"warehouse.db"}  # no journal or WAL file left beside it


def test_a_sqlite_source_that_does_not_exist_is_a_config_error_and_is_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "anaytics.db"  # misspelled
    with pytest.raises(ConfigError) as caught:
        read_all(f"sqlite:///{missing}", "SELECT email FROM usage")
    key, message = problem(caught)
    assert key == "source.url"
    assert str(missing) in message
    assert not missing.exists()


@pytest.mark.parametrize("command", ["validate", "sync"])
def test_the_cli_refuses_a_writing_source_query_with_exit_2_and_no_traceback(
    warehouse: Warehouse, sandbox: SandboxServer, tmp_path: Path, command: str
) -> None:
    data = config_data(Analytics(tmp_path / "unused.db"), sandbox.url, tmp_path / "state.db")
    data["source"] = {"kind": "sql", "url": warehouse.url, "key": "email", "query": "DROP VIEW usage"}
    data["properties"] = data["properties"][:1]
    before = warehouse.digest()
    result = funnelsync("-c", str(write_toml(tmp_path / "config.toml", data)), command)
    assert result.returncode == 2, result.stderr
    assert f"source.query: {NOT_A_SELECT}" in result.stderr
    assert "Traceback" not in result.stderr
    assert warehouse.digest() == before and ("view", "usage") in warehouse.schema()
    assert sandbox.store.write_count() == 0


@pytest.mark.parametrize("command", ["validate", "sync"])
def test_the_cli_names_a_missing_sqlite_source_with_exit_2(
    sandbox: SandboxServer, tmp_path: Path, command: str
) -> None:
    data = config_data(Analytics(tmp_path / "analytics.db"), sandbox.url, tmp_path / "state.db")
    missing = tmp_path / "analytcs.db"
    data["source"]["url"] = f"sqlite:///{missing}"
    result = funnelsync("-c", str(write_toml(tmp_path / "config.toml", data)), command)
    assert result.returncode == 2, result.stderr
    assert "source.url: there is no SQLite database at " + str(missing) in result.stderr
    assert "Traceback" not in result.stderr
    assert not missing.exists()


@pytest.fixture
def pg_usage(postgres_url: str) -> sa.Engine:
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE usage (email text, used_event_count integer)"))
        conn.execute(sa.text("INSERT INTO usage VALUES ('ada@example.com', 5), ('grace@example.com', 0)"))
        conn.execute(sa.text("CREATE SEQUENCE counter"))
    return engine


def pg_snapshot(engine: sa.Engine) -> tuple[list[Any], set[str], int]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT email, used_event_count FROM usage ORDER BY email")).all()
        counter = conn.execute(sa.text("SELECT last_value FROM counter")).scalar_one()
    return [tuple(r) for r in rows], set(sa.inspect(engine).get_table_names()), counter


@pytest.mark.parametrize(
    "statement",
    [
        "DELETE FROM usage",
        "DELETE FROM usage RETURNING email",
        "CREATE TABLE copied AS SELECT * FROM usage",
        "UPDATE usage SET used_event_count = 0",
        "SELECT nextval('counter') AS email",  # a SELECT that writes: only a read-only transaction stops it
        "WITH gone AS (DELETE FROM usage RETURNING email) SELECT email FROM gone",
    ],
)
def test_a_postgresql_source_query_that_writes_is_refused_and_nothing_changes(
    pg_usage: sa.Engine, postgres_url: str, statement: str
) -> None:
    before = pg_snapshot(pg_usage)
    with pytest.raises(ConfigError) as caught:
        read_all(postgres_url, statement)
    key, message = problem(caught)
    assert key == "source.query"
    assert message.startswith(NOT_A_SELECT)
    assert pg_snapshot(pg_usage) == before
    pg_usage.dispose()


def test_a_postgresql_source_query_that_returns_no_rows_is_refused(pg_usage: sa.Engine, postgres_url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        read_all(postgres_url, "SET search_path = public")
    key, message = problem(caught)
    assert key == "source.query" and "returns no rows" in message
    assert read_all(postgres_url, "SELECT email FROM usage ORDER BY email") == [
        {"email": "ada@example.com"}, {"email": "grace@example.com"}]
    pg_usage.dispose()


def test_relative_sqlite_paths_are_taken_from_the_config_files_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    (tmp_path / "elsewhere").mkdir()
    path = folder / "config.toml"
    path.write_text('[source]\nkind = "sql"\nurl = "sqlite:///data/analytics.db"\nquery = "SELECT 1"\n'
                    '[state]\nurl = "sqlite:///state.db"\n')
    monkeypatch.chdir(tmp_path / "elsewhere")
    config = load_config("../etc/config.toml")
    assert config.source.url == f"sqlite:///{tmp_path}/etc/data/analytics.db"  # type: ignore[union-attr]
    assert config.state.url == f"sqlite:///{tmp_path}/etc/state.db"
    untouched = parse_config({"source": {"kind": "sql", "url": "sqlite:///analytics.db", "query": "SELECT 1"},
                              "state": {"url": "postgresql+psycopg://u:secret@db/state"}})
    assert untouched.source.url == "sqlite:///analytics.db"  # type: ignore[union-attr]
    assert untouched.state.url == "postgresql+psycopg://u:secret@db/state"


def test_the_default_state_beside_the_config_and_absolute_and_server_urls_kept(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f'[source]\nkind = "sql"\nurl = "sqlite:////{tmp_path}/a.db"\nquery = "SELECT 1"\n')
    config = load_config(path)
    assert config.source.url == f"sqlite:////{tmp_path}/a.db"  # type: ignore[union-attr]
    assert config.state.url == f"sqlite:///{tmp_path}/funnelsync-state.db"
    path.write_text('[source]\nkind = "sql"\nurl = "postgresql+psycopg://u:p%40ss@db/analytics"\nquery = "SELECT 1"\n')
    assert load_config(path).source.url == "postgresql+psycopg://u:p%40ss@db/analytics"  # type: ignore[union-attr]


def test_a_sync_started_from_another_folder_reads_and_keeps_its_files_beside_the_config(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    folder = tmp_path / "deploy"
    folder.mkdir()
    (tmp_path / "elsewhere").mkdir()
    Analytics(folder / "analytics.db").add("ada@example.com", calls=5)
    data = config_data(Analytics(tmp_path / "unused.db"), sandbox.url, tmp_path / "unused-state.db")
    data["source"]["url"] = "sqlite:///analytics.db"
    data["state"]["url"] = "sqlite:///state.db"
    write_toml(folder / "config.toml", data)
    result = subprocess.run([sys.executable, "-m", "funnelsync", "-c", "../deploy/config.toml", "sync"],
                            cwd=tmp_path / "elsewhere", capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "ada@example.com" in sandbox.store.contacts_by_email()
    assert (folder / "state.db").exists()
    assert list((tmp_path / "elsewhere").iterdir()) == []


# 2. Tokens never travel in clear text


HUBSPOT_REFUSED = [
    ("http://api.hubapi.com", "clear text"),
    ("http://10.0.0.5:8765", "clear text"),
    ("http://127.0.0.1.example.com", "clear text"),
    ("https://api.hubapi.com?x=1", "query string"),
    ("https://api.hubapi.com/?", "query string"),
    ("https://api.hubapi.com#top", "fragment"),
    ("https://user:secret@api.hubapi.com", "user name or password"),
    ("https://token@api.hubapi.com", "user name or password"),
    ("https://api.hubapi.com:http", "port"),
    ("ftp://api.hubapi.com", "http(s) URL"),
]


@pytest.mark.parametrize(("url", "says"), HUBSPOT_REFUSED)
def test_a_hubspot_base_url_that_could_leak_the_token_is_a_config_error(url: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"source": {"kind": "sql", "url": "sqlite://", "query": "SELECT 1"},
                      "hubspot": {"base_url": url}})
    key, message = problem(caught)
    assert key == "hubspot.base_url"
    assert says in message
    if says == "clear text":
        assert "the token would travel in clear text; use https://" in message


@pytest.mark.parametrize(
    ("url", "says"),
    [("http://moesif-proxy:9500/api/v1", "clear text"), ("http://api.moesif.com/v1", "clear text"),
     ("https://api.moesif.com/v1?org=1", "query string"), ("https://k:s@api.moesif.com/v1", "user name")],
)
def test_a_moesif_base_url_that_could_leak_the_token_is_a_config_error(url: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"source": {"kind": "moesif", "base_url": url}})
    key, message = problem(caught)
    assert key == "source.base_url"
    assert says in message


@pytest.mark.parametrize(
    "url",
    ["https://api.hubapi.com", "http://127.0.0.1:8765", "http://127.8.9.10:8765", "http://localhost:8765",
     "http://[::1]:8765", "https://eu1.api.hubapi.com/"],
)
def test_https_and_loopback_http_base_urls_are_accepted(url: str) -> None:
    config = parse_config({"source": {"kind": "moesif", "base_url": url}, "hubspot": {"base_url": url}})
    assert config.hubspot.base_url == url.rstrip("/")
    assert config.source.base_url == url.rstrip("/")  # type: ignore[union-attr]


@pytest.mark.parametrize("url", ["https://api.hubapi.com?x=1", "http://api.hubapi.com"])
def test_the_cli_refuses_a_base_url_that_could_leak_the_token_with_exit_2(
    analytics: Analytics, tmp_path: Path, url: str
) -> None:
    path = write_toml(tmp_path / "config.toml", config_data(analytics, url, tmp_path / "state.db"))
    result = funnelsync("-c", str(path), "validate")
    assert result.returncode == 2, result.stderr
    assert f"hubspot.base_url: {url!r}" in result.stderr
    assert "Traceback" not in result.stderr and TOKEN not in result.stderr


# 3. Properties HubSpot sets itself are never mapped


def sandbox_properties(sandbox: SandboxServer) -> dict[str, dict[str, Any]]:
    answer = requests.get(f"{sandbox.url}{api_path('/crm/v3/properties/contacts')}",
                          headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert answer.status_code == 200
    return {prop["name"]: prop for prop in answer.json()["results"]}


def test_the_sandbox_marks_the_properties_hubspot_sets_itself_read_only(sandbox: SandboxServer) -> None:
    properties = sandbox_properties(sandbox)
    read_only = {name for name, prop in properties.items() if prop["modificationMetadata"]["readOnlyValue"]}
    assert read_only == {"hs_object_id", "createdate", "lastmodifieddate"}
    assert properties["email"]["modificationMetadata"] == {
        "archivable": False, "readOnlyDefinition": True, "readOnlyValue": False}


def test_the_sandbox_refuses_a_batch_that_writes_a_read_only_property(sandbox: SandboxServer) -> None:
    body = {"inputs": [{"idProperty": "email", "id": "ada@example.com",
                        "properties": {"firstname": "Ada", "createdate": "1700000000000"}}]}
    answer = requests.post(f"{sandbox.url}{UPSERT}", json=body, headers={"Authorization": f"Bearer {TOKEN}"},
                           timeout=10)
    assert answer.status_code == 400
    refusal = answer.json()
    assert refusal["category"] == "VALIDATION_ERROR"
    assert [(e["code"], e["context"]["propertyName"]) for e in refusal["errors"]] == [
        ("READ_ONLY_VALUE", ["createdate"])]
    assert "createdate" in refusal["message"]
    assert sandbox.store.contacts_by_email() == {}


READ_ONLY = [("hs_object_id", "used_event_count", "number"), ("createdate", "last_event_at", "datetime"),
             ("lastmodifieddate", "signed_up_at", "datetime")]


def with_read_only_mapping(analytics: Analytics, sandbox: SandboxServer, tmp_path: Path, name: str, column: str,
                           type_: str) -> dict[str, Any]:
    data = config_data(analytics, sandbox.url, tmp_path / "state.db")
    data["properties"].append({"column": column, "name": name, "label": "Mapped", "type": type_})
    return data


@pytest.mark.parametrize(("name", "column", "type_"), READ_ONLY)
def test_a_sync_refuses_a_mapping_to_a_read_only_property_before_any_write(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path, name: str, column: str, type_: str
) -> None:
    analytics.add("ada@example.com", calls=5, last_event_at="2026-01-20T10:00:00")
    data = with_read_only_mapping(analytics, sandbox, tmp_path, name, column, type_)
    with pytest.raises(ConfigError) as caught:
        run_sync(parse_config(data), dry_run=False)
    key, message = problem(caught)
    assert key == "properties[4].name"
    assert "HubSpot does not let API writes change" in message and repr(name) in message
    assert sandbox.store.write_count() == 0
    assert sandbox.store.contacts_by_email() == {}


@pytest.mark.parametrize("command", ["validate", "sync"])
def test_the_cli_refuses_a_mapping_to_hs_object_id_with_exit_2(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path, command: str
) -> None:
    analytics.add("ada@example.com", calls=5)
    data = with_read_only_mapping(analytics, sandbox, tmp_path, "hs_object_id", "used_event_count", "number")
    result = funnelsync("-c", str(write_toml(tmp_path / "config.toml", data)), command)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "properties[4].name: HubSpot does not let API writes change the contact property 'hs_object_id'" \
        in result.stderr
    assert "Traceback" not in result.stderr
    assert sandbox.store.write_count() == 0


# 4. Internationalised email domains


@pytest.mark.parametrize(
    ("raw", "email"),
    [
        ("dev@bücher.example", "dev@xn--bcher-kva.example"),
        (" Dev@BÜCHER.Example ", "dev@xn--bcher-kva.example"),
        ("dev@bücher\u3002example", "dev@xn--bcher-kva.example"),  # an ideographic full stop is a dot
        ("kim@straße.de", "kim@xn--strae-oqa.de"),  # IDNA 2008: not strasse.de, another domain
        ("dev@xn--bcher-kva.example", "dev@xn--bcher-kva.example"),
    ],
)
def test_an_internationalised_domain_becomes_its_ascii_form(raw: str, email: str) -> None:
    assert normalize_email(raw) == email


@pytest.mark.parametrize(
    "raw", ["dev@☃.example", "dev@exa\u200emple.com", "dev@" + "ü" * 70 + ".example", "dév@bücher.example",
            "dev@bücher", "dev@.bücher.example"],
)
def test_a_domain_with_no_ascii_form_is_not_an_email(raw: str) -> None:
    assert normalize_email(raw) is None


def test_a_unicode_domain_contact_is_written_once_and_an_unencodable_one_skipped_every_run(
    config: Config, analytics: Analytics, sandbox: SandboxServer
) -> None:
    analytics.add("dev@bücher.example", calls=5)
    analytics.add("snow@☃.example", calls=5)
    first = run_sync(config, dry_run=False)
    assert first.written == 1
    assert first.skipped == {"invalid email": 1}
    contacts = sandbox.store.contacts_by_email()
    assert set(contacts) == {"dev@xn--bcher-kva.example"}
    assert contacts["dev@xn--bcher-kva.example"]["properties"]["used_event_count"] == "5"
    upserts = sandbox.store.write_count(UPSERT)
    second = run_sync(config, dry_run=False)
    assert (second.written, second.to_write, second.unchanged) == (0, 0, 1)
    assert second.skipped == {"invalid email": 1}
    assert sandbox.store.write_count(UPSERT) == upserts
