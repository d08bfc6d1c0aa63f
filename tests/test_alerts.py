"""Alerts over a webhook, as an engineer running the daemon meets them: told, retried while the
syncs go on, in Slack's format when asked, and never a trace of the webhook's secret URL."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from funnelsync.config import Config, parse_config
from funnelsync.connectors.retry import retry_after_seconds
from funnelsync.daemon.alerts import Alert, AlertEvent, Alerts
from funnelsync.daemon.logs import configure_logging
from funnelsync.daemon.scheduler import Daemon
from funnelsync.errors import CredentialsError
from funnelsync.sandbox import SandboxServer
from funnelsync.state import StateStore
from funnelsync.state.models import RunOutcome
from tests.conftest import TOKEN, TOKEN_ENV, Analytics, config_data
from tests.test_cli import Daemon as DaemonProcess
from tests.test_cli import config_file, daemon_config, free_port, funnelsync, http_get, wait_for  # noqa: F401
from tests.test_logs import json_logs  # noqa: F401  (fixture)

URL_ENV = "FUNNELSYNC_ALERT_URL"
# where Slack keeps a webhook's key: what must never reach a log line
SECRET_PATH = "/services/T0ALERTS/B0ALERTS/s3cr3tW3bh00kK3y"
HANG = "hang"
Answer = int | str | tuple[int, str]  # a status, HANG, or a status and its body


class WebhookReceiver:
    """A webhook on loopback answering each POST as scripted: a status (and body), or HANG (no
    answer until the test ends); 200 once the script is spent. It records every attempt sent."""

    def __init__(self, script: list[Answer], retry_after: str | None = None) -> None:
        self.script = list(script)
        self.retry_after = retry_after
        self.attempts: list[tuple[float, Answer, dict[str, Any]]] = []  # when, answer, body
        self.release = threading.Event()
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{SECRET_PATH}"

    def delivered(self) -> list[dict[str, Any]]:
        with self._lock:
            return [body for _, answer, body in self.attempts if answer == 200]

    def answers(self) -> list[Answer]:
        with self._lock:
            return [answer for _, answer, _ in self.attempts]

    def _next_answer(self, body: dict[str, Any]) -> Answer:
        with self._lock:
            answer = self.script.pop(0) if self.script else 200
            self.attempts.append((time.monotonic(), answer, body))
            return answer

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                assert self.path == SECRET_PATH and self.headers["Content-Type"].startswith("application/json")
                answer = receiver._next_answer(body)
                status, text = answer if isinstance(answer, tuple) else (answer, "ok")
                if status == HANG:
                    receiver.release.wait(60)
                    status = 200  # long after the sender gave up
                self.send_response(int(status))
                if receiver.retry_after and status in (429, 503):
                    self.send_header("Retry-After", receiver.retry_after)
                self.send_header("Content-Length", str(len(text.encode())))
                self.end_headers()
                self.wfile.write(text.encode())

            def handle(self) -> None:
                with suppress(OSError):  # the sender timed out and closed the connection
                    super().handle()

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers() -> Iterator[list[WebhookReceiver]]:
    started: list[WebhookReceiver] = []
    yield started
    for receiver in started:
        receiver.close()


def receiving(receivers: list[WebhookReceiver], monkeypatch: pytest.MonkeyPatch, script: list[Answer] | None = None,
              retry_after: str | None = None) -> WebhookReceiver:
    receiver = WebhookReceiver(script or [], retry_after)
    receivers.append(receiver)
    monkeypatch.setenv(URL_ENV, receiver.url)
    return receiver


def alerting_config(analytics: Analytics, sandbox: SandboxServer, tmp_path: Path, **alerts: Any) -> Config:
    data = config_data(analytics, sandbox.url, tmp_path / "state.db")
    data["alerts"] = {"timeout_seconds": 0.5, **alerts}
    return parse_config(data)


def with_alerts(path: Path, **alerts: Any) -> Path:
    path.write_text(path.read_text() + "[alerts]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in alerts.items()))
    return path


def stopped(daemon: Daemon) -> None:
    """What `Daemon.shutdown` does, for a daemon whose scheduler was never started."""
    daemon.alerts.close()
    daemon.leader.release()
    daemon.state.close()


class Clock:
    """The alerts' clock, which the test moves on: an hour of cron ticks without the wait."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def tick(self, minutes: int = 15) -> None:
        self.at += timedelta(minutes=minutes)


