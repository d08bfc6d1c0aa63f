"""Alerts from the daemon over a webhook: runs failing, and then running again, more contacts
rejected in a run than `[alerts].rejects_above`, the day's request budget spent, a standby taking
over.

An alert that comes at every tick is an alert people learn to ignore: a streak of failed runs is
told at its first run, again only every `[alerts].repeat_every_minutes` while it lasts, and its end
once (`recovered`); so are runs that keep rejecting more than the threshold (the same records
refused run after run), told again after a run at or under it; the budget's running out once
until a run finishes or the UTC day changes.
What was told is kept in the state (`AlertMemory`): a restarted daemon, or a standby taking
over, goes on with the streak rather than telling it again. A state that cannot be read or
written (the very failure being told, maybe) leaves the daemon going by what it remembers itself.

Telling never holds up a sync nor fails one: an alert goes into a bounded queue, and a thread of
its own posts it, retrying a webhook that fails (a refused connection, a timeout, 5xx, 429) with
backoff and Retry-After honoured, up to `[alerts].attempts`, then giving up with a warning. At
shutdown what is queued gets `FLUSH_SECONDS`. The webhook URL is a secret (Slack's carries its
key in its path): it is in no log line and no error, and no library's message about a request to
it is passed on.
"""

from __future__ import annotations

import enum
import functools
import json
import queue
import re
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import Message
from http.client import HTTPException
from typing import IO, ParamSpec, Protocol

import structlog

from funnelsync import __version__
from funnelsync.config import AlertSettings, Config, read_alert_url
from funnelsync.connectors.retry import call_with_retries, retry_after_seconds
from funnelsync.daemon.health import SUCCEEDED
from funnelsync.errors import DailyLimitReached, FatalError, FunnelsyncError, RetriableError
from funnelsync.state.records import ToldAlert
from funnelsync.sync.engine import RunSummary

log = structlog.get_logger("funnelsync.alerts")
QUEUE_SIZE = 100
FLUSH_SECONDS = 2.0  # at shutdown, taken from the stop grace
MAX_RETRY_AFTER = 60.0  # one webhook's Retry-After must not hold the alerts behind it for long
FIRST_WAIT = 1.0  # the backoff's first (random) wait; it doubles, up to MAX_WAIT
MAX_WAIT = 30.0
READ_LIMIT = 64 * 1024
# Runs start a little after their cron tick and the repeat is timed from those starts: without
# this, a repeat due at 10:00 would miss the 10:00 run started a few milliseconds "early".
REPEAT_SLACK = timedelta(minutes=1)
_ONE_WORD = re.compile(r"^[a-z_]{1,60}$")


class AlertEvent(enum.StrEnum):
    RUN_FAILED = "run_failed"
    REJECTS_ABOVE_THRESHOLD = "rejects_above_threshold"
    RECOVERED = "recovered"
    DAILY_BUDGET_EXHAUSTED = "daily_budget_exhausted"
    STANDBY_TOOK_OVER = "standby_took_over"


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Alert:
    event: AlertEvent
    summary: str
    details: Mapping[str, object]
    host: str
    at: datetime = field(default_factory=utc_now)

    def as_json(self) -> dict[str, object]:
        return {"event": str(self.event), "summary": self.summary, "details": dict(self.details),
                "at": self.at.isoformat(timespec="seconds"), "host": self.host}

    def as_slack(self) -> dict[str, str]:
        """Slack's incoming-webhook message: `text` in Slack's mrkdwn, which takes `&`, `<` and
        `>` for its own markup, so they are escaped in what is quoted."""
        lines = [f"*funnelsync* on `{_slack(self.host)}`: {_slack(self.summary)}",
                 f"• event: `{self.event}`"]
        lines += [f"• {_slack(key)}: {_slack(_shown(value))}" for key, value in self.details.items()]
        lines.append(f"• at: {self.at.isoformat(timespec='seconds')}")
        return {"text": "\n".join(lines)}


