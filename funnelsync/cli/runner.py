"""What `sync`, `plan` and `validate` print for a loaded config."""

from __future__ import annotations

import click
import structlog

from funnelsync.cli.progress import Progress
from funnelsync.cli.report import plan_text, summary_text
from funnelsync.config import Config
from funnelsync.errors import ConfigError, ConfigProblem, StopRequested
from funnelsync.mappings.schema import property_specs
from funnelsync.sync.enrollments import check_enrollment_targets, enrollment_targets
from funnelsync.sync.factory import open_crm, open_source
from funnelsync.sync.run import open_state_for_reading, run_sync
from funnelsync.sync.shutdown import Shutdown

log = structlog.get_logger("funnelsync.sync")
_LOG_EVERY_SECONDS = 10.0


def sync_once(config: Config, *, dry_run: bool) -> int:
    shutdown = Shutdown(config.daemon.stop_grace_seconds).install()
    try:
        summary = run_sync(config, dry_run=dry_run, shutdown=shutdown, progress=Progress())
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
