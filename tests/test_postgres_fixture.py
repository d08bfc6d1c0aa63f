"""The throwaway PostgreSQL server of tests/postgres.py: real, isolated per test, loud if broken."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from funnelsync.state import StateStore
from funnelsync.state.models import RunOutcome
from tests.postgres import (
    DIR_PREFIX,
    OWNER_FILE,
    PostgresCluster,
    PostgresUnavailable,
    find_bindir,
    reap_leftover_clusters,
)

# The fixtures come from tests/conftest.py, which imports them from tests.postgres; naming the
# module here too keeps this file working on its own (pytest then uses conftest's, one cluster).
pytest_plugins = ["tests.postgres", "pytester"]

EngineFor = Callable[[str], sa.Engine]
STATE_TABLES = {"contacts", "funnelsync_meta", "rejects", "runs", "stage_changes"}


@pytest.fixture
def engine_for() -> Iterator[EngineFor]:
    engines: list[sa.Engine] = []

    def make(url: str) -> sa.Engine:
        engines.append(sa.create_engine(url))
        return engines[-1]

    yield make
    for engine in engines:
        engine.dispose()


def tables(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def test_server_is_a_real_postgresql_15_or_later(postgres_url: str, engine_for: EngineFor) -> None:
    engine = engine_for(postgres_url)
    assert engine.dialect.name == "postgresql"
    assert engine.dialect.driver == "psycopg"
    with engine.connect() as conn:
        assert (
            conn.execute(sa.text("SELECT current_setting('server_version_num')::int")).scalar()
            >= 150000
        )
        assert conn.execute(sa.text("SELECT current_user")).scalar() == "postgres"
        assert conn.execute(sa.text("SHOW fsync")).scalar() == "off"
        assert conn.execute(sa.text("SELECT 6 * 7")).scalar() == 42


def test_url_is_a_sqlalchemy_url_on_localhost(
    postgres_url: str, postgres_cluster: PostgresCluster
) -> None:
    url = sa.make_url(postgres_url)
    assert url.drivername == "postgresql+psycopg"
    assert (url.username, url.host, url.port) == ("postgres", "127.0.0.1", postgres_cluster.port)
    assert url.database and url.database.startswith("t_")


def test_databases_do_not_see_each_others_tables(
    postgres_cluster: PostgresCluster, engine_for: EngineFor
) -> None:
    names = [postgres_cluster.unique_name("iso"), postgres_cluster.unique_name("iso")]
    one, other = (engine_for(postgres_cluster.new_database(name)) for name in names)
    try:
        with one.begin() as conn:
            conn.execute(sa.text("CREATE TABLE only_here (id int PRIMARY KEY)"))
            conn.execute(sa.text("INSERT INTO only_here VALUES (1)"))
        assert tables(one) == {"only_here"}
        assert tables(other) == set()
        with other.connect() as conn, pytest.raises(sa.exc.ProgrammingError, match="only_here"):
            conn.execute(sa.text("SELECT * FROM only_here"))
    finally:
        for name in names:
            postgres_cluster.drop_database(name)


@pytest.mark.parametrize("turn", [1, 2])
def test_each_test_gets_a_fresh_empty_database(
    postgres_url: str, engine_for: EngineFor, turn: int
) -> None:
    engine = engine_for(postgres_url)
    assert tables(engine) == set()  # the other turn's table is not here
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE probe (turn int)"))
        conn.execute(sa.text("INSERT INTO probe VALUES (:turn)"), {"turn": turn})


def test_state_store_creates_its_tables_and_reopens(
    postgres_url: str, engine_for: EngineFor
) -> None:
    first = StateStore(postgres_url)
    try:
        assert first.engine.dialect.name == "postgresql"
        assert tables(engine_for(postgres_url)) >= STATE_TABLES
        run = first.start_run()
        first.finish_run(run, RunOutcome.OK, contacts_written=1)
    finally:
        first.close()
    second = StateStore(postgres_url)  # finds funnelsync's tables: opens, creates nothing
    try:
        assert [r.outcome for r in second.recent_runs()] == [RunOutcome.OK]
        with second.exclusive():
            pass
    finally:
        second.close()


def test_state_url_gives_each_backend(state_url: str, request: pytest.FixtureRequest) -> None:
    backend = request.node.callspec.id
    assert sa.make_url(state_url).get_backend_name() == backend
    store = StateStore(state_url)
    try:
        assert store.contact_count() == 0
        assert store.engine.dialect.name == backend
    finally:
        store.close()
    StateStore(state_url).close()


def test_cluster_listens_on_localhost_and_a_unix_socket(postgres_cluster: PostgresCluster) -> None:
    assert postgres_cluster.port is not None
    with socket.create_connection(("127.0.0.1", postgres_cluster.port), timeout=5):
        pass
    sock = postgres_cluster.socket_dir / f".s.PGSQL.{postgres_cluster.port}"
    assert stat.S_ISSOCK(sock.stat().st_mode)
    assert postgres_cluster.directory is not None
    assert postgres_cluster.directory.name.startswith(DIR_PREFIX)
    assert postgres_cluster.startup_seconds is not None and postgres_cluster.startup_seconds < 30


def test_server_runs_as_the_postgres_user_when_tests_run_as_root(
    postgres_cluster: PostgresCluster,
) -> None:
    owner = postgres_cluster.data_dir.stat().st_uid
    if os.geteuid() == 0:
        assert pwd.getpwuid(owner).pw_name == "postgres"
    else:
        assert owner == os.geteuid()


def test_bad_database_names_are_refused(postgres_cluster: PostgresCluster) -> None:
    for name in ("", "Upper", "semi;colon", "x" * 64, "1abc"):
        with pytest.raises(ValueError, match="database name"):
            postgres_cluster.new_database(name)


# -- failing loudly, and cleaning up ---------------------------------------------------------------


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A temp dir the `postgres` user can reach too (pytest's tmp_path is root's own, 0700)."""
    path = Path(tempfile.mkdtemp(prefix="pgfixture-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_missing_binaries_are_reported_with_where_it_looked(shared_tmp: Path) -> None:
    cluster = PostgresCluster(bindir=shared_tmp, base_dir=shared_tmp)
    with pytest.raises(
        PostgresUnavailable, match=r"no PostgreSQL server binaries \(initdb and pg_ctl\)"
    ) as failure:
        cluster.start()
    assert str(shared_tmp) in str(failure.value)
    assert not cluster.running
    assert not list(shared_tmp.glob(DIR_PREFIX + "*")), "a failed start leaves its directory behind"


def test_a_failing_initdb_shows_its_output(shared_tmp: Path) -> None:
    bindir = shared_tmp / "bin"
    bindir.mkdir()
    for tool in ("initdb", "pg_ctl"):
        (bindir / tool).write_text("#!/bin/sh\necho 'initdb: error: disk on fire' >&2\nexit 1\n")
        (bindir / tool).chmod(0o755)
    cluster = PostgresCluster(bindir=bindir, base_dir=shared_tmp)
    with pytest.raises(PostgresUnavailable, match=r"(?s)initdb failed \(exit 1\).*disk on fire"):
        cluster.start()
    assert not list(shared_tmp.glob(DIR_PREFIX + "*"))


def test_a_server_that_will_not_start_shows_the_server_log(shared_tmp: Path) -> None:
    cluster = PostgresCluster(base_dir=shared_tmp, settings={"shared_buffers": "lots"})
    with pytest.raises(PostgresUnavailable) as failure:
        cluster.start()
    message = str(failure.value)
    assert "pg_ctl could not start the server" in message
    assert "invalid value for parameter" in message and "shared_buffers" in message  # from the log
    assert not list(shared_tmp.glob(DIR_PREFIX + "*"))


def test_the_binaries_are_found() -> None:
    bindir = find_bindir()
    assert (bindir / "initdb").exists() and (bindir / "pg_ctl").exists()


def test_a_cluster_left_by_a_killed_run_is_stopped_and_removed(shared_tmp: Path) -> None:
    orphan = PostgresCluster(base_dir=shared_tmp).start()
    assert orphan.directory is not None and orphan.port is not None
    directory, port = orphan.directory, orphan.port
    # The run that started it was killed: its owner process is gone, the server still runs.
    dead = subprocess.Popen(["true"])
    dead.wait()
    (directory / OWNER_FILE).write_text(f"{dead.pid}\n")
    alive = PostgresCluster(base_dir=shared_tmp)
    try:
        assert reap_leftover_clusters(shared_tmp) == [directory]
        assert not directory.exists()
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        # A live run's cluster is left alone.
        alive.start()
        assert reap_leftover_clusters(shared_tmp) == []
        assert alive.directory is not None and alive.directory.exists()
    finally:
        alive.stop()
        orphan.stop()  # already gone: a no-op
    assert not list(shared_tmp.glob(DIR_PREFIX + "*"))


def test_the_fixture_fails_and_never_skips_when_postgresql_cannot_start(
    pytester: pytest.Pytester, shared_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FUNNELSYNC_TEST_PG_BINDIR", str(shared_tmp))  # no initdb there
    pytester.makeconftest("from tests.postgres import postgres_cluster, postgres_url  # noqa: F401")
    pytester.makepyfile("def test_needs_postgres(postgres_url):\n    assert postgres_url\n")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*cannot start the test PostgreSQL server: no PostgreSQL server*"])
