"""The state under stress: daemons over one state, syncs started together, a database that is
not funnelsync's, a full disk, a read-only state, a connection dropped mid-run."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest
import sqlalchemy as sa

from funnelsync.config import Config
from funnelsync.daemon.scheduler import Daemon
from funnelsync.errors import StateError
from funnelsync.sandbox import SandboxServer
from funnelsync.state import StateStore
from funnelsync.state.models import RunOutcome
from tests.conftest import Analytics, config_data
from tests.postgres import PostgresCluster
from tests.test_cli import Daemon as DaemonProcess
from tests.test_cli import daemon_config, free_port, funnelsync, http_get, wait_for, write_toml

T = TypeVar("T")


def in_thread(function: Callable[[], T]) -> T:
    """Call `function` in a thread of its own, as APScheduler's worker threads call jobs."""
    result: list[T] = []
    thread = threading.Thread(target=lambda: result.append(function()))
    thread.start()
    thread.join()
    return result[0]


def expect_exactly(sandbox: SandboxServer, calls: dict[str, int]) -> None:
    contacts = sandbox.store.contacts_by_email()
    assert set(contacts) == set(calls)
    for email, count in calls.items():
        properties = contacts[email]["properties"]
        assert properties["used_event_count"] == str(count), email
        assert properties["api_integration_stage"] == ("middle" if count else "top"), email


def contact_count(url: str) -> int:
    store = StateStore(url)
    try:
        return store.contact_count()
    finally:
        store.close()


def with_password(url: str) -> str:
    """The same database with a password in its URL (trust authentication ignores it)."""
    return sa.make_url(url).set(password="hunter2-secret").render_as_string(hide_password=False)


def hidden(url: str) -> str:
    return sa.make_url(url).render_as_string(hide_password=True)


def state_config(analytics: Analytics, sandbox: SandboxServer, tmp_path: Path, state_url: str,
                 name: str = "config", **hubspot: Any) -> Path:
    data = config_data(analytics, sandbox.url, tmp_path / "unused.db")
    data["state"]["url"] = state_url
    data["hubspot"].update(hubspot)
    return write_toml(tmp_path / f"{name}.toml", data)


# -- 1. the leader lock --------------------------------------------------------------------------


def test_a_lone_daemon_stays_active_whichever_thread_runs_its_ticks(
    config: Config, analytics: Analytics, sandbox: SandboxServer
) -> None:
    analytics.add_many(5, calls=3)
    daemon = Daemon(config)
    try:
        for tick in range(6):
            in_thread(daemon.sync_job)
            assert daemon.leading, f"tick {tick}"
            assert daemon.health.role == "active", f"tick {tick}"
            assert in_thread(daemon._lead) is True, f"tick {tick}"
            assert in_thread(daemon.leader.still_held) is True
        assert daemon.health.runs == 6 and daemon.health.last_outcome == RunOutcome.OK
        assert daemon.metrics.registry.get_sample_value("funnelsync_runs_total", {"outcome": "ok"}) == 6
    finally:
        daemon.leader.release()
        daemon.state.close()
    expect_exactly(sandbox, {f"dev{i}@example.com": 3 for i in range(5)})


def test_a_standby_daemon_takes_over_within_seconds_of_the_active_ones_kill_9(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path
) -> None:
    analytics.add_many(10, calls=5)
    ports = [free_port(), free_port()]
    paths = [daemon_config(analytics, sandbox, tmp_path, port, f"daemon{n}", standby_poll_seconds=0.5)
             for n, port in enumerate(ports)]
    daemons = [DaemonProcess(paths[0], tmp_path / "first.log")]
    try:
        wait_for(lambda: '"role": "active"' in http_get(f"http://127.0.0.1:{ports[0]}/readyz")[1])
        daemons.append(DaemonProcess(paths[1], tmp_path / "second.log"))
        wait_for(lambda: '"role": "standby"' in http_get(f"http://127.0.0.1:{ports[1]}/readyz")[1])
        time.sleep(1.5)  # a few standby polls on both sides: the roles hold
        assert '"role": "active"' in http_get(f"http://127.0.0.1:{ports[0]}/readyz")[1]
        assert '"role": "standby"' in http_get(f"http://127.0.0.1:{ports[1]}/readyz")[1]
        daemons[0].process.kill()
        daemons[0].process.wait()
        killed = time.monotonic()
        wait_for(lambda: '"role": "active"' in http_get(f"http://127.0.0.1:{ports[1]}/readyz")[1], timeout=10)
        assert time.monotonic() - killed < 5
        assert daemons[1].stop() == 0
    finally:
        for daemon in daemons:
            daemon.close()
    assert "lost the state's leader lock" not in daemons[0].logs + daemons[1].logs