def with_clock(daemon: Daemon, clock: Clock) -> Daemon:
    daemon.alerts = Alerts.from_config(daemon.config, clock=clock, memory=daemon.state)
    return daemon


def outcomes(daemon: Daemon) -> list[RunOutcome]:
    return [run.outcome for run in reversed(daemon.state.recent_runs())]


def refuse_the_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, "a-token-the-sandbox-refuses")


def log_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_a_failed_run_is_told_through_a_503_and_a_hang_while_the_next_sync_goes_on(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path, receivers: list[WebhookReceiver],
    monkeypatch: pytest.MonkeyPatch, json_logs: None, capsys: pytest.CaptureFixture[str],  # noqa: F811
) -> None:
    configure_logging(debug=True, json_logs=True)  # every library's lines too
    receiver = receiving(receivers, monkeypatch, [503, HANG], retry_after="1")
    analytics.add_many(5, calls=3)
    daemon = Daemon(alerting_config(analytics, sandbox, tmp_path, attempts=4))
    try:
        refuse_the_token(monkeypatch)
        daemon.sync_job()
        monkeypatch.setenv(TOKEN_ENV, sandbox.token)
        daemon.sync_job()  # while the alert is being retried
        assert outcomes(daemon) == [RunOutcome.FAILED, RunOutcome.OK]
        assert len(sandbox.store.contacts_by_email()) == 5
        wait_for(lambda: len(receiver.delivered()) == 2)
    finally:
        stopped(daemon)
    assert receiver.answers() == [503, HANG, 200, 200]
    alert, recovered = receiver.delivered()
    assert [body for _, _, body in receiver.attempts] == [alert] * 3 + [recovered]
    assert recovered["event"] == "recovered"
    assert alert["event"] == "run_failed" and alert["details"]["error"] == "CredentialsError"
    assert "401" in alert["summary"] and alert["host"] == socket.gethostname()
    assert datetime.fromisoformat(alert["at"]).utcoffset() is not None
    (first, _, _), (second, _, _) = receiver.attempts[:2]
    assert second - first >= 1.0  # the 503's Retry-After
    logs = capsys.readouterr().err
    assert SECRET_PATH not in logs and "s3cr3t" not in logs
    events = [(line["event"], line.get("alert")) for line in log_lines(logs)]
    assert events.count(("retrying", "run_failed")) == 2
    assert ("alert delivered", "run_failed") in events


def test_a_sync_runs_to_its_end_while_the_webhook_has_not_answered(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path, receivers: list[WebhookReceiver],
    monkeypatch: pytest.MonkeyPatch, json_logs: None, capsys: pytest.CaptureFixture[str],  # noqa: F811
) -> None:
    configure_logging(json_logs=True)
    receiver = receiving(receivers, monkeypatch, [HANG])
    analytics.add_many(5, calls=3)
    daemon = Daemon(alerting_config(analytics, sandbox, tmp_path, timeout_seconds=60.0, attempts=1))
    try:
        refuse_the_token(monkeypatch)
        daemon.sync_job()
        wait_for(lambda: receiver.answers() == [HANG])
        monkeypatch.setenv(TOKEN_ENV, sandbox.token)
        daemon.sync_job()
        assert outcomes(daemon) == [RunOutcome.FAILED, RunOutcome.OK]
        assert len(sandbox.store.contacts_by_email()) == 5
        assert receiver.answers() == [HANG]  # the webhook still holds the alert's request
        receiver.release.set()
        wait_for(lambda: len(receiver.attempts) == 2)  # `recovered`, posted once the first was answered
    finally:
        stopped(daemon)
    assert [alert["event"] for _, _, alert in receiver.attempts] == ["run_failed", "recovered"]
    events = [(line["event"], line.get("alert")) for line in log_lines(capsys.readouterr().err)]
    assert ("alert delivered", "run_failed") in events


