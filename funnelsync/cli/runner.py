"""What `sync`, `plan` and `validate` print for a loaded config."""

from __future__ import annotations

import click
import structlog

from funnelsync.cli.plan_report import write_plan
from funnelsync.cli.progress import Progress
from funnelsync.cli.report import summary_text
from funnelsync.config import Config
from funnelsync.errors import StopRequested
from funnelsync.sync.preflight import preflight
from funnelsync.sync.run import run_sync
from funnelsync.sync.shutdown import Shutdown

log = structlog.get_logger("funnelsync.sync")
_LOG_EVERY_SECONDS = 10.0


def sync_once(config: Config, *, dry_run: bool, output: str = "text") -> int:
    """`output`: the plan's format (a dry run)."""
    shutdown = Shutdown(config.daemon.stop_grace_seconds)
    try:
        with shutdown.installed():
            summary = run_sync(config, dry_run=dry_run, shutdown=shutdown, progress=Progress())
    except StopRequested as exc:
        click.echo(f"funnelsync: {exc}; the next run carries on", err=True)
        return shutdown.exit_status
    if dry_run:
        write_plan(summary, config, output)
    else:
        click.echo(summary_text(summary))
    return shutdown.exit_status or summary.exit_status


def validate(config: Config) -> None:
    """Everything a sync checks before its first write; every problem at once (exit 2)."""
    click.echo("config: parsed")
    found = preflight(config)
    for warning in found.warnings:
        click.echo(f"warning: {warning}", err=True)
    if found.columns is not None:
        click.echo(f"source ({config.source.kind}): reachable, query runs, columns: {', '.join(found.columns)}")
        if found.columns_ok:
            click.echo("source: every column the config names is there; every segment rule compiles")
    if found.state_ok:
        click.echo("state: can be opened")
    if found.hubspot_ok:
        click.echo("HubSpot: token accepted, contacts and properties readable")
    if found.schema is not None:
        if found.schema.created:
            click.echo(f"HubSpot: properties to create on the first sync: {', '.join(found.schema.created)}")
        for name, options in found.schema.options_added.items():
            click.echo(f"HubSpot: options to add to {name}: {', '.join(options)}")
        click.echo("HubSpot: every mapped property exists or can be created")
    if found.targets_ok:
        click.echo("HubSpot: every workflow and sequence exists; lists and custom events exist or will be created")
    for note in found.unchecked:
        click.echo(f"not checked: {note}")
    found.raise_first()
    click.echo("validate: ok")
