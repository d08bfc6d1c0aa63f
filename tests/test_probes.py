"""The daemon's probes as Kubernetes reads them: `/healthz` (restart me) fails only when the
scheduler is stopped or stuck; `/readyz` (send me work) stays ready through the first sync and
a failed run, for an active daemon and a warm standby alike, and fails, saying why, on a config
error, a state that does not answer, or `[daemon].unready_after_failed_runs` failures in a row."""

from __future__ import annotations

import functools
import json
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from funnelsync.config import Config, parse_config
from funnelsync.daemon import status_page
from funnelsync.daemon.health import HealthServer
from funnelsync.daemon.scheduler import Daemon
from funnelsync.sandbox import SandboxServer
from tests.conftest import TOKEN, TOKEN_ENV, Analytics, config_data
from tests.test_cli import Daemon as DaemonProcess
from tests.test_cli import daemon_config, free_port, http_get, wait_for

# In-process daemons beat fast, so that a stuck scheduler shows within a test's patience.
HEARTBEAT_SECONDS = 0.1
STUCK_AFTER_SECONDS = 1.0
SECRET = "hunter2-secret"  # a password in the state's URL (trust authentication ignores it)


def probe(port: int, path: str) -> tuple[int, dict[str, Any]]:
    status, text = http_get(f"http://127.0.0.1:{port}{path}")
    return status, json.loads(text) if text.startswith("{") else {}


def in_thread(function: Any) -> None:
    """As APScheduler's worker threads call a job."""
    thread = threading.Thread(target=function)
    thread.start()
    thread.join()


@contextmanager
def served(config: Config, *, start: bool = True) -> Iterator[tuple[Daemon, int]]:
    """A daemon in this process, its HTTP port served as `funnelsync run` serves it; with
    `start`, its scheduler started (the first sync at once, the heartbeat)."""
    daemon = Daemon(config, heartbeat_seconds=HEARTBEAT_SECONDS, stuck_after_seconds=STUCK_AFTER_SECONDS)
    server = HealthServer("127.0.0.1", 0, daemon.health, functools.partial(status_page.render, config, daemon.state))
    server.start()
    try:
        if start:
            daemon.start()
        yield daemon, server.port
    finally:
        if start:
            daemon.shutdown()
        else:
            daemon.alerts.close()
            daemon.leader.release()
            daemon.state.close()
        server.stop()


def in_process(analytics: Analytics, sandbox: SandboxServer, tmp_path: Path, **daemon: Any) -> Config:
    """The tests' config, its schedule one that never fires in a test: the daemon syncs at start."""
    data = config_data(analytics, sandbox.url, tmp_path / "state.db")
    data["daemon"] = {"schedule": "0 0 1 1 *", **daemon}
    return parse_config(data)


def refuse_every_request(sandbox: SandboxServer) -> None:
    sandbox.inject_fault(path_prefix="/", kind="status", status=401, count=10**6)


# -- the first sync ------------------------------------------------------------------------------


def test_the_first_sync_in_flight_is_alive_and_ready(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path
) -> None:
    analytics.add_many(300, calls=5)
    sandbox.inject_fault(kind="slow", delay=1.0, count=10**6)  # each batch upsert takes a second
    port = free_port()
    daemon = DaemonProcess(daemon_config(analytics, sandbox, tmp_path, port), tmp_path / "daemon.log")
    try:
        wait_for(lambda: probe(port, "/readyz")[1].get("running") is True)
        status, body = probe(port, "/readyz")
        assert status == 200, body
        assert body["role"] == "active" and body["runs"] == 0
        assert body["reason"] == "active: the first sync is running"
        assert probe(port, "/healthz")[0] == 200
        wait_for(lambda: probe(port, "/readyz")[1].get("last_outcome") == "ok", timeout=60)
        status, body = probe(port, "/readyz")
        assert (status, body["running"], body["reason"]) == (200, False, "active: the last run ended ok")
        assert len(sandbox.store.contacts_by_email()) == 300
        assert daemon.stop() == 0
    finally:
        daemon.close()


# -- failed runs ---------------------------------------------------------------------------------


def test_a_failed_run_leaves_the_daemon_alive_and_ready_saying_why(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path
) -> None:
    analytics.add_many(3, calls=5)
    refuse_every_request(sandbox)
    port = free_port()
    daemon = DaemonProcess(daemon_config(analytics, sandbox, tmp_path, port), tmp_path / "daemon.log")
    try:
        wait_for(lambda: probe(port, "/readyz")[1].get("last_outcome") == "failed")
        status, body = probe(port, "/readyz")
        assert status == 200, body
        assert body["failed_runs_in_a_row"] == 1 and body["unready_after_failed_runs"] == 3
        assert "HubSpot refused the access token" in body["last_error"]
        assert "1 run(s) failed in a row, unready from 3" in body["reason"]
        assert probe(port, "/healthz")[0] == 200
        assert daemon.stop() == 0
    finally:
        daemon.close()


