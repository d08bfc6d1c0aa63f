"""A whole run from a loaded config: the parts opened, the sync or the rebuild, the parts closed.

`run` (the daemon) and the commands call these; what a person sees is theirs to print.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
import structlog

from funnelsync.config import Config
from funnelsync.errors import StateLocked
from funnelsync.state import StateStore
from funnelsync.state.models import RunOutcome
from funnelsync.sync.engine import RunSummary, SyncEngine
from funnelsync.sync.factory import open_crm, open_source, open_state
from funnelsync.sync.progress import PhaseProgress, ProgressReport
from funnelsync.sync.rebuild import RebuildReport, StateRebuilder
from funnelsync.sync.shutdown import Shutdown

log = structlog.get_logger("funnelsync.sync")
LOG_EVERY_SECONDS = 10.0

ProgressCallback = Callable[[int, int], None]


class LogProgress:
    """A log line every few seconds, and one at the end."""

    def __init__(self, event: str, done_name: str) -> None:
        self.event = event
        self.done_name = done_name
        self._last_log = 0.0

    def __call__(self, done: int, total: int) -> None:
        if time.monotonic() - self._last_log >= LOG_EVERY_SECONDS or done >= total:
            self._last_log = time.monotonic()
            log.info(self.event, **{self.done_name: done, "total": total})


class LogPhases:
    """A sync's progress as log lines: every few seconds, and at the end of each phase."""

    def __init__(self) -> None:
        self._last_log = 0.0

    def __call__(self, progress: PhaseProgress) -> None:
        if time.monotonic() - self._last_log >= LOG_EVERY_SECONDS or progress.finished:
            self._last_log = time.monotonic()
            left = None if progress.seconds_left is None else round(progress.seconds_left)
            log.info("progress", phase=progress.phase, done=progress.done, total=progress.total,
                     seconds=round(progress.seconds, 1), seconds_left=left)


def open_state_for_reading(config: Config) -> StateStore:
    """The state, or an empty one in memory when there is none yet (so `plan` creates nothing)."""
    url = sa.engine.make_url(config.state.url)
    in_a_file = url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")
    if in_a_file and not Path(str(url.database)).exists():
        return StateStore("sqlite://")
    return open_state(config)


def run_sync(config: Config, *, dry_run: bool, shutdown: Shutdown | None = None,
             progress: ProgressReport | None = None) -> RunSummary:
    for warning in config.warnings():
        log.warning("config warning", key=warning.key, warning=warning.message)
    stop = shutdown.stop if shutdown else threading.Event()
    source = open_source(config)
    try:
        state = open_state_for_reading(config) if dry_run else open_state(config)
        try:
            crm = open_crm(config, used_today=state.api_calls_today(), stop=stop)
            engine = SyncEngine(config, source, crm, state, stop=stop,
                                progress=progress or LogPhases())
            if shutdown is not None:
                shutdown.on_overrun = functools.partial(_record_stopped, config, engine)
            summary = engine.sync(dry_run=dry_run)
            if not dry_run:
                # A write outside the sync lock could collide with the next sync's; one that
                # took the state since prunes in its turn.
                with suppress(StateLocked), state.exclusive():
                    state.prune(timedelta(days=config.state.retention_days))
            return summary
        finally:
            state.close()
    finally:
        source.close()


def _record_stopped(config: Config, engine: SyncEngine) -> None:
    if engine.run_id is None:
        return
    state = open_state(config)
    try:
        state.finish_run(engine.run_id, RunOutcome.STOPPED, api_calls=engine.calls(),
                         message="stopped on request; the grace period ran out with a HubSpot request in flight, "
                                 "which the next run settles before sending anything")
    finally:
        state.close()


def rebuild_state(config: Config, *, dry_run: bool, progress: ProgressCallback | None = None) -> RebuildReport:
    source = open_source(config)
    try:
        state = open_state_for_reading(config) if dry_run else open_state(config)
        try:
            crm = open_crm(config, used_today=state.api_calls_today())
            rebuilder = StateRebuilder(config, source, crm, state,
                                       progress=progress or LogProgress("reading contacts from HubSpot", "read"))
            return rebuilder.rebuild(dry_run=dry_run)
        finally:
            state.close()
    finally:
        source.close()
