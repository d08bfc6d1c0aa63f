"""What the daemon's HTTP port serves: the probes, `/metrics`, and the status page.

- `/healthz`, liveness: the process and its scheduler are alive. The scheduler beats every
  `HEARTBEAT_SECONDS` on a worker of its own; a scheduler that is not running, or a heartbeat
  older than `STUCK_AFTER_SECONDS`, fails it. A sync, however long, does not: it runs on
  another worker.
- `/readyz`, readiness: the daemon does its job, or stands ready to: no run ended on a config
  error since the last good one, the state answers, the daemon is active or a warm standby, and
  fewer than `[daemon].unready_after_failed_runs` runs failed in a row. The first sync in
  flight is ready; so is a daemon retrying after a failed run.
- `/metrics`: Prometheus' text format (see `funnelsync/telemetry.py`).
- `/` and `/status`: the status page for RevOps (`status_page.py`).

Each probe answers 200 or 503 with a JSON body that says why.
"""

from __future__ import annotations

import enum
import html
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import structlog
from prometheus_client.exposition import choose_encoder

from funnelsync.errors import ConfigError, DailyLimitReached, FunnelsyncError
from funnelsync.state.models import RunOutcome
from funnelsync.sync.engine import RunSummary
from funnelsync.telemetry import Metrics

log = structlog.get_logger("funnelsync.daemon")

HEARTBEAT_SECONDS = 5.0
STUCK_AFTER_SECONDS = 30.0  # six heartbeats missed; Kubernetes' liveness probe adds its own threshold
STATE_ANSWER_SECONDS = 5.0  # how long the state's last answer is taken as still true
# Kubernetes gives a probe 1 s by default: a probe never waits longer than this for the state
# (a SQLite state locked by a long transaction, a PostgreSQL server that hangs).
STATE_WAIT_SECONDS = 0.8
MESSAGE_CHARS = 500

# A run that finished its work (what was refused is recorded, and tried again next run).
SUCCEEDED = frozenset({RunOutcome.OK, RunOutcome.REJECTS, RunOutcome.ENROLLMENTS_FAILED})
FAILED = frozenset({RunOutcome.FAILED, RunOutcome.DAILY_LIMIT})
# What a daemon's run may end with (`interrupted` is set later, by another run).
DAEMON_RUN_OUTCOMES = tuple(o for o in RunOutcome if o not in (RunOutcome.RUNNING, RunOutcome.INTERRUPTED))


class Role(enum.StrEnum):
    STARTING = "starting"  # not yet known: the first tick tries the state's leader lock
    ACTIVE = "active"
    STANDBY = "standby"


class StateCheck:
    """Whether the state answers: asked at most every `STATE_ANSWER_SECONDS`, in a thread of
    its own, and waited for at most `STATE_WAIT_SECONDS`."""

    def __init__(self, ask: Callable[[], None], *, answer_seconds: float = STATE_ANSWER_SECONDS,
                 wait_seconds: float = STATE_WAIT_SECONDS) -> None:
        self._ask = ask
        self.answer_seconds = answer_seconds
        self.wait_seconds = wait_seconds
        self._lock = threading.Lock()
        self._answered_at = float("-inf")
        self._problem: str | None = None
        self._asking: threading.Event | None = None

    def problem(self) -> str | None:
        """None when the state answered, else what is wrong with it."""
        with self._lock:
            if time.monotonic() - self._answered_at < self.answer_seconds:
                return self._problem
            if self._asking is None:
                self._asking = threading.Event()
                threading.Thread(target=self._check, args=(self._asking,), name="funnelsync-state-check",
                                 daemon=True).start()
            asking = self._asking
        if not asking.wait(self.wait_seconds):
            return f"the state did not answer within {self.wait_seconds:g} s"
        with self._lock:
            return self._problem

    def _check(self, done: threading.Event) -> None:
        try:
            self._ask()
            problem = None
        except FunnelsyncError as exc:  # a StateError names the state, its password hidden
            problem = str(exc)[:MESSAGE_CHARS]
        except Exception as exc:
            problem = f"the state cannot be reached ({type(exc).__name__})"
        with self._lock:
            self._problem = problem
            self._answered_at = time.monotonic()
            self._asking = None
        done.set()