def _slack(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _shown(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _iso(at: datetime | None) -> str | None:
    return at.isoformat(timespec="seconds") if at else None


def _shown_at(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _duration(span: timedelta) -> str:
    minutes = int(span.total_seconds() // 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    parts = [f"{days} d" if days else "", f"{hours} h" if hours else "", f"{minutes} min" if minutes else ""]
    return " ".join(part for part in parts if part) or "under a minute"


def _failed_runs(count: int) -> str:
    return "1 failed run" if count == 1 else f"{count} failed runs in a row"


P = ParamSpec("P")


def _never_fails_the_daemon(tell: Callable[P, None]) -> Callable[P, None]:
    @functools.wraps(tell)
    def telling(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            tell(*args, **kwargs)
        except Exception:
            log.exception("could not queue an alert")

    return telling


class AlertMemory(Protocol):
    """Where the alerts told are kept across restarts and takeovers: the state."""

    def told_alerts(self) -> dict[str, ToldAlert]: ...

    def remember_told_alert(self, told: ToldAlert) -> None: ...

    def forget_told_alert(self, event: str) -> None: ...


class Alerts:
    """What the daemon tells the webhook. With no URL (alerts off) every call does nothing."""

    def __init__(self, settings: AlertSettings, url: str | None, *,
                 clock: Callable[[], datetime] = utc_now, memory: AlertMemory | None = None) -> None:
        self.settings = settings
        self.host = socket.gethostname()  # a pod's name, under Kubernetes
        self.clock = clock  # aware, in UTC
        self._webhook = Webhook(url) if url else None
        self._queue: queue.Queue[Alert | None] = queue.Queue(QUEUE_SIZE)
        self._lock = threading.Lock()
        self._started = False
        self._closing = threading.Event()  # also cuts a retry's wait short
        self._deadline = float("inf")
        self._memory = memory
        self._told: dict[str, ToldAlert] = {}  # by event: what the memory held when last read, and since
        self._thread = threading.Thread(target=self._deliver_queued, name="funnelsync-alerts", daemon=True)

    @classmethod
    def from_config(cls, config: Config, *, clock: Callable[[], datetime] = utc_now,
                    memory: AlertMemory | None = None) -> Alerts:
        settings = config.alerts
        url = read_alert_url(settings)
        if url is None:
            log.info("alerts off: the environment variable is not set", url_env=settings.url_env)
        else:
            log.info("alerts on", url_env=settings.url_env, format=settings.format,
                     rejects_above=settings.rejects_above, repeat_every_minutes=settings.repeat_every_minutes)
        return cls(settings, url, clock=clock, memory=memory)

    # -- what the daemon tells ------------------------------------------------------------------

    @_never_fails_the_daemon
    def run_failed(self, error: BaseException, started: datetime | None = None) -> None:
        """A scheduled run, which began at `started`, ended by an error. One ended by the day's
        request budget is told as that, and is no part of a streak of failed runs: it neither
        lengthens one nor ends it."""
        if self._webhook is None:  # alerts off: nothing to tell, nor to hold back
            return
        now = self.clock()
        if isinstance(error, DailyLimitReached):
            self._daily_budget_exhausted(error, now)
            return
        kind = type(error).__name__
        reason = str(error)[:2000] if isinstance(error, FunnelsyncError) else f"{kind}: {error}"[:2000]
        started = started or now
        with self._lock:
            told = self._recall().get(AlertEvent.RUN_FAILED)
            since = told.since if told and told.since else started
            runs = (told.runs if told else 0) + 1
            first = told is None
            if told and not self._repeat_due(told.told_at, started):
                self._remember(ToldAlert(AlertEvent.RUN_FAILED, told.told_at, since, runs))
                log.info("alert held back: the failure was told already", alert=AlertEvent.RUN_FAILED,
                         failed_runs=runs, told_at=_iso(told.told_at))
                return
            self._remember(ToldAlert(AlertEvent.RUN_FAILED, started, since, runs))
        summary = (f"the scheduled sync failed: {reason}" if first else
                   f"the scheduled sync still fails, {runs} runs in a row since {_shown_at(since)}: {reason}")
        self.send(self._alert(AlertEvent.RUN_FAILED, summary, now, error=kind, reason=reason, failed_runs=runs,
                              failing_since=_iso(since)))

    @_never_fails_the_daemon
    def run_finished(self, summary: RunSummary) -> None:
        if self._webhook is None:
            return
        if summary.outcome in SUCCEEDED:
            self._runs_again(summary)
        threshold = self.settings.rejects_above
        now = self.clock()
        with self._lock:
            told = self._recall().get(AlertEvent.REJECTS_ABOVE_THRESHOLD)
            if summary.rejected <= threshold:
                if told:
                    self._forget(AlertEvent.REJECTS_ABOVE_THRESHOLD)
                return
            if told and not self._repeat_due(told.told_at, now):
                log.info("alert held back: rejects above the threshold were told already",
                         alert=AlertEvent.REJECTS_ABOVE_THRESHOLD, rejected=summary.rejected,
                         told_at=_iso(told.told_at))
                return
            self._remember(ToldAlert(AlertEvent.REJECTS_ABOVE_THRESHOLD, now))
        self.send(self._alert(
            AlertEvent.REJECTS_ABOVE_THRESHOLD,
            f"{summary.rejected} contacts were rejected in run {summary.run_id}, more than the {threshold} "
            "of [alerts].rejects_above; `funnelsync rejects` lists them with the reasons",
            now, run_id=summary.run_id, rejected=summary.rejected, threshold=threshold,
            written=summary.written,
        ))

    @_never_fails_the_daemon
    def standby_took_over(self) -> None:
        self.send(self._alert(
            AlertEvent.STANDBY_TOOK_OVER,
            "this daemon, a standby, took over the sync: the daemon that was active over the state is gone",
            self.clock(),
        ))

    def _repeat_due(self, told_at: datetime, at: datetime) -> bool:
        repeat = self.settings.repeat_every_minutes
        return bool(repeat) and at - told_at + REPEAT_SLACK >= timedelta(minutes=repeat)

    def _runs_again(self, summary: RunSummary) -> None:
        """A run that finished ends the streak of failed runs (told as `recovered` if it was
        told), and the budget's exhaustion: HubSpot's own daily limit resets at the portal's
        midnight, not at UTC's, so one that runs out again the same UTC day is told again."""
        now = self.clock()
        with self._lock:
            told = self._recall()
            streak = told.get(AlertEvent.RUN_FAILED)
            for event in (AlertEvent.RUN_FAILED, AlertEvent.DAILY_BUDGET_EXHAUSTED):
                if event in told:
                    self._forget(event)
        if streak is None or streak.since is None:
            return
        lasted = now - streak.since
        self.send(self._alert(
            AlertEvent.RECOVERED,
            f"the scheduled sync runs again (run {summary.run_id}) after {_failed_runs(streak.runs)} "
            f"over {_duration(lasted)}, since {_shown_at(streak.since)}",
            now, run_id=summary.run_id, failed_runs=streak.runs, failing_since=_iso(streak.since),
            lasted_minutes=int(lasted.total_seconds() // 60),
        ))

    def _daily_budget_exhausted(self, error: DailyLimitReached, now: datetime) -> None:
        with self._lock:
            told = self._recall().get(AlertEvent.DAILY_BUDGET_EXHAUSTED)
            if told and told.told_at.date() == now.date():
                return
            self._remember(ToldAlert(AlertEvent.DAILY_BUDGET_EXHAUSTED, now))
        self.send(self._alert(AlertEvent.DAILY_BUDGET_EXHAUSTED,
                              f"the daily HubSpot request budget is spent: {error}", now, reason=str(error)[:2000]))

    # -- what was told, kept in the state when it answers ---------------------------------------

    def _recall(self) -> dict[str, ToldAlert]:
        if self._memory is not None:
            try:
                self._told = self._memory.told_alerts()
            except Exception as error:
                log.warning("could not read the alerts told from the state: going by this daemon's own memory",
                            error=type(error).__name__)
        return dict(self._told)

    def _remember(self, told: ToldAlert) -> None:
        self._told[told.event] = told
        self._keep(lambda memory: memory.remember_told_alert(told))

    def _forget(self, event: str) -> None:
        self._told.pop(event, None)
        self._keep(lambda memory: memory.forget_told_alert(event))

    def _keep(self, change: Callable[[AlertMemory], None]) -> None:
        if self._memory is None:
            return
        try:
            change(self._memory)
        except Exception as error:
            log.warning("could not keep the alerts told in the state: a restarted daemon may tell them again",
                        error=type(error).__name__)

    def _alert(self, event: AlertEvent, summary: str, at: datetime, **details: object) -> Alert:
        return Alert(event, summary, details, self.host, at)

    # -- delivery -------------------------------------------------------------------------------

    def send(self, alert: Alert) -> None:
        """Queue the alert for the webhook; never blocks, never raises."""
        if self._webhook is None:
            return
        try:
            with self._lock:
                if self._closing.is_set():
                    log.warning("alert not sent: the daemon is stopping", alert=alert.event)
                    return
                if not self._started:
                    self._thread.start()
                    self._started = True
            self._queue.put_nowait(alert)
        except queue.Full:
            log.warning("alert dropped: too many alerts are waiting for the webhook", alert=alert.event,
                        waiting=QUEUE_SIZE)
        except Exception:
            log.exception("could not queue an alert", alert=alert.event)
        else:
            log.info("alert queued", alert=alert.event, summary=alert.summary)

    def close(self) -> None:
        """Give what is queued `FLUSH_SECONDS`, then go: an alert must not hold up the exit."""
        with self._lock:
            if self._closing.is_set():
                return
            self._deadline = time.monotonic() + FLUSH_SECONDS
            self._closing.set()
            started = self._started
        if not started:
            return
        with suppress(queue.Full):  # the thread stops at the deadline anyway
            self._queue.put_nowait(None)
        self._thread.join(FLUSH_SECONDS + 0.5)
        if self._thread.is_alive():
            log.warning("the webhook had not answered when the daemon stopped: alerts may be lost",
                        waiting=self._queue.qsize())

    def _deliver_queued(self) -> None:
        left = 0
        while (alert := self._next()) is not None:
            if self._past_deadline():
                left += 1
            else:
                self._deliver(alert)
        if left:
            log.warning("alerts not delivered: the daemon stopped first", count=left)

    def _next(self) -> Alert | None:
        if not self._closing.is_set():
            return self._queue.get()
        try:
            return self._queue.get(timeout=max(self._deadline - time.monotonic(), 0.0))
        except queue.Empty:
            return None

    def _deliver(self, alert: Alert) -> None:
        webhook = self._webhook
        assert webhook is not None
        body = alert.as_slack() if self.settings.format == "slack" else alert.as_json()

        def post() -> None:
            if self._past_deadline():
                raise FatalError("the daemon stopped before the webhook answered")
            webhook.post(body, self._timeout())

        with structlog.contextvars.bound_contextvars(alert=str(alert.event)):
            try:
                call_with_retries(post, attempts=self.settings.attempts, initial_wait=FIRST_WAIT,
                                  max_wait=MAX_WAIT, sleep=self._wait)
            except FunnelsyncError as error:
                log.warning("alert not delivered: giving up", attempts=self.settings.attempts, reason=str(error))
            except Exception as error:  # a bug must not end the thread: the next alert is tried
                log.warning("alert not delivered: giving up", error=type(error).__name__)
            else:
                log.info("alert delivered")

    def _timeout(self) -> float:
        return max(min(self.settings.timeout_seconds, self._deadline - time.monotonic()), 0.05)

    def _past_deadline(self) -> bool:
        return time.monotonic() >= self._deadline

    def _wait(self, seconds: float) -> None:
        self._closing.wait(seconds)


class Webhook:
    """POSTs JSON to the URL, and sorts a failure into worth another try (`RetriableError`) or
    not (`FatalError`). No message of either holds the URL."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._opener = urllib.request.build_opener(_NoRedirects())

    def __repr__(self) -> str:
        return "Webhook(<the URL is a secret>)"

    def post(self, body: Mapping[str, object], timeout: float) -> None:
        request = urllib.request.Request(
            self._url, data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json; charset=utf-8", "User-Agent": f"funnelsync/{__version__}"},
        )
        try:
            with self._opener.open(request, timeout=timeout) as answer:
                answer.read(READ_LIMIT)
        except urllib.error.HTTPError as answer:
            raise _refused(answer.code, answer.headers, _text_of(answer)) from None
        except urllib.error.URLError as error:
            raise _unreachable(error.reason, timeout) from None
        except (OSError, HTTPException) as error:
            raise _unreachable(error, timeout) from None


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect would turn the POST into a GET (the alert lost yet "delivered"), or take it
    where the URL's rule does not allow: it is the webhook refusing."""

    def redirect_request(self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str,
                         headers: Message, newurl: str) -> urllib.request.Request | None:
        return None


def _refused(status: int, headers: Message, text: str) -> FunnelsyncError:
    if status in (408, 429) or status >= 500:
        wait = retry_after_seconds(headers.get("Retry-After"))
        return RetriableError(f"the webhook answered {status}",
                              retry_after=None if wait is None else min(wait, MAX_RETRY_AFTER))
    said = f": {text}" if text else ""
    return FatalError(f"the webhook refused the alert ({status}{said})")


def _unreachable(reason: object, timeout: float) -> FunnelsyncError:
    if isinstance(reason, TimeoutError):
        return RetriableError(f"the webhook did not answer within {timeout:g} s")
    if isinstance(reason, ssl.SSLCertVerificationError):
        return FatalError("the webhook's TLS certificate was not accepted")
    what = type(reason).__name__ if isinstance(reason, BaseException) else "no connection"
    return RetriableError(f"the webhook could not be reached ({what})")


def _text_of(answer: urllib.error.HTTPError) -> str:
    """Why, when the body says it in one word as Slack does (`invalid_payload`, `no_service`);
    nothing else of it: a server's error page may quote the path asked for, the secret."""
    try:
        text = answer.read(100).decode(errors="replace").strip()
    except (OSError, HTTPException):
        return ""
    finally:
        answer.close()
    return text if _ONE_WORD.match(text) else ""