def test_a_refusal_is_not_retried_and_its_reason_is_logged_only_when_it_cannot_hold_the_url(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path, receivers: list[WebhookReceiver],
    monkeypatch: pytest.MonkeyPatch, json_logs: None, capsys: pytest.CaptureFixture[str],  # noqa: F811
) -> None:
    configure_logging(json_logs=True)
    error_page = f"<html><p>The requested URL {SECRET_PATH} was not found on this server.</p></html>"
    receiver = receiving(receivers, monkeypatch, [(404, error_page), (404, "no_service")])
    daemon = Daemon(alerting_config(analytics, sandbox, tmp_path))
    try:
        refuse_the_token(monkeypatch)
        daemon.sync_job()  # run_failed
        monkeypatch.setenv(TOKEN_ENV, sandbox.token)
        daemon.sync_job()  # recovered
        wait_for(lambda: len(receiver.answers()) == 2)
    finally:
        stopped(daemon)  # flushes: a retry would have come by now
    assert len(receiver.answers()) == 2
    logs = capsys.readouterr().err
    assert "s3cr3t" not in logs
    given_up = [line["reason"] for line in log_lines(logs) if line["event"] == "alert not delivered: giving up"]
    assert given_up == ["the webhook refused the alert (404)", "the webhook refused the alert (404: no_service)"]


