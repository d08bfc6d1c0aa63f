"""`funnelsync run`: sync on the configured cron schedule until SIGTERM/SIGINT.

One daemon is active over a state at a time: it holds the state's leader lock for its whole
life. Another daemon over the same state is a warm standby: it tries the lock at every tick
(and every `standby_poll_seconds`) and takes over, syncing at once, when the active one is gone. One run at a time
(`max_instances=1`), missed runs coalesced into one. On a signal the run in flight stops at its
next safe point, within `[daemon].stop_grace_seconds` (see `shutdown.py`); the next start carries on.
"""

from __future__ import annotations

import threading

import structlog
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

from funnelsync.config import Config
from funnelsync.daemon.health import HealthServer, RunMetrics
from funnelsync.errors import FunnelsyncError, StateLocked, StopRequested
from funnelsync.state.database import StateLock
from funnelsync.sync.factory import open_state
from funnelsync.sync.run import run_sync
from funnelsync.sync.shutdown import Shutdown

log = structlog.get_logger("funnelsync.daemon")
JOB_ID = "funnelsync-sync"


class Daemon:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.shutdown_on_signal = Shutdown(config.daemon.stop_grace_seconds)
        self.stop = self.shutdown_on_signal.stop
        self.metrics = RunMetrics()
        self.scheduler = BackgroundScheduler(timezone="UTC")
        self.state = open_state(config)
        self.leader: StateLock = self.state.leader_lock()
        self.leading = False
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
            if not self.leading:
                self.metrics.standby("another funnelsync daemon is active over this state")
            return self.leading

    def sync_job(self) -> None:
        if self.stop.is_set() or not self._lead():
            return
        self.metrics.run_started()
        try:
            summary = run_sync(self.config, dry_run=False, shutdown=self.shutdown_on_signal)
        except StateLocked as exc:  # a one-off `funnelsync sync` is running
            self.metrics.run_skipped(str(exc))
            log.info("skipped: a sync is already running over this state", reason=str(exc))
        except StopRequested as exc:
            self.metrics.run_skipped(str(exc))
        except FunnelsyncError as exc:
            self.metrics.run_failed(str(exc))
            log.error("scheduled sync failed", error=type(exc).__name__, reason=str(exc))
        except Exception as exc:  # a bug must not kill the daemon: log it, try next time
            self.metrics.run_failed(f"{type(exc).__name__}: {exc}")
            log.exception("scheduled sync crashed")
        else:
            self.metrics.run_finished(summary)

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
        self.scheduler.start()
        log.info("daemon started", schedule=self.config.daemon.schedule, http=self.config.daemon.http)

    def shutdown(self) -> None:
        self.stop.set()
        self.scheduler.shutdown(wait=True)
        self.leader.release()
        self.state.close()
        log.info("daemon stopped")


def run_daemon(config: Config) -> None:
    daemon = Daemon(config)
    daemon.shutdown_on_signal.install()
    health = HealthServer(config.daemon.http_host, config.daemon.http_port, daemon.metrics)
    health.start()
    try:
        daemon.start()
        daemon.stop.wait()
        daemon.shutdown()  # within the grace period, or the deadline ends the process
    finally:
        health.stop()
