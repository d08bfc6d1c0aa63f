"""The `funnelsync` command line."""

from __future__ import annotations

import functools
import os
import sys
import traceback
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import click

from funnelsync.cli.demo import run_demo, seed_enrollment_targets
from funnelsync.cli.memory import limit_heaps
from funnelsync.cli.plan_report import FORMATS
from funnelsync.cli.progress import ReadingProgress
from funnelsync.cli.report import rebuild_text, rejects_text, runs_text
from funnelsync.cli.runner import sync_once
from funnelsync.cli.runner import validate as run_validate
from funnelsync.config import Config, load_config
from funnelsync.daemon.logs import configure_logging
from funnelsync.daemon.scheduler import run_daemon
from funnelsync.errors import FunnelsyncError
from funnelsync.sandbox import Latency, SandboxServer
from funnelsync.state.models import OperationStatus
from funnelsync.state.store import utcnow
from funnelsync.sync.run import open_state_for_reading, rebuild_state

F = TypeVar("F", bound=Callable[..., Any])


def _config_path(value: str | None) -> str:
    return value or os.environ.get("FUNNELSYNC_CONFIG") or "config.toml"


def reports_errors(command: F) -> F:
    """User errors become one message and the documented exit status; no traceback unless --debug."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        try:
            return command(*args, **kwargs)
        except FunnelsyncError as exc:
            if ctx.obj.get("debug"):
                traceback.print_exc()
            click.echo(f"funnelsync: {exc}", err=True)
            sys.exit(exc.exit_status)

    return wrapper  # type: ignore[return-value]


@click.group()
@click.option("-c", "--config", "config_path", metavar="CONFIG",
              help="The config file (default: $FUNNELSYNC_CONFIG or ./config.toml).")
@click.option("--debug", is_flag=True, help="Debug logs, and tracebacks for errors.")
@click.option("--json-logs/--pretty-logs", default=None, help="Log format (default: JSON unless on a terminal).")
@click.version_option(package_name="funnelsync")
@click.pass_context
def main(ctx: click.Context, config_path: str | None, debug: bool, json_logs: bool | None) -> None:
    """Keeps HubSpot contacts in step with how developers use your API."""

    limit_heaps()
    configure_logging(debug=debug, json_logs=json_logs)
    ctx.ensure_object(dict)
    ctx.obj.update(config_path=_config_path(config_path), debug=debug)


def _config() -> Config:
    return load_config(click.get_current_context().obj["config_path"])


@main.command()
@click.option("--dry-run", is_flag=True, help="Print every change; write nothing to HubSpot or the state.")
@click.option("--format", "output", type=click.Choice(FORMATS), default=None,
              help="With --dry-run: as `plan --format`.")
@reports_errors
def sync(dry_run: bool, output: str | None) -> None:
    """One sync now, then exit (0 all written, 1 some records rejected)."""

    if output is not None and not dry_run:
        raise click.UsageError("--format is for a dry run: `sync --dry-run --format json`, or `plan --format json`")
    sys.exit(sync_once(_config(), dry_run=dry_run, output=output or "text"))


@main.command()
@click.option("--format", "output", type=click.Choice(FORMATS), default="text", show_default=True,
              help="text: a summary, then the first contacts' changes; json or csv: every change, on stdout.")
@reports_errors
def plan(output: str) -> None:
    """The same as `sync --dry-run`: every change, nothing written."""

    sys.exit(sync_once(_config(), dry_run=True, output=output))


@main.command()
@reports_errors
def run() -> None:
    """The daemon: sync on the configured schedule until SIGTERM/SIGINT."""

    run_daemon(_config())


@main.command()
@reports_errors
def validate() -> None:
    """Check the config, the source query, the token and scopes, and the properties."""

    run_validate(_config())


@main.command()
@reports_errors
def status() -> None:
    """Recent runs, the funnel by stage, rejected records."""

    state = open_state_for_reading(_config())

    click.echo(runs_text(state.recent_runs()))
    interrupted = state.interrupted_run()
    if interrupted is not None:
        left = ", ".join(f"{count} {kind}" for kind, count in sorted(interrupted.unfinished.items())) or "nothing"
        click.echo(f"run #{interrupted.run_id} (started {interrupted.started_at.isoformat(timespec='seconds')}) "
                   f"did not finish; operations left unfinished: {left}. The next run closes them: "
                   "property writes are planned again from the diff, nothing is sent twice.")
    stages = state.contacts_per_stage()
    click.echo(f"funnel ({state.contact_count()} contacts written):")
    for stage, count in stages.items():
        click.echo(f"  {stage}: {count}")
    now = utcnow()
    click.echo(
        f"stage changes: {state.stage_changes_since(now - timedelta(days=1))} in the last day, "
        f"{state.stage_changes_since(now - timedelta(days=7))} in the last week"
    )
    hello, working = state.timing_medians()
    if hello is not None or working is not None:
        click.echo(f"median time to first hello world: {_days(hello)}; to first working app: {_days(working)}")
    pending = {f"{kind} {status}": count for (kind, status), count in state.enrollment_counts().items()
               if status != OperationStatus.DONE}
    if pending:
        listed = ", ".join(f"{kind.replace('_', ' ')}: {count}" for kind, count in sorted(pending.items()))
        click.echo(f"enrollments pending: {listed}")
    click.echo(f"rejected records: {len(state.rejects())}, failed enrollments: {len(state.failed_enrollments())} "
               "(see `funnelsync rejects`)")


def _days(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} days"


@main.command()
@reports_errors
def rejects() -> None:
    """The records HubSpot refused, with the reason, and whether they are retried."""

    state = open_state_for_reading(_config())
    click.echo(rejects_text(state.rejects(), state.failed_enrollments()))


@main.group(name="state")
def state_group() -> None:
    """The local state: rebuild it from HubSpot when it was lost."""


@state_group.command()
@click.option("--dry-run", is_flag=True, help="Print what it would record; write nothing to the state.")
@reports_errors
def rebuild(dry_run: bool) -> None:
    """Read a lost state back from HubSpot (stages, entry dates, segments), so the next sync
    enrolls nobody twice. Fills only a new or empty state (exit 2 otherwise)."""
    with ReadingProgress() as progress:
        report = rebuild_state(_config(), dry_run=dry_run, progress=progress)
    click.echo(rebuild_text(report))


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8765, show_default=True, type=int)
@click.option("--token", envvar="FUNNELSYNC_SANDBOX_TOKEN", default="sandbox-token", show_default=True,
              help="The bearer token the sandbox accepts (or $FUNNELSYNC_SANDBOX_TOKEN).")
@click.option("--requests-per-10s", type=int, default=None, help="Enforce HubSpot's burst limit.")
@click.option("--latency", "latency_specs", multiple=True, metavar="DELAY",
              help="Answer late: `300ms`, `300ms±100ms` (or +-), `hubspot` (a few hundred ms, upserts more), "
                   "or one kind's, e.g. `upsert=1s` (kinds: upsert, read, search, properties, lists, workflows, "
                   "sequences, events, other). Repeatable, later ones win. Default: no delay.")
@click.option("--latency-seed", type=int, default=None, help="Seed of the delays' spread, to repeat a run's delays.")
@click.option("--with-config-targets/--without-config-targets", default=True,
              help="Create the workflows and sequences the config (-c) names, if it can be read.")
@reports_errors
def sandbox(host: str, port: int, token: str, requests_per_10s: int | None, latency_specs: tuple[str, ...],
            latency_seed: int | None, with_config_targets: bool) -> None:
    """A local HubSpot-compatible API server (for the demo and tests)."""

    try:
        latency = Latency.parse(latency_specs, seed=latency_seed)
    except ValueError as problem:
        raise click.BadParameter(str(problem), param_hint="--latency") from None
    server = SandboxServer(host=host, port=port, token=token, requests_per_10s=requests_per_10s, latency=latency)
    if with_config_targets and Path(click.get_current_context().obj["config_path"]).exists():
        seed_enrollment_targets(server, _config())
    click.echo(f"sandbox serving on http://{host}:{port} (contacts at /, JSON at /_sandbox/state); Ctrl-C stops it",
               err=True)
    if latency_specs:
        click.echo(f"answers delayed by {latency} (seed {latency_seed})", err=True)
    server.serve_forever()


@main.command()
@click.option("--dir", "workdir", default="demo", show_default=True, type=click.Path(file_okay=False),
              help="Where the demo puts its analytics database, config and state.")
@click.option("--developers", default=3000, show_default=True, type=click.IntRange(10, 1_000_000))
@click.option("--serve/--no-serve", default=False, help="Keep the sandbox running afterwards to look at it.")
@reports_errors
def demo(workdir: str, developers: int, serve: bool) -> None:
    """End to end with no HubSpot account: demo data, the sandbox, a sync, and a second sync."""

    run_demo(_config(), workdir, developers=developers, serve=serve)


if __name__ == "__main__":
    main()
