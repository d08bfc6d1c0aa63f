"""`funnelsync run`: sync on the configured cron schedule until SIGTERM/SIGINT.

One run at a time (`max_instances=1`), missed runs coalesced into one. On a signal the run in
flight finishes the batch it is sending, records it, and stops; the next start carries on.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

import structlog
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

from funnelsync.config import Config
from funnelsync.daemon.health import HealthServer, RunMetrics
from funnelsync.daemon.runner import run_sync
from funnelsync.errors import FunnelsyncError, StateLocked

log = structlog.get_logger("funnelsync.daemon")
JOB_ID = "funnelsync-sync"


class Daemon:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.stop = threading.Event()
        self.metrics = RunMetrics()
        self.scheduler = BackgroundScheduler(timezone="UTC")

    def sync_job(self) -> None:
        if self.stop.is_set():
            return
        self.metrics.run_started()
        try:
            summary = run_sync(self.config, dry_run=False, stop=self.stop)
        except StateLocked as exc:
            self.metrics.standby(str(exc))
            log.info("standing by: another funnelsync holds the state", reason=str(exc))
        except FunnelsyncError as exc:
            self.metrics.run_failed(str(exc))
            log.error("scheduled sync failed", error=type(exc).__name__, reason=str(exc))
        except Exception as exc:  # a bug must not kill the daemon: log it, try next time
            self.metrics.run_failed(f"{type(exc).__name__}: {exc}")
            log.exception("scheduled sync crashed")
        else:
            self.metrics.run_finished(summary)

    def start(self) -> None:
        trigger = CronTrigger.from_crontab(self.config.daemon.schedule, timezone="UTC")
        self.scheduler.add_job(
            self.sync_job, trigger, id=JOB_ID, coalesce=True, max_instances=1,
            misfire_grace_time=300, replace_existing=True,
        )
        # A sidecar that just started should not wait up to a whole interval for its first sync.
        self.scheduler.add_job(self.sync_job, id=JOB_ID + "-at-start", max_instances=1)
        self.scheduler.start()
        log.info("daemon started", schedule=self.config.daemon.schedule, http=self.config.daemon.http)

    def shutdown(self) -> None:
        self.stop.set()
        self.scheduler.shutdown(wait=True)
        log.info("daemon stopped")


def run_daemon(config: Config) -> None:
    daemon = Daemon(config)
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("stop requested", signal=signal.Signals(signum).name)
        daemon.stop.set()
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    health = HealthServer(config.daemon.http_host, config.daemon.http_port, daemon.metrics)
    health.start()
    try:
        daemon.start()
        stopping.wait()
        daemon.shutdown()
    finally:
        health.stop()