def test_rejects_above_the_threshold_are_told_in_slacks_format(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path, receivers: list[WebhookReceiver],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    receiver = receiving(receivers, monkeypatch)
    analytics.add("ada@example.com", calls=3)
    analytics.add("bob@example.com", role="Astronaut")  # not one of the options: refused
    analytics.add("cy@example.com", role="Pilot")
    daemon = Daemon(alerting_config(analytics, sandbox, tmp_path, format="slack", rejects_above=2))
    try:
        daemon.sync_job()  # 2 rejected: not above the threshold
        analytics.add("dee@example.com", role="Diver")
        daemon.sync_job()  # 3 rejected
        wait_for(lambda: len(receiver.delivered()) == 1)
        assert outcomes(daemon) == [RunOutcome.REJECTS] * 2
    finally:
        stopped(daemon)
    [alert] = receiver.delivered()
    assert list(alert) == ["text"]
    assert f"*funnelsync* on `{socket.gethostname()}`: 3 contacts were rejected in run 2" in alert["text"]
    assert "• event: `rejects_above_threshold`" in alert["text"]
    assert "• rejected: 3" in alert["text"] and "• threshold: 2" in alert["text"]


def test_the_same_records_rejected_run_after_run_are_told_once_then_every_repeat(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path, receivers: list[WebhookReceiver],
    monkeypatch: pytest.MonkeyPatch, json_logs: None, capsys: pytest.CaptureFixture[str],  # noqa: F811
) -> None:
    """A refused record is retried, and refused again, by every run: that is one problem, told
    at its first run, again after `repeat_every_minutes`, and anew only after a run under it."""
    configure_logging(json_logs=True)
    receiver = receiving(receivers, monkeypatch)
    analytics.add("ada@example.com", calls=3)
    analytics.add("bob@example.com", role="Astronaut")  # not one of the options: refused
    analytics.add("cy@example.com", role="Pilot")
    clock = Clock(datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
    daemon = with_clock(Daemon(alerting_config(analytics, sandbox, tmp_path, rejects_above=1)), clock)
    try:
        for _ in range(5):  # 09:00 told, 09:15 to 09:45 held back, 10:00 told again
            daemon.sync_job()
            clock.tick()
        analytics.set_role("cy@example.com", "Engineering")
        daemon.sync_job()  # 10:15: one rejected, not above the threshold
        clock.tick()
        analytics.set_role("cy@example.com", "Pilot")
        daemon.sync_job()  # 10:30: above it again, a new streak
        wait_for(lambda: len(receiver.delivered()) == 3)
        assert outcomes(daemon) == [RunOutcome.REJECTS] * 7
    finally:
        stopped(daemon)  # flushes: a fourth alert would be delivered by now
    told = receiver.delivered()
    assert [(alert["event"], alert["at"], alert["details"]["rejected"]) for alert in told] == [
        ("rejects_above_threshold", "2026-12-01T09:00:00+00:00", 2),
        ("rejects_above_threshold", "2026-12-01T10:00:00+00:00", 2),
        ("rejects_above_threshold", "2026-12-01T10:30:00+00:00", 2)]
    held = [line for line in log_lines(capsys.readouterr().err) if line["event"].startswith("alert held back")]
    assert [line["told_at"] for line in held] == ["2026-12-01T09:00:00+00:00"] * 3


def test_slack_reads_nothing_quoted_in_an_alert_as_its_own_markup() -> None:
    """`<!channel>` would notify the whole channel, `<https://...|here>` would be a link."""
    alert = Alert(AlertEvent.RUN_FAILED, "the source said <!channel> & <https://evil.example|here>",
                  {"reason": "<b>"}, "pod-1")
    text = alert.as_slack()["text"]
    assert "&lt;!channel&gt; &amp; &lt;https://evil.example|here&gt;" in text
    assert "• reason: &lt;b&gt;" in text
    assert "<!channel>" not in text and "<https" not in text


def test_the_days_budget_running_out_is_told_once_a_utc_day_not_at_every_run(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path, receivers: list[WebhookReceiver],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    receiver = receiving(receivers, monkeypatch)
    analytics.add_many(250, calls=3)
    data = config_data(analytics, sandbox.url, tmp_path / "state.db")
    data["hubspot"]["daily_request_budget"] = 4
    data["alerts"] = {"timeout_seconds": 0.5}
    clock = Clock(datetime(2026, 12, 1, 23, 30, tzinfo=UTC))
    daemon = with_clock(Daemon(parse_config(data)), clock)
    try:
        daemon.sync_job()  # 23:30
        clock.tick()
        daemon.sync_job()  # 23:45
        wait_for(lambda: len(receiver.delivered()) == 1)
        clock.tick()
        daemon.sync_job()  # 00:00: the next UTC day's budget, spent again
        wait_for(lambda: len(receiver.delivered()) == 2)
    finally:
        stopped(daemon)  # flushes: a third alert would be delivered by now
    alerts = receiver.delivered()
    assert [alert["event"] for alert in alerts] == ["daily_budget_exhausted"] * 2
    assert [alert["at"] for alert in alerts] == ["2026-12-01T23:30:00+00:00", "2026-12-02T00:00:00+00:00"]
    assert "daily request budget of 4 is spent" in alerts[0]["details"]["reason"]
    state = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        assert [run.outcome for run in state.recent_runs()] == [RunOutcome.DAILY_LIMIT] * 3
    finally:
        state.close()



def test_a_failing_streak_is_told_once_then_every_repeat_and_its_end_once(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path, receivers: list[WebhookReceiver],
    monkeypatch: pytest.MonkeyPatch, json_logs: None, capsys: pytest.CaptureFixture[str],  # noqa: F811
) -> None:
    configure_logging(json_logs=True)
    receiver = receiving(receivers, monkeypatch)
    analytics.add_many(5, calls=3)
    clock = Clock(datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
    daemon = with_clock(Daemon(alerting_config(analytics, sandbox, tmp_path)), clock)  # repeat every 60 min
    try:
        refuse_the_token(monkeypatch)
        for _ in range(3):  # 09:00, 09:15, 09:30
            daemon.sync_job()
            clock.tick()
        wait_for(lambda: len(receiver.delivered()) == 1)
        daemon.sync_job()  # 09:45
        clock.tick()
        daemon.sync_job()  # 10:00: an hour since it was told
        clock.tick()
        monkeypatch.setenv(TOKEN_ENV, sandbox.token)
        daemon.sync_job()  # 10:15
        clock.tick()
        daemon.sync_job()  # 10:30
        wait_for(lambda: len(receiver.delivered()) == 3)
        assert outcomes(daemon) == [RunOutcome.FAILED] * 5 + [RunOutcome.OK] * 2
        recovered_run = daemon.state.recent_runs()[1].id
    finally:
        stopped(daemon)  # flushes: a fourth alert would be delivered by now
    first, again, recovered = receiver.delivered()
    assert first["event"] == again["event"] == "run_failed"
    assert first["details"]["error"] == again["details"]["error"] == "CredentialsError"
    assert (first["at"], first["details"]["failed_runs"]) == ("2026-12-01T09:00:00+00:00", 1)
    assert (again["at"], again["details"]["failed_runs"]) == ("2026-12-01T10:00:00+00:00", 5)
    assert again["details"]["failing_since"] == "2026-12-01T09:00:00+00:00"
    assert "still fails, 5 runs in a row since 2026-12-01 09:00 UTC" in again["summary"] and "401" in again["summary"]
    assert recovered["event"] == "recovered" and recovered["at"] == "2026-12-01T10:15:00+00:00"
    assert recovered["details"] == {"run_id": recovered_run, "failed_runs": 5,
                                    "failing_since": "2026-12-01T09:00:00+00:00", "lasted_minutes": 75}
    assert recovered["summary"] == (f"the scheduled sync runs again (run {recovered_run}) after 5 failed runs in a "
                                    "row over 1 h 15 min, since 2026-12-01 09:00 UTC")
    held = [line for line in log_lines(capsys.readouterr().err) if line["event"].startswith("alert held back")]
    assert [line["failed_runs"] for line in held] == [2, 3, 4]


def test_with_repeat_every_minutes_0_a_streak_is_told_once_and_the_next_streak_anew(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path, receivers: list[WebhookReceiver],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    receiver = receiving(receivers, monkeypatch)
    analytics.add_many(3, calls=1)
    clock = Clock(datetime(2026, 12, 1, 22, 0, tzinfo=UTC))
    daemon = with_clock(Daemon(alerting_config(analytics, sandbox, tmp_path, repeat_every_minutes=0,
                                               format="slack")), clock)
    try:
        refuse_the_token(monkeypatch)
        for _ in range(4):  # 22:00 to 01:00, hourly
            daemon.sync_job()
            clock.tick(60)
        monkeypatch.setenv(TOKEN_ENV, sandbox.token)
        daemon.sync_job()  # 02:00
        clock.tick(60)
        refuse_the_token(monkeypatch)
        daemon.sync_job()  # 03:00: a new streak
        wait_for(lambda: len(receiver.delivered()) == 3)
    finally:
        stopped(daemon)
    told, recovered, anew = (alert["text"] for alert in receiver.delivered())
    assert "• event: `run_failed`" in told and "• failed_runs: 1" in told
    assert "• event: `recovered`" in recovered
    assert "after 4 failed runs in a row over 4 h, since 2026-12-01 22:00 UTC" in recovered
    assert "• lasted_minutes: 240" in recovered
    assert "• event: `run_failed`" in anew and "• failed_runs: 1" in anew
    assert "• failing_since: 2026-12-02T03:00:00+00:00" in anew


def test_hubspots_daily_limit_is_told_once_each_time_it_runs_out_even_twice_in_one_utc_day(
    analytics: Analytics, tmp_path: Path, receivers: list[WebhookReceiver], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """HubSpot's day ends at the portal's midnight, not UTC's: a run that finishes between two
    exhaustions makes the second one news."""
    receiver = receiving(receivers, monkeypatch)
    analytics.add_many(3, calls=1)
    clock = Clock(datetime(2026, 12, 1, 3, 0, tzinfo=UTC))
    with SandboxServer(token=TOKEN, daily_limit=0) as portal:  # the portal's day is spent
        daemon = with_clock(Daemon(alerting_config(analytics, portal, tmp_path)), clock)
        try:
            daemon.sync_job()
            clock.tick()
            daemon.sync_job()
            clock.tick()
            portal.limiter.daily_limit = None  # the portal's day rolls over
            daemon.sync_job()
            clock.tick()
            portal.limiter.daily_limit = 0  # and its new day is spent too
            daemon.sync_job()
            wait_for(lambda: len(receiver.delivered()) == 2)
            assert outcomes(daemon) == [RunOutcome.DAILY_LIMIT] * 2 + [RunOutcome.OK, RunOutcome.DAILY_LIMIT]
        finally:
            stopped(daemon)  # flushes: a third alert would be delivered by now
    alerts = receiver.delivered()
    assert [alert["event"] for alert in alerts] == ["daily_budget_exhausted"] * 2  # no run_failed, no recovered
    assert [alert["at"] for alert in alerts] == ["2026-12-01T03:00:00+00:00", "2026-12-01T03:45:00+00:00"]
    assert "429 DAILY" in alerts[1]["details"]["reason"]


@pytest.mark.parametrize(("header", "seconds"), [
    ("7", 7.0),
    (" 2.5 ", 2.5),
    ("-3", 0.0),
    (format_datetime(datetime(2026, 12, 1, 9, 0, 30, tzinfo=UTC), usegmt=True), 30.0),
    ("Tue, 01 Dec 2026 09:01:00 -0000", 60.0),  # no zone: an HTTP date is GMT all the same
    ("Tue, 01 Dec 2026 08:59:00 GMT", 0.0),
    ("inf", None), ("nan", None), ("soon", None), ("", None), (None, None),
])
def test_a_retry_after_is_read_as_seconds_or_an_http_date_for_the_webhook_and_moesif_alike(
    header: str | None, seconds: float | None,
) -> None:
    assert retry_after_seconds(header, now=datetime(2026, 12, 1, 9, 0, tzinfo=UTC)) == seconds


def test_without_the_variable_alerts_are_off_and_the_start_says_so(
    config: Config, sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch, json_logs: None,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv(URL_ENV, raising=False)
    configure_logging(json_logs=True)
    daemon = Daemon(config)
    try:
        refuse_the_token(monkeypatch)
        daemon.sync_job()
        assert outcomes(daemon) == [RunOutcome.FAILED]
    finally:
        stopped(daemon)
    lines = log_lines(capsys.readouterr().err)
    off = [line for line in lines if line["logger"] == "funnelsync.alerts"]
    assert [(line["event"], line["level"], line["url_env"]) for line in off] == [
        ("alerts off: the environment variable is not set", "info", URL_ENV)]


class DebugDaemonProcess(DaemonProcess):
    """`funnelsync --debug run`: every library's debug lines in its logs."""

    def __init__(self, config_path: Path, log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("w")
        self.process = subprocess.Popen([sys.executable, "-m", "funnelsync", "--debug", "-c", str(config_path), "run"],
                                        stdout=self._log, stderr=subprocess.STDOUT)


def test_a_daemon_whose_run_fails_posts_run_failed_and_logs_no_trace_of_the_url(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path, receivers: list[WebhookReceiver],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    receiver = receiving(receivers, monkeypatch, [503])
    refuse_the_token(monkeypatch)
    analytics.add_many(3, calls=1)
    port = free_port()
    path = with_alerts(daemon_config(analytics, sandbox, tmp_path, port), timeout_seconds=1)
    daemon = DebugDaemonProcess(path, tmp_path / "daemon.log")
    try:
        wait_for(lambda: len(receiver.delivered()) == 1)
        assert daemon.stop() == 0
    finally:
        daemon.close()
    [alert] = receiver.delivered()
    assert alert["event"] == "run_failed" and alert["details"]["error"] == "CredentialsError"
    assert set(alert) == {"event", "summary", "details", "at", "host"}
    assert '"event": "alerts on"' in daemon.logs
    assert SECRET_PATH not in daemon.logs and "s3cr3t" not in daemon.logs


def test_a_webhook_that_never_answers_does_not_hold_up_the_daemons_stop(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path, receivers: list[WebhookReceiver],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    receiver = receiving(receivers, monkeypatch, [HANG])
    refuse_the_token(monkeypatch)
    port = free_port()
    path = with_alerts(daemon_config(analytics, sandbox, tmp_path, port), timeout_seconds=600)
    daemon = DaemonProcess(path, tmp_path / "daemon.log")
    try:
        wait_for(lambda: receiver.answers() == [HANG])
        assert daemon.stop() == 0  # well before the webhook's 600 s
    finally:
        daemon.close()
    assert "the webhook had not answered when the daemon stopped: alerts may be lost" in daemon.logs
    assert '"event": "daemon stopped"' in daemon.logs


def test_a_standby_taking_over_posts_standby_took_over_and_a_first_start_posts_nothing(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path, receivers: list[WebhookReceiver],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    receiver = receiving(receivers, monkeypatch)
    analytics.add_many(3, calls=1)
    ports = [free_port(), free_port()]
    paths = [with_alerts(daemon_config(analytics, sandbox, tmp_path, port, f"daemon{n}", standby_poll_seconds=0.2),
                         timeout_seconds=1)
             for n, port in enumerate(ports)]
    first = DaemonProcess(paths[0], tmp_path / "first.log")
    second = None
    try:
        wait_for(lambda: '"role": "active"' in http_get(f"http://127.0.0.1:{ports[0]}/readyz")[1])
        second = DaemonProcess(paths[1], tmp_path / "second.log")
        wait_for(lambda: '"role": "standby"' in http_get(f"http://127.0.0.1:{ports[1]}/readyz")[1])
        assert first.stop() == 0
        wait_for(lambda: len(receiver.delivered()) == 1)
        wait_for(lambda: '"role": "active"' in http_get(f"http://127.0.0.1:{ports[1]}/readyz")[1])
        assert second.stop() == 0
    finally:
        first.close()
        if second:
            second.close()
    [alert] = receiver.delivered()  # both stopped: nothing else was on its way
    assert alert["event"] == "standby_took_over" and alert["host"] == socket.gethostname()
    for logs in (first.logs, second.logs):
        assert SECRET_PATH not in logs


def wait_for_outcome(port: int, outcome: str) -> None:
    wait_for(lambda: f'"last_outcome": "{outcome}"' in http_get(f"http://127.0.0.1:{port}/readyz")[1])


def test_a_restarted_daemon_goes_on_with_the_streak_rather_than_telling_it_again(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path, receivers: list[WebhookReceiver],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    receiver = receiving(receivers, monkeypatch)
    analytics.add_many(3, calls=1)
    port = free_port()
    path = with_alerts(daemon_config(analytics, sandbox, tmp_path, port), timeout_seconds=1)
    lives = []
    for life, (token, outcome) in enumerate([("refused", "failed"), ("refused", "failed"), (sandbox.token, "ok")]):
        monkeypatch.setenv(TOKEN_ENV, "a-token-the-sandbox-refuses" if token == "refused" else token)
        daemon = DaemonProcess(path, tmp_path / f"life{life}.log")
        lives.append(daemon)
        try:
            wait_for_outcome(port, outcome)
            assert daemon.stop() == 0  # what is queued is delivered within the stop
        finally:
            daemon.close()
    failed, recovered = receiver.delivered()
    assert (failed["event"], failed["details"]["failed_runs"]) == ("run_failed", 1)
    assert (recovered["event"], recovered["details"]["failed_runs"]) == ("recovered", 2)
    assert recovered["details"]["failing_since"] == failed["details"]["failing_since"]
    held = [json.loads(line) for line in lives[1].logs.splitlines() if "alert held back" in line]
    assert [line["failed_runs"] for line in held] == [2]


class UnreachableState:
    """A state whose database is gone: every read and write of what was told fails."""

    def told_alerts(self) -> dict[str, Any]:
        raise ConnectionRefusedError("the state's database does not answer")

    def remember_told_alert(self, told: Any) -> None:
        raise ConnectionRefusedError("the state's database does not answer")

    def forget_told_alert(self, event: str) -> None:
        raise ConnectionRefusedError("the state's database does not answer")


def test_a_state_that_cannot_keep_what_was_told_leaves_the_daemon_going_by_its_own_memory(
    config: Config, receivers: list[WebhookReceiver], monkeypatch: pytest.MonkeyPatch, json_logs: None,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(json_logs=True)
    receiver = receiving(receivers, monkeypatch)
    clock = Clock(datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
    alerts = Alerts.from_config(config, clock=clock, memory=UnreachableState())
    try:
        for _ in range(3):
            alerts.run_failed(CredentialsError("HubSpot refused the token (401)"), clock())
            clock.tick()
        wait_for(lambda: len(receiver.delivered()) == 1)
    finally:
        alerts.close()
    [told] = receiver.delivered()
    assert (told["event"], told["details"]["failed_runs"]) == ("run_failed", 1)
    lines = log_lines(capsys.readouterr().err)
    assert [line["failed_runs"] for line in lines if line["event"].startswith("alert held back")] == [2, 3]
    warnings = {line["event"] for line in lines if line["level"] == "warning"}
    assert warnings == {"could not read the alerts told from the state: going by this daemon's own memory",
                        "could not keep the alerts told in the state: a restarted daemon may tell them again"}


@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_plain_http_webhook_to_another_machine_is_a_config_error_naming_the_variable(
    command: str, config_file: Path,  # noqa: F811
) -> None:
    url = f"http://hooks.example.com{SECRET_PATH}"
    result = funnelsync("-c", str(config_file), command, env={URL_ENV: url}, timeout=60)
    assert result.returncode == 2, result.stderr
    assert f"alerts.url_env: ${URL_ENV} holds a plain http:// URL to another machine" in result.stderr
    assert "Traceback" not in result.stderr
    assert "s3cr3t" not in result.stdout + result.stderr and "hooks.example.com" not in result.stderr