class DaemonHealth:
    """What the probes say of the daemon, from what the daemon tells it; it keeps the
    daemon's own metrics (runs, leader, last success) in step."""

    def __init__(self, metrics: Metrics, state: StateCheck, scheduler_state: Callable[[], str], *,
                 unready_after_failed_runs: int, stuck_after_seconds: float = STUCK_AFTER_SECONDS) -> None:
        self.metrics = metrics
        self.state = state
        self.scheduler_state = scheduler_state  # "running", "paused" or "stopped"
        self.unready_after_failed_runs = unready_after_failed_runs
        self.stuck_after_seconds = stuck_after_seconds
        self._lock = threading.Lock()
        self.role = Role.STARTING
        self.running = False
        self.runs = 0  # ended since the daemon started
        self.failed_in_a_row = 0
        self.last_outcome: RunOutcome | None = None
        self.last_error: str | None = None
        self.config_problem: str | None = None
        self._started = time.monotonic()
        self._last_beat: float | None = None

    # -- what the daemon tells it ------------------------------------------------------------

    def beat(self) -> None:
        with self._lock:
            self._last_beat = time.monotonic()

    def leading(self, active: bool) -> None:
        with self._lock:
            self.role = Role.ACTIVE if active else Role.STANDBY
        self.metrics.leading(active)

    def run_started(self) -> None:
        with self._lock:
            self.running = True
        self.metrics.run_started()

    def run_finished(self, summary: RunSummary) -> None:
        self._ended(summary.outcome, summary.message() or None)

    def run_failed(self, error: BaseException) -> None:
        if isinstance(error, FunnelsyncError):
            outcome = RunOutcome.DAILY_LIMIT if isinstance(error, DailyLimitReached) else RunOutcome.FAILED
            reason = str(error)
        else:  # a bug
            outcome, reason = RunOutcome.FAILED, f"{type(error).__name__}: {error}"
        problem = "; ".join(str(p) for p in error.problems) if isinstance(error, ConfigError) else None
        self._ended(outcome, reason, config_problem=problem)

    def run_stopped(self) -> None:
        self._ended(RunOutcome.STOPPED, "stopped on request")

    def run_skipped(self) -> None:
        """The run did not take place: a one-off `funnelsync sync` held the state."""
        with self._lock:
            self.running = False
            failed = self.failed_in_a_row
        self.metrics.run_ended(None, succeeded=False, failed_in_a_row=failed)

    def _ended(self, outcome: RunOutcome, reason: str | None, *, config_problem: str | None = None) -> None:
        with self._lock:
            self.running = False
            self.runs += 1
            self.last_outcome = outcome
            self.last_error = reason[:MESSAGE_CHARS] if reason else None
            if outcome in SUCCEEDED:
                self.failed_in_a_row = 0
                self.config_problem = None
            elif outcome in FAILED:
                self.failed_in_a_row += 1
                self.config_problem = config_problem
            failed = self.failed_in_a_row
        self.metrics.run_ended(outcome, succeeded=outcome in SUCCEEDED, failed_in_a_row=failed)

    # -- what the probes answer --------------------------------------------------------------

    def alive(self) -> tuple[bool, dict[str, Any]]:
        scheduler = self.scheduler_state()
        with self._lock:
            beat = self._last_beat
        if beat is None and scheduler == "stopped":
            scheduler = "starting"  # the HTTP port is served from just before the scheduler starts
        age = time.monotonic() - (beat if beat is not None else self._started)
        body: dict[str, Any] = {"alive": True, "scheduler": scheduler, "heartbeat_age_seconds": round(age, 1),
                                "stuck_after_seconds": self.stuck_after_seconds}
        if scheduler not in ("running", "starting"):
            body.update(alive=False, reason=f"the scheduler is {scheduler}: no sync will run")
        elif age > self.stuck_after_seconds:
            body.update(alive=False, reason=f"the scheduler is stuck: its last heartbeat was {age:.0f} s ago "
                                            f"(it beats every {HEARTBEAT_SECONDS:g} s)")
        return body["alive"], body

    def ready(self) -> tuple[bool, dict[str, Any]]:
        state_problem = self.state.problem()
        with self._lock:
            body: dict[str, Any] = {
                "ready": True,
                "role": str(self.role),
                "reason": "",
                "running": self.running,
                "runs": self.runs,
                "failed_runs_in_a_row": self.failed_in_a_row,
                "unready_after_failed_runs": self.unready_after_failed_runs,
                "last_outcome": str(self.last_outcome) if self.last_outcome else None,
                "last_error": self.last_error,
                "config": self.config_problem or "valid",
                "state": state_problem or "reachable",
            }
            unready = self._unready_reason(state_problem)
            body.update(ready=unready is None, reason=unready or self._ready_reason())
        return body["ready"], body

    def _unready_reason(self, state_problem: str | None) -> str | None:
        if self.config_problem:
            return f"the last run failed on the config: {self.config_problem}"
        if state_problem:
            return state_problem
        if self.failed_in_a_row >= self.unready_after_failed_runs:
            return (f"{self.failed_in_a_row} run(s) failed in a row (unready from "
                    f"{self.unready_after_failed_runs}, [daemon].unready_after_failed_runs): {self.last_error}")
        if self.role == Role.STARTING:
            return "starting: not yet known whether this daemon is active or a standby"
        return None

    def _ready_reason(self) -> str:
        if self.role == Role.STANDBY:
            return "warm standby: another funnelsync daemon is active over this state; this one takes over when it goes"
        if self.running:
            doing = "the first sync is running" if self.runs == 0 else "a sync is running"
        elif self.last_outcome is None:
            doing = "no run has ended yet"
        else:
            doing = f"the last run ended {self.last_outcome}"
        if self.failed_in_a_row:
            doing += (f"; {self.failed_in_a_row} run(s) failed in a row, unready from "
                      f"{self.unready_after_failed_runs}")
        return f"active: {doing}"