# -- 2. syncs started together on a new state ----------------------------------------------------


# `funnelsync sync` started COUNT times at once, as processes forked from one interpreter that
# imported funnelsync already: the starts land within milliseconds of each other, and fifty of
# them fit two cores. Each child's output goes to LOGS.n; the exit statuses are printed in order.
_STARTER = """
import os, sys, traceback
from funnelsync.cli.commands import main
import funnelsync.cli.runner  # noqa: F401  (what `sync` imports, before the forks)

config, count, logs = sys.argv[1], int(sys.argv[2]), sys.argv[3]
children = []
for n in range(count):
    pid = os.fork()
    if pid == 0:
        output = os.open(f"{logs}.{n}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(output, 1)
        os.dup2(output, 2)
        try:
            main(["-c", config, "sync"], prog_name="funnelsync")
            status = 0
        except SystemExit as exit:
            status = exit.code if isinstance(exit.code, int) else 1
        except BaseException:
            traceback.print_exc()
            status = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    children.append(pid)
for pid in children:
    print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
"""


def test_fifty_syncs_started_together_on_new_states_never_crash(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path
) -> None:
    emails = analytics.add_many(30, calls=5)
    statuses: Counter[int] = Counter()
    for wave in range(5):
        sandbox.reset()  # a new state over a portal that holds contacts is refused (a lost state)
        path = state_config(analytics, sandbox, tmp_path, f"sqlite:///{tmp_path / f'state{wave}.db'}", f"wave{wave}")
        logs = tmp_path / f"wave{wave}.log"
        started = subprocess.run([sys.executable, "-c", _STARTER, str(path), "10", str(logs)],
                                 capture_output=True, text=True, timeout=120, check=True)
        finished = [(int(status), Path(f"{logs}.{n}").read_text())
                    for n, status in enumerate(started.stdout.split())]
        assert len(finished) == 10
        for status, output in finished:
            assert "Traceback" not in output
            assert status in (0, 4), output
            if status == 4:
                assert "another funnelsync sync holds the state" in output
        assert 0 in [status for status, _ in finished]
        statuses.update(status for status, _ in finished)
        expect_exactly(sandbox, dict.fromkeys(emails, 5))
    assert sum(statuses.values()) == 50


# -- 3. a database that is not funnelsync's ------------------------------------------------------


