"""`funnelsync run`: sync on the configured cron schedule until SIGTERM/SIGINT.

One daemon is active over a state at a time: it holds the state's leader lock for its whole
life. Another daemon over the same state is a warm standby: it tries the lock at every tick
(and every `standby_poll_seconds`) and takes over, syncing at once, when the active one is gone. One run at a time
(`max_instances=1`), missed runs coalesced into one. On a signal the run in flight stops at its
next safe point, within `[daemon].stop_grace_seconds` (see `shutdown.py`); the next start carries on.
A heartbeat job, on a worker of its own, shows `/healthz` that the scheduler still runs jobs;
what the daemon's runs end with tells `/readyz` and the metrics (see `health.py`).
"""

from __future__ import annotations

import functools
import threading

import sqlalchemy as sa
import structlog
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_PAUSED, STATE_RUNNING, STATE_STOPPED
from apscheduler.triggers.cron import CronTrigger

from funnelsync import telemetry
from funnelsync.config import Config
from funnelsync.daemon import status_page
from funnelsync.daemon.alerts import Alerts
from funnelsync.daemon.health import (
    DAEMON_RUN_OUTCOMES,
    HEARTBEAT_SECONDS,
    STUCK_AFTER_SECONDS,
    DaemonHealth,
    HealthServer,
    StateCheck,
)
from funnelsync.errors import FunnelsyncError, StateLocked, StopRequested
from funnelsync.state.database import StateLock
from funnelsync.sync.factory import open_state
from funnelsync.sync.run import run_sync
from funnelsync.sync.shutdown import Shutdown

log = structlog.get_logger("funnelsync.daemon")
JOB_ID = "funnelsync-sync"
HEARTBEAT = "heartbeat"  # the job, and its executor
# APScheduler's state, as `/healthz` names it
SCHEDULER_STATES = {STATE_STOPPED: "stopped", STATE_RUNNING: "running", STATE_PAUSED: "paused"}


class Daemon:
    def __init__(self, config: Config, *, heartbeat_seconds: float = HEARTBEAT_SECONDS,
                 stuck_after_seconds: float = STUCK_AFTER_SECONDS) -> None:
        self.config = config
        self.shutdown_on_signal = Shutdown(config.daemon.stop_grace_seconds)
        self.stop = self.shutdown_on_signal.stop
        self.metrics = telemetry.Metrics(run_outcomes=DAEMON_RUN_OUTCOMES)
        # The heartbeat has a worker of its own: the syncs run on the default pool (10 workers;
        # the cron tick, the first sync and the standby poll each run one at a time), and a sync
        # that takes hours must never hold the heartbeat back and fail the liveness probe.
        self.scheduler = BackgroundScheduler(timezone="UTC", executors={HEARTBEAT: ThreadPoolExecutor(1)})
        self.heartbeat_seconds = heartbeat_seconds
        self.state = open_state(config)
        self.alerts = Alerts.from_config(config, memory=self.state)
        self.health = DaemonHealth(
            self.metrics, StateCheck(self._state_answers), self.scheduler_state,
            unready_after_failed_runs=config.daemon.unready_after_failed_runs,
            stuck_after_seconds=stuck_after_seconds,
        )
        self.leader: StateLock = self.state.leader_lock()
        self.leading = False
        self.stood_by = False  # a standby that takes over says so; a first start does not
        # the cron tick and the standby poll run on different worker threads, maybe at once
        self._leadership = threading.Lock()

    def _lead(self) -> bool:
        with self._leadership:
            if self.leading and not self.leader.still_held():
                log.warning("lost the state's leader lock: standing by")
                self.leader.release()
                self.leading = False
            if not self.leading and self.leader.acquire():
                self.leading = True
                log.info("active: this daemon holds the state")
                if self.stood_by:
                    self.alerts.standby_took_over()
            if not self.leading:
                self.stood_by = True
            self.health.leading(self.leading)
            return self.leading

    def sync_job(self) -> None:
        if self.stop.is_set() or not self._lead():
            return
        self.health.run_started()
        started = self.alerts.clock()  # a streak of failed runs is timed by their starts, at the ticks
        try:
            with telemetry.recording(self.metrics):
                summary = run_sync(self.config, dry_run=False, shutdown=self.shutdown_on_signal)
        except StateLocked as exc:  # a one-off `funnelsync sync` is running
            self.health.run_skipped()
            log.info("skipped: a sync is already running over this state", reason=str(exc))
        except StopRequested:
            self.health.run_stopped()
        except FunnelsyncError as exc:
            self.health.run_failed(exc)
            log.error("scheduled sync failed", error=type(exc).__name__, reason=str(exc))
            self.alerts.run_failed(exc, started)
        except Exception as exc:  # a bug must not kill the daemon: log it, try next time
            self.health.run_failed(exc)
            log.exception("scheduled sync crashed")
            self.alerts.run_failed(exc, started)
        else:
            self.health.run_finished(summary)
            self.alerts.run_finished(summary)

    def take_over_if_free(self) -> None:
        if not self.leading and self._lead():
            self.sync_job()

    def start(self) -> None:
        trigger = CronTrigger.from_crontab(self.config.daemon.schedule, timezone="UTC")
        self.scheduler.add_job(
            self.sync_job, trigger, id=JOB_ID, coalesce=True, max_instances=1,
            misfire_grace_time=300, replace_existing=True,
        )
        # A sidecar that just started should not wait up to a whole interval for its first sync.
        self.scheduler.add_job(self.sync_job, id=JOB_ID + "-at-start", max_instances=1)
        self.scheduler.add_job(self.take_over_if_free, "interval", seconds=self.config.daemon.standby_poll_seconds,
                               id=JOB_ID + "-standby", coalesce=True, max_instances=1)
        self.scheduler.add_job(self.health.beat, "interval", seconds=self.heartbeat_seconds, id=HEARTBEAT,
                               executor=HEARTBEAT, coalesce=True, max_instances=1)
        self.scheduler.start()
        self.health.beat()
        log.info("daemon started", schedule=self.config.daemon.schedule, http=self.config.daemon.http)

    def shutdown(self) -> None:
        self.stop.set()
        self.scheduler.shutdown(wait=True)
        self.alerts.close()  # after the last run's alerts, within the grace
        self.leader.release()
        self.state.close()
        log.info("daemon stopped")

    def scheduler_state(self) -> str:
        return SCHEDULER_STATES.get(self.scheduler.state, "stopped")

    def _state_answers(self) -> None:
        """A round trip to the state's database: to a PostgreSQL server, a query it answers; on
        SQLite, a connection that opens, without the file lock a long planning transaction holds."""
        with self.state.engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))


def run_daemon(config: Config) -> None:
    daemon = Daemon(config)
    with daemon.shutdown_on_signal.installed():
        health = HealthServer(config.daemon.http_host, config.daemon.http_port, daemon.health,
                              functools.partial(status_page.render, config, daemon.state))
        health.start()
        try:
            daemon.start()
            daemon.stop.wait()
            daemon.shutdown()  # within the grace period, or the deadline ends the process
        finally:
            health.stop()
