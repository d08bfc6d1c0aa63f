"""What `sync`, `plan` and `validate` do with a loaded config."""

from __future__ import annotations

import functools
import sys
import threading
import time
from contextlib import suppress
from datetime import timedelta
from pathlib import Path

import click
import sqlalchemy as sa
import structlog

from funnelsync.config import Config
from funnelsync.daemon.engine import RunSummary, SyncEngine
from funnelsync.daemon.enrollments import check_enrollment_targets, enrollment_targets
from funnelsync.daemon.factory import open_crm, open_source, open_state
from funnelsync.daemon.report import plan_text, summary_text
from funnelsync.daemon.shutdown import Shutdown
from funnelsync.errors import ConfigError, ConfigProblem, StateLocked, StopRequested
from funnelsync.mappings.schema import property_specs
from funnelsync.state import StateStore

log = structlog.get_logger("funnelsync.sync")
_LOG_EVERY_SECONDS = 10.0


def open_state_for_reading(config: Config) -> StateStore:
    """The state, or an empty one in memory when there is none yet (so `plan` creates nothing)."""
    url = sa.engine.make_url(config.state.url)
    in_a_file = url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")
    if in_a_file and not Path(str(url.database)).exists():
        return StateStore("sqlite://")
    return open_state(config)


class Progress:
    """A progress bar on a terminal; a log line every few seconds otherwise."""

    def __init__(self) -> None:
        self.on_terminal = sys.stderr.isatty()
        self._last_log = 0.0

    def __call__(self, done: int, total: int) -> None:
        if self.on_terminal:
            width = 30
            filled = width * done // max(total, 1)
            sys.stderr.write(f"\r  [{'#' * filled}{'.' * (width - filled)}] {done}/{total} contacts")
            if done >= total:
                sys.stderr.write("\n")
            sys.stderr.flush()
        elif time.monotonic() - self._last_log >= _LOG_EVERY_SECONDS or done >= total:
            self._last_log = time.monotonic()
            log.info("progress", written=done, total=total)


def run_sync(config: Config, *, dry_run: bool, shutdown: Shutdown | None = None) -> RunSummary:
    stop = shutdown.stop if shutdown else threading.Event()
    source = open_source(config)
    try:
        state = open_state_for_reading(config) if dry_run else open_state(config)
        try:
            crm = open_crm(config, used_today=state.api_calls_today(), stop=stop)
            engine = SyncEngine(config, source, crm, state, stop=stop, progress=Progress())
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
        state.finish_run(engine.run_id, "stopped", api_calls=engine.calls(),
                         message="stopped on request; the grace period ran out with a HubSpot request in flight, "
                                 "which the next run settles before sending anything")
    finally:
        state.close()


def sync_once(config: Config, *, dry_run: bool) -> int:
    shutdown = Shutdown(config.daemon.stop_grace_seconds).install()
    try:
        summary = run_sync(config, dry_run=dry_run, shutdown=shutdown)
    except StopRequested as exc:
        click.echo(f"funnelsync: {exc}; the next run carries on", err=True)
        return shutdown.exit_status
    click.echo(plan_text(summary, config) if dry_run else summary_text(summary))
    return shutdown.exit_status or summary.exit_status


def validate(config: Config) -> None:
    click.echo("config: ok")
    source = open_source(config)
    try:
        source.check()
    finally:
        source.close()
    click.echo(f"source ({config.source.kind}): reachable, query runs")
    crm = open_crm(config)
    crm.check_access()
    click.echo("HubSpot: token accepted, contacts and properties readable")
    report = crm.ensure_properties(property_specs(config), dry_run=True)
    if report.created:
        click.echo(f"HubSpot: properties to create on the first sync: {', '.join(report.created)}")
    for name, options in report.options_added.items():
        click.echo(f"HubSpot: options to add to {name}: {', '.join(options)}")
    click.echo("HubSpot: every mapped property exists or can be created")
    problems = check_enrollment_targets(config, crm)
    for where, reason in problems.items():
        click.echo(f"enrollment: {where}: {reason}", err=True)
    if problems:
        raise ConfigError([ConfigProblem(f"{where}.enroll", reason) for where, reason in problems.items()])
    if any(True for _ in enrollment_targets(config)):
        click.echo("HubSpot: every workflow and sequence exists; lists exist or will be created")
    open_state_for_reading(config).close()
    click.echo("state: ok")