def _relations(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        inspector = sa.inspect(engine)
        schemas = [None] if engine.dialect.name == "sqlite" else [
            s for s in inspector.get_schema_names() if s != "information_schema"]
        return {f"{schema}.{name}" for schema in schemas
                for name in inspector.get_table_names(schema) + inspector.get_view_names(schema)}
    finally:
        engine.dispose()


def test_a_database_holding_only_a_view_is_refused_and_left_untouched(state_url: str) -> None:
    engine = sa.create_engine(state_url)
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE VIEW customers AS SELECT 1 AS id"))
    engine.dispose()
    before = _relations(state_url)
    url = with_password(state_url) if state_url.startswith("postgresql") else state_url
    with pytest.raises(StateError, match="not funnelsync's") as refused:
        StateStore(url)
    assert hidden(url) in str(refused.value) and "hunter2" not in str(refused.value)
    assert "customers" in str(refused.value)
    assert _relations(state_url) == before
    assert not any(name.endswith((".alembic_version", ".funnelsync_meta")) for name in before)


def test_a_postgresql_database_with_a_table_in_another_schema_is_refused_and_left_untouched(
    postgres_url: str,
) -> None:
    engine = sa.create_engine(postgres_url)
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE SCHEMA billing"))
        connection.execute(sa.text("CREATE TABLE billing.invoices (id integer)"))
    engine.dispose()
    url = with_password(postgres_url)
    with pytest.raises(StateError, match="not funnelsync's") as refused:
        StateStore(url)
    assert hidden(url) in str(refused.value) and "hunter2" not in str(refused.value)
    assert "billing.invoices" in str(refused.value)
    assert _relations(postgres_url) == {"billing.invoices"}


# -- 4. the database fails under a run -----------------------------------------------------------

# `funnelsync` as a real process whose connections to one SQLite file may hold only so many pages:
# SQLite then fails with SQLITE_FULL, the error a full disk gives.
_LIMITED = """
import os, sys
import sqlalchemy as sa
from funnelsync.cli.commands import main

state, pages = os.path.realpath(os.environ["TEST_STATE_FILE"]), int(os.environ["TEST_MAX_PAGES"])

def limit(dbapi_connection, _record):
    if type(dbapi_connection).__module__ == "sqlite3" and any(
            row[2] and os.path.realpath(row[2]) == state for row in dbapi_connection.execute("PRAGMA database_list")):
        dbapi_connection.execute(f"PRAGMA max_page_count = {pages}")

sa.event.listen(sa.pool.Pool, "connect", limit)
main(sys.argv[1:], prog_name="funnelsync")
"""


def test_a_full_disk_ends_the_sync_with_exit_3_and_the_next_run_resumes(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path
) -> None:
    state = tmp_path / "state.db"
    path = state_config(analytics, sandbox, tmp_path, f"sqlite:///{state}")
    calls = dict.fromkeys(analytics.add_many(100, calls=5), 5)
    assert funnelsync("-c", str(path), "sync").returncode == 0
    calls.update(dict.fromkeys(analytics.add_many(3000, calls=7, prefix="new"), 7))
    with sqlite3.connect(state) as db:
        pages = db.execute("PRAGMA page_count").fetchone()[0]

    full = subprocess.run([sys.executable, "-c", _LIMITED, "-c", str(path), "sync"], capture_output=True,
                          text=True, timeout=120,
                          env={**os.environ, "TEST_STATE_FILE": str(state), "TEST_MAX_PAGES": str(pages + 8)})

    assert full.returncode == 3, full.stderr
    assert "Traceback" not in full.stderr
    assert "the disk is full" in full.stderr and f"sqlite:///{state}" in full.stderr
    assert contact_count(f"sqlite:///{state}") <= len(sandbox.store.contacts_by_email())
    again = funnelsync("-c", str(path), "sync", timeout=120)
    assert again.returncode == 0, again.stderr
    expect_exactly(sandbox, calls)
    assert contact_count(f"sqlite:///{state}") == len(calls)


def test_a_read_only_state_ends_the_sync_with_exit_3(
    state_url: str, analytics: Analytics, sandbox: SandboxServer, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    analytics.add_many(10, calls=5)
    StateStore(state_url).close()
    if state_url.startswith("sqlite"):
        url = f"sqlite:///file:{sa.make_url(state_url).database}?mode=ro&uri=true"
    else:
        cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
        database = sa.make_url(state_url).database
        with psycopg.connect(cluster.url().replace("+psycopg", ""), autocommit=True) as admin:
            admin.execute(f"ALTER DATABASE {database} SET default_transaction_read_only = on")
        url = with_password(state_url)
    path = state_config(analytics, sandbox, tmp_path, url)

    result = funnelsync("-c", str(path), "sync")

    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    assert "the state is read-only" in result.stderr
    assert hidden(url) in result.stderr and "hunter2" not in result.stderr
    assert sandbox.store.contacts_by_email() == {}


def test_a_dropped_postgresql_connection_ends_the_sync_with_exit_3_and_the_next_run_finishes(
    postgres_url: str, postgres_cluster: PostgresCluster, analytics: Analytics, sandbox: SandboxServer,
    tmp_path: Path,
) -> None:
    calls = dict.fromkeys(analytics.add_many(600, calls=5), 5)
    url = with_password(postgres_url)
    # one batch at a time, so that the connection drops while some of the contacts are still unsent
    path = state_config(analytics, sandbox, tmp_path, url, concurrency=1)
    for _ in range(6):
        sandbox.inject_fault(kind="slow", delay=0.5)
    sync = subprocess.Popen([sys.executable, "-m", "funnelsync", "-c", str(path), "sync"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: len(sandbox.store.contacts_by_email()) >= 100 or sync.poll() is not None)
        with psycopg.connect(postgres_cluster.url().replace("+psycopg", ""), autocommit=True) as admin:
            ended = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                  "WHERE datname = %s AND pid <> pg_backend_pid()",
                                  (sa.make_url(postgres_url).database,)).fetchone()
        assert ended is not None and ended[0] > 0
        _, stderr = sync.communicate(timeout=60)
    finally:
        if sync.poll() is None:
            sync.kill()
            sync.wait()

    assert sync.returncode == 3, stderr
    assert "Traceback" not in stderr
    assert "the connection to the state database was lost" in stderr
    assert hidden(url) in stderr and "hunter2" not in stderr
    assert len(sandbox.store.contacts_by_email()) < len(calls)
    again = funnelsync("-c", str(path), "sync", timeout=120)
    assert again.returncode == 0, again.stderr
    expect_exactly(sandbox, calls)
    assert contact_count(postgres_url) == len(calls)
