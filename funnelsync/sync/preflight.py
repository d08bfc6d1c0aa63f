"""What `validate` checks: everything a sync checks before its first write, with every problem
found at once, so that a config `validate` passes is not refused by `sync` for a config reason.

Each check goes on after another failed (a wrong source query does not hide a wrong state URL);
only the checks that need what failed are left out (no property check without a token HubSpot
accepts, no column check without the source's columns).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from funnelsync.config import Config, read_alert_url
from funnelsync.connectors.crm import SchemaReport
from funnelsync.errors import ConfigError, ConfigProblem, FunnelsyncError, StateLost
from funnelsync.mappings.rules import columns_read
from funnelsync.mappings.schema import property_specs
from funnelsync.mappings.segments import compile_segments
from funnelsync.state.database import check_state
from funnelsync.sync.enrollments import check_enrollment_targets, unchecked_targets
from funnelsync.sync.factory import open_crm, open_source
from funnelsync.sync.lost_state import portal_holding_data
from funnelsync.sync.planner import check_columns


@dataclass
class Preflight:
    """What the checks found. `failures` are the errors that are not the config's (an
    unreachable source, a refused token), by the part of the config they concern."""

    problems: list[ConfigProblem] = field(default_factory=list)
    failures: list[tuple[str, FunnelsyncError]] = field(default_factory=list)
    warnings: list[ConfigProblem] = field(default_factory=list)
    columns: tuple[str, ...] | None = None
    columns_ok: bool = False  # every column the config names is there, every rule compiles
    state_ok: bool = False
    hubspot_ok: bool = False
    schema: SchemaReport | None = None
    targets_ok: bool = False  # every workflow and sequence exists (lists and events are created if missing)
    unchecked: list[str] = field(default_factory=list)  # what no call the token allows can show

    @contextmanager
    def step(self, key: str) -> Iterator[None]:
        try:
            yield
        except ConfigError as error:
            self.problems += error.problems
        except FunnelsyncError as error:
            self.failures.append((key, error))

    def raise_first(self) -> None:
        """One ConfigError holding every problem (and the failures beside them); with no config
        problem, the first failure, with its own exit status."""
        if self.problems:
            raise ConfigError([*self.problems, *(ConfigProblem(key, str(error)) for key, error in self.failures)])
        if self.failures:
            raise self.failures[0][1]


def column_problems(config: Config, columns: tuple[str, ...]) -> list[ConfigProblem]:
    """The columns the config names that the source does not return, as a sync finds them, and
    the segment rules' other mistakes (an unknown function...), also in a rule naming a missing
    column: a sync would find those once the column is there."""
    problems = []
    try:
        check_columns(config, columns, config.source.key)
    except ConfigError as error:
        problems += error.problems
    named = {*columns, *(column for segment in config.segments for column in columns_read(segment.when))}
    try:
        compile_segments(config, named)
    except ConfigError as error:
        problems += error.problems
    return problems


def preflight(config: Config) -> Preflight:
    """Read the source's columns and check the config against them, the state URL, the token,
    the property provisioning (dry run) and the enrollment targets. Writes nothing anywhere."""
    found = Preflight(warnings=config.warnings())
    with found.step("source"):
        source = open_source(config)
        try:
            found.columns = source.read_columns()
        finally:
            source.close()
    if found.columns is not None:
        mistakes = column_problems(config, found.columns)
        found.problems += mistakes
        found.columns_ok = not mistakes
    new_state: str | None = None
    with found.step("state.url"):
        new_state = check_state(config.state.url)
        found.state_ok = True
    with found.step("alerts.url_env"):  # only `run` sends alerts; a wrong URL is still the config's
        read_alert_url(config.alerts)
    with found.step("hubspot"):
        crm = open_crm(config)
        crm.properties.check_access()
        found.hubspot_ok = True
    if not found.hubspot_ok:
        return found
    with found.step("properties"):
        found.schema = crm.properties.ensure_properties(property_specs(config), dry_run=True)
    with found.step("enroll"):
        targets = check_enrollment_targets(config, crm.enrollment)
        found.problems += [ConfigProblem(f"{where}.enroll", reason) for where, reason in targets.items()]
        found.targets_ok = not targets and bool(config.enrollments())
        found.unchecked = unchecked_targets(config)
    if new_state is not None:
        with found.step("state"):  # a sync over a lost state stops before writing
            lost = portal_holding_data(config, crm.reading, new_state)
            if lost is not None:
                raise StateLost(lost.reason())
    return found