def test_unready_after_failed_runs_1_takes_the_daemon_out_at_the_first_failure_but_keeps_it_alive(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path
) -> None:
    analytics.add_many(3, calls=5)
    refuse_every_request(sandbox)
    port = free_port()
    path = daemon_config(analytics, sandbox, tmp_path, port, unready_after_failed_runs=1)
    daemon = DaemonProcess(path, tmp_path / "daemon.log")
    try:
        wait_for(lambda: probe(port, "/readyz")[0] == 503)
        body = probe(port, "/readyz")[1]
        assert body["ready"] is False and body["failed_runs_in_a_row"] == 1
        assert body["reason"].startswith("1 run(s) failed in a row (unready from 1, "
                                         "[daemon].unready_after_failed_runs): HubSpot refused the access token")
        assert probe(port, "/healthz")[0] == 200  # a restart would not help: it stays alive
        assert daemon.stop() == 0
    finally:
        daemon.close()


def test_failed_runs_in_a_row_make_the_daemon_unready_until_a_run_finishes(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path
) -> None:
    analytics.add_many(3, calls=5)
    refuse_every_request(sandbox)
    config = in_process(analytics, sandbox, tmp_path, unready_after_failed_runs=2)
    with served(config, start=False) as (daemon, port):
        in_thread(daemon.sync_job)
        status, body = probe(port, "/readyz")
        assert (status, body["failed_runs_in_a_row"], body["last_outcome"]) == (200, 1, "failed")
        in_thread(daemon.sync_job)
        status, body = probe(port, "/readyz")
        assert (status, body["failed_runs_in_a_row"]) == (503, 2)
        assert body["reason"].startswith("2 run(s) failed in a row")
        sandbox.faults.clear()  # HubSpot takes the token again
        in_thread(daemon.sync_job)
        status, body = probe(port, "/readyz")
        assert (status, body["failed_runs_in_a_row"], body["last_outcome"], body["last_error"]) == (200, 0, "ok", None)
    assert len(sandbox.store.contacts_by_email()) == 3


