"""`funnelsync demo`: the default config end to end, with no HubSpot account.

It builds the demo analytics database, starts the sandbox, and syncs twice with the config
(`-c`, default ./config.toml): the first sync writes every contact, the second writes none.
The demo keeps its own state and data in its folder, so it never touches a real state.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

import click

from funnelsync.cli.report import summary_text
from funnelsync.config import Config
from funnelsync.connectors.sql_settings import SqlSource
from funnelsync.errors import ConfigError, ConfigProblem
from funnelsync.sandbox import SandboxServer
from funnelsync.sandbox.demo_data import build_demo_database
from funnelsync.sync.run import run_sync

DEMO_RATE = 5000


def demo_config(config: Config, folder: Path, sandbox_url: str) -> Config:
    if not isinstance(config.source, SqlSource):
        raise ConfigError([ConfigProblem("source.kind", "the demo needs the SQL source of the default config")])
    return config.model_copy(
        update={
            "source": config.source.model_copy(update={"url": f"sqlite:///{folder / 'analytics.db'}"}),
            "state": config.state.model_copy(update={"url": f"sqlite:///{folder / 'state.db'}"}),
            # The sandbox has no rate limit; a real portal's limit would pace the per-contact
            # enrollment calls at `requests_per_10s`.
            "hubspot": config.hubspot.model_copy(update={"base_url": sandbox_url, "requests_per_10s": DEMO_RATE}),
        }
    )


def run_demo(config: Config, workdir: str, *, developers: int, serve: bool) -> None:
    folder = Path(workdir).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    for leftover in folder.glob("state.db*"):
        leftover.unlink()
    started = time.monotonic()
    build_demo_database(folder / "analytics.db", developers=developers)
    click.echo(f"demo analytics database: {folder / 'analytics.db'} ({developers} developers, "
               f"built in {time.monotonic() - started:.1f} s)")
    token = secrets.token_urlsafe(24)
    os.environ[config.hubspot.token_env] = token
    with SandboxServer(token=token) as sandbox:
        seed_enrollment_targets(sandbox, config)
        click.echo(f"sandbox: {sandbox.url} (contacts on its page at /); requests are not paced here, "
                   f"a real portal is called at most {config.hubspot.requests_per_10s} times a 10 s")
        config = demo_config(config, folder, sandbox.url)
        first = run_sync(config, dry_run=False)
        click.echo(summary_text(first, title="first sync"))
        click.echo("contacts per stage in the sandbox:")
        stages = _stages_in_sandbox(sandbox, config)
        for stage in (config.funnel.stages if config.funnel else []):
            click.echo(f"  {stage.value} ({stage.label}): {stages.get(stage.value, 0)}")
        click.echo("in HubSpot's lists: " + ", ".join(
            f"{name} {len(found['members'])}" for name, found in sorted(sandbox.store.lists().items())))
        click.echo(f"workflow enrollments: {len(sandbox.store.workflow_enrollments())}, "
                   f"sequence enrollments: {len(sandbox.store.sequence_enrollments())}")
        second = run_sync(config, dry_run=False)
        click.echo(summary_text(second, title="second sync (nothing changed)"))
        click.echo(f"workflow enrollments: {len(sandbox.store.workflow_enrollments())}, "
                   f"sequence enrollments: {len(sandbox.store.sequence_enrollments())} (none repeated)")
        if serve:
            click.echo(f"the sandbox keeps serving on {sandbox.url}; Ctrl-C stops it")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass


def seed_enrollment_targets(sandbox: SandboxServer, config: Config) -> None:
    """The demo portal has the workflows and sequences the config names."""
    for _, enroll in config.enrollments():
        if enroll.workflow_id is not None:
            sandbox.add_workflow(enroll.workflow_id, f"Demo workflow {enroll.workflow_id}")
        if enroll.sequence is not None:
            sandbox.add_sequence(str(enroll.sequence.id), str(enroll.sequence.user_id),
                                 f"Demo sequence {enroll.sequence.id}")


def _stages_in_sandbox(sandbox: SandboxServer, config: Config) -> dict[str, int]:
    if not config.funnel:
        return {}
    counts: dict[str, int] = {}
    for contact in sandbox.store.contacts_by_email().values():
        stage = contact["properties"].get(config.funnel.property)
        if stage:
            counts[stage] = counts.get(stage, 0) + 1
    return counts