class HealthServer:
    def __init__(self, host: str, port: int, health: DaemonHealth, status_page: Callable[[], str]) -> None:
        self.health = health
        handler = _handler(health, status_page)
        try:
            self.server = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            raise ConfigError(f"daemon.http: cannot listen on {host}:{port} ({exc.strerror})") from None
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, name="health", daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _handler(health: DaemonHealth, status_page: Callable[[], str]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            if path == "/healthz":
                self._probe(*health.alive())
            elif path == "/readyz":
                self._probe(*health.ready())
            elif path == "/metrics":
                encode, content_type = choose_encoder(self.headers.get("Accept", ""))
                self._send(200, content_type, encode(health.metrics.registry))
            elif path in ("/", "/status"):
                self._status_page()
            else:
                self._send(404, "application/json", json.dumps({"error": "not found"}).encode())

        def _probe(self, ok: bool, body: dict[str, Any]) -> None:
            self._send(200 if ok else 503, "application/json", json.dumps(body).encode())

        def _status_page(self) -> None:
            try:
                page, status = status_page(), 200
            except FunnelsyncError as exc:  # the state failed: say so, as the probes do
                page, status = _unavailable(str(exc)), 503
            except Exception:
                log.exception("the status page failed")
                page, status = _unavailable("the status page failed; the daemon's log says why"), 500
            self._send(status, "text/html; charset=utf-8", page.encode())

        def _send(self, status: int, content_type: str, data: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass  # a probe every few seconds would drown the log

    return Handler


def _unavailable(reason: str) -> str:
    return (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>funnelsync</title></head>"
            f"<body><h1>funnelsync</h1><p>{html.escape(reason)}</p></body></html>")