def test_a_run_that_fails_on_the_config_makes_the_daemon_unready_at_once_naming_the_key(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    analytics.add_many(3, calls=5)
    with served(in_process(analytics, sandbox, tmp_path), start=False) as (daemon, port):
        monkeypatch.delenv(TOKEN_ENV)
        in_thread(daemon.sync_job)
        status, body = probe(port, "/readyz")
        assert status == 503 and body["failed_runs_in_a_row"] == 1
        assert body["config"] == f"hubspot.token_env: the environment variable {TOKEN_ENV} is not set or is empty"
        assert body["reason"] == f"the last run failed on the config: {body['config']}"
        monkeypatch.setenv(TOKEN_ENV, TOKEN)
        in_thread(daemon.sync_job)
        status, body = probe(port, "/readyz")
        assert (status, body["config"]) == (200, "valid")


# -- a standby -----------------------------------------------------------------------------------


def test_a_standby_is_alive_and_ready_and_says_it_is_the_standby(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path
) -> None:
    analytics.add_many(5, calls=5)
    ports = [free_port(), free_port()]
    paths = [daemon_config(analytics, sandbox, tmp_path, port, f"daemon{n}", standby_poll_seconds=0.2)
             for n, port in enumerate(ports)]
    daemons = [DaemonProcess(paths[0], tmp_path / "active.log")]
    try:
        wait_for(lambda: probe(ports[0], "/readyz")[1].get("last_outcome") == "ok")
        daemons.append(DaemonProcess(paths[1], tmp_path / "standby.log"))
        wait_for(lambda: probe(ports[1], "/readyz")[1].get("role") == "standby")
        status, body = probe(ports[1], "/readyz")
        assert status == 200 and body["ready"] is True and body["runs"] == 0
        assert body["reason"].startswith("warm standby: another funnelsync daemon is active over this state")
        status, body = probe(ports[0], "/readyz")
        assert (status, body["role"]) == (200, "active")
        assert probe(ports[1], "/healthz")[0] == 200 and probe(ports[0], "/healthz")[0] == 200
        assert "funnelsync_leader 1.0" in http_get(f"http://127.0.0.1:{ports[0]}/metrics")[1]
        assert "funnelsync_leader 0.0" in http_get(f"http://127.0.0.1:{ports[1]}/metrics")[1]
        for daemon in reversed(daemons):
            assert daemon.stop() == 0
    finally:
        for daemon in daemons:
            daemon.close()


# -- a stuck scheduler ---------------------------------------------------------------------------


def test_a_paused_scheduler_fails_liveness_and_passes_it_again_once_resumed(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path
) -> None:
    with served(in_process(analytics, sandbox, tmp_path)) as (daemon, port):
        wait_for(lambda: probe(port, "/healthz")[0] == 200)
        assert probe(port, "/healthz")[1]["scheduler"] == "running"
        daemon.scheduler.pause()
        status, body = probe(port, "/healthz")
        assert (status, body["alive"], body["scheduler"]) == (503, False, "paused")
        assert body["reason"] == "the scheduler is paused: no sync will run"
        daemon.scheduler.resume()
        wait_for(lambda: probe(port, "/healthz")[0] == 200)


def test_a_scheduler_whose_heartbeat_is_held_up_fails_liveness_until_it_beats_again(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path
) -> None:
    with served(in_process(analytics, sandbox, tmp_path)) as (daemon, port):
        wait_for(lambda: probe(port, "/healthz")[0] == 200)
        release = threading.Event()
        # the heartbeat's one worker taken by a job that hangs: the beats queue up behind it
        daemon.scheduler.add_job(release.wait, executor="heartbeat", id="hang")
        try:
            wait_for(lambda: probe(port, "/healthz")[0] == 503)
            body = probe(port, "/healthz")[1]
            assert body["scheduler"] == "running" and body["heartbeat_age_seconds"] >= STUCK_AFTER_SECONDS
            assert body["reason"].startswith("the scheduler is stuck: its last heartbeat was")
        finally:
            release.set()
        wait_for(lambda: probe(port, "/healthz")[0] == 200)


def test_a_sync_that_runs_many_heartbeats_long_keeps_the_daemon_alive(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path
) -> None:
    analytics.add_many(800, calls=5)
    # 8 upserts of half a second: the sync lasts four times STUCK_AFTER_SECONDS at the least
    sandbox.inject_fault(kind="slow", delay=0.5, count=10**6)
    answers: list[int] = []
    with served(in_process(analytics, sandbox, tmp_path)) as (_daemon, port):
        wait_for(lambda: probe(port, "/readyz")[1].get("running") is True)
        while probe(port, "/readyz")[1]["running"]:
            answers.append(probe(port, "/healthz")[0])
        assert probe(port, "/readyz")[1]["last_outcome"] == "ok"
    assert answers and set(answers) == {200}
    assert len(sandbox.store.contacts_by_email()) == 800


# -- the state -----------------------------------------------------------------------------------


@contextmanager
def connections_refused(database_url: str) -> Iterator[None]:
    """The state's PostgreSQL database refuses connections, and those it had are ended."""
    url = sa.make_url(database_url)
    admin = url.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    name = url.database
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        connection.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
        try:
            yield
        finally:
            connection.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


def test_a_state_that_does_not_answer_makes_the_daemon_unready_but_not_dead(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path, postgres_url: str
) -> None:
    analytics.add_many(3, calls=5)
    data = config_data(analytics, sandbox.url, tmp_path / "unused.db")
    data["state"]["url"] = sa.make_url(postgres_url).set(password=SECRET).render_as_string(hide_password=False)
    data["daemon"] = {"schedule": "0 0 1 1 *"}
    with served(parse_config(data)) as (_daemon, port):
        wait_for(lambda: probe(port, "/readyz")[1].get("last_outcome") == "ok")
        assert probe(port, "/readyz")[1]["state"] == "reachable"
        with connections_refused(postgres_url):
            wait_for(lambda: probe(port, "/readyz")[0] == 503)
            body = probe(port, "/readyz")[1]
            assert body["state"] != "reachable" and body["reason"] == body["state"]
            assert SECRET not in json.dumps(body)
            assert probe(port, "/healthz")[0] == 200
        wait_for(lambda: probe(port, "/readyz")[0] == 200)


# -- the status page -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/status"])
def test_the_status_page_is_served_on_the_daemons_port(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path, path: str
) -> None:
    with (served(in_process(analytics, sandbox, tmp_path), start=False) as (_daemon, port),
          urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer):
        assert answer.status == 200
        assert answer.headers["Content-Type"] == "text/html; charset=utf-8"
        assert "<html" in answer.read().decode()
