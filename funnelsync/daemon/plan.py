"""Planning a sync: source rows -> desired contacts -> the diff against what was last written."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from funnelsync.config import Config
from funnelsync.connectors.crm import ContactWrite
from funnelsync.connectors.source import Row
from funnelsync.errors import ConfigError, ConfigProblem
from funnelsync.mappings.contacts import DesiredContact, RejectedRow, map_row, normalize_email
from funnelsync.mappings.funnel import decide_stage
from funnelsync.state.store import KnownContact, Refused, StateStore, fingerprint

SKIPPED_NO_EMAIL = "no email"
SKIPPED_INVALID_EMAIL = "invalid email"


@dataclass(frozen=True)
class Target:
    """What a contact's state becomes once its write is confirmed."""

    fingerprint: str
    below_since: datetime | None


@dataclass
class Plan:
    writes: list[ContactWrite] = field(default_factory=list)
    targets: dict[str, Target] = field(default_factory=dict)
    refused: list[Refused] = field(default_factory=list)
    unsent: dict[str, tuple[str, datetime | None]] = field(default_factory=dict)
    stage_moves: list[tuple[str, str | None, str]] = field(default_factory=list)
    rows_read: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    unchanged: int = 0
    contacts: int = 0

    @property
    def rows_skipped(self) -> int:
        return sum(self.skipped.values())


def check_columns(config: Config, columns: Iterable[str], key: str) -> None:
    available = set(columns)
    problems = [
        ConfigProblem(toml_key, f"the source has no column {column!r} (it has: {', '.join(sorted(available))})")
        for column, toml_key in config.columns_used().items()
        if column not in available
    ]
    if key not in available:
        problems.append(ConfigProblem("source.key", f"the source has no column {key!r}"))
    if problems:
        raise ConfigError(problems)


class Planner:
    def __init__(self, config: Config, state: StateStore, now: datetime) -> None:
        self.config = config
        self.state = state
        self.now = now

    def plan(self, rows: Iterable[Row], key: str) -> Plan:
        plan = Plan()
        known = self.state.known_contacts()
        desired: dict[str, tuple[DesiredContact, dict[str, str], Target]] = {}
        seen: Counter[str] = Counter()
        for row in rows:
            plan.rows_read += 1
            raw = row.get(key)
            email = normalize_email(raw)
            if email is None:
                self._skip(plan, raw)
                continue
            seen[email] += 1
            if seen[email] > 1:
                continue
            mapped = map_row(row, email, self.config)
            if isinstance(mapped, RejectedRow):
                plan.refused.append(Refused(email, mapped.reason, mapped.code))
                continue
            full, target = self._full_properties(mapped, known.get(email))
            if known.get(email) and known[email].fingerprint == target.fingerprint:
                plan.unchanged += 1
                if known[email].below_since != target.below_since:
                    plan.unsent[email] = (target.fingerprint, target.below_since)
                continue
            desired[email] = (mapped, full, target)
        self._refuse_duplicates(plan, seen, desired)
        plan.contacts = len(seen)
        self._diff(plan, desired, known)
        return plan

    @staticmethod
    def _skip(plan: Plan, raw: object) -> None:
        """A row HubSpot could not key. A malformed email is also listed with the rejects, so
        the admin sees which row to fix; a row with no email at all can only be counted."""
        text = raw.strip().lower() if isinstance(raw, str) else ""
        if not text:
            plan.skipped[SKIPPED_NO_EMAIL] += 1
            return
        plan.skipped[SKIPPED_INVALID_EMAIL] += 1
        plan.refused.append(Refused(text[:254], f"{text[:254]!r} is not a valid email address; "
                                    "HubSpot would refuse it", "INVALID_EMAIL"))

    def _full_properties(
        self, contact: DesiredContact, known: KnownContact | None
    ) -> tuple[dict[str, str], Target]:
        full = dict(contact.properties)
        below_since = None
        funnel = self.config.funnel
        if funnel and contact.stage is not None:
            decision = decide_stage(funnel, contact.stage, known.stage if known else None,
                                    known.below_since if known else None, self.now)
            full[funnel.property] = decision.stage
            below_since = decision.below_since
        return full, Target(fingerprint(full), below_since)

    @staticmethod
    def _refuse_duplicates(plan: Plan, seen: Counter[str], desired: dict[str, object]) -> None:
        for email, count in seen.items():
            if count > 1:
                desired.pop(email, None)
                plan.refused = [r for r in plan.refused if r.email != email]
                plan.refused.append(
                    Refused(email, f"the source has {count} rows for this email; keep one row per "
                            "contact (check the query's joins)", "DUPLICATE_IN_SOURCE")
                )

    def _diff(self, plan: Plan, desired: dict[str, tuple[DesiredContact, dict[str, str], Target]],
              known: dict[str, KnownContact]) -> None:
        written = self.state.written_properties(email for email in desired if email in known)
        stage_property = self.config.funnel.property if self.config.funnel else None
        for email, (_, full, target) in desired.items():
            held = written.get(email, {})
            delta = {name: value for name, value in full.items() if held.get(name, "") != value}
            if not delta:
                plan.unsent[email] = (target.fingerprint, target.below_since)
                continue
            plan.writes.append(ContactWrite(email, delta))
            plan.targets[email] = target
            if stage_property and stage_property in delta:
                plan.stage_moves.append((email, held.get(stage_property), delta[stage_property]))
