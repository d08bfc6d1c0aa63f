"""`funnelsync state rebuild`: a lost state read back from HubSpot, so that the next sync
enrolls nobody twice and keeps every contact's original stage entry dates.

For the source's contacts it records what HubSpot holds: record ids and funnelsync's property
values (the next sync sends only what differs), the stage and when each stage was first entered
(the `*_entered_at` properties), and each segment's members (its yes/no property, its list).
funnelsync writes a stage before the enrollments the stage makes, so a stage HubSpot holds
counts as entered and enrolled: a workflow the contact has finished no longer lists it, so its
enrollments cannot tell "never enrolled" from "done". Enrollments are read only for a segment
that leaves no other trace, and only for the contacts the source now puts in it, which the next
sync would otherwise enroll. Everything is recorded in one transaction: a rebuild stopped
midway leaves the state as it was.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import structlog

from funnelsync.config import Config, Segment
from funnelsync.connectors.crm import Crm, HeldContact
from funnelsync.connectors.source import Source
from funnelsync.errors import RebuildRefused
from funnelsync.mappings.contacts import ContactMapper, DesiredContact, normalize_email
from funnelsync.mappings.funnel import HELLO_WORLD_PROPERTY, WORKING_APP_PROPERTY, entry_property
from funnelsync.mappings.read_back import as_written, held_moment
from funnelsync.mappings.schema import property_specs
from funnelsync.mappings.values import CLEARED
from funnelsync.state.records import RebuiltContact
from funnelsync.state.store import StateStore
from funnelsync.sync.planner import check_columns

log = structlog.get_logger("funnelsync.rebuild")
READ_BATCH = 100  # HubSpot's most inputs a batch read takes

ProgressCallback = Callable[[int, int], None]


@dataclass
class RebuildReport:
    dry_run: bool
    where: str  # the state's location
    source_contacts: int = 0
    in_hubspot: int = 0
    contacts: list[RebuiltContact] = field(default_factory=list)
    enrollment_lookups: int = 0
    seconds: float = 0.0

    @property
    def stages(self) -> Counter[str]:
        return Counter(contact.stage for contact in self.contacts if contact.stage)

    @property
    def stage_entries(self) -> int:
        return sum(len(contact.entries) for contact in self.contacts)

    @property
    def segment_members(self) -> Counter[str]:
        return Counter(segment for contact in self.contacts for segment in contact.segments)


def _leaves_no_trace(segment: Segment) -> bool:
    """A segment whose members HubSpot shows only through a workflow or sequence enrollment."""
    enroll = segment.enroll
    return (enroll is not None and not segment.property and enroll.list is None
            and (enroll.workflow_id is not None or enroll.sequence is not None))


def _days(values: dict[str, str], name: str) -> float | None:
    try:
        return float(values[name]) if name in values else None
    except ValueError:
        return None


class StateRebuilder:
    def __init__(self, config: Config, source: Source, crm: Crm, state: StateStore, *,
                 now: datetime | None = None, progress: ProgressCallback | None = None) -> None:
        self.config = config
        self.source = source
        self.reading = crm.reading
        self.enrollment = crm.enrollment  # read only: lists, and the enrollments of a traceless segment
        self.state = state
        self.now = now or datetime.now(UTC)
        self.progress = progress
        self._types = {spec.name: spec.type for spec in property_specs(config)}
        self._traceless = [segment for segment in config.segments if _leaves_no_trace(segment)]
        self._workflows: dict[str, set[int]] = {}
        self._sequences: dict[str, str | None] = {}

    def rebuild(self, *, dry_run: bool) -> RebuildReport:
        if dry_run:
            return self._rebuild(dry_run=True)
        with self.state.exclusive():
            return self._rebuild(dry_run=False)

    def _rebuild(self, *, dry_run: bool) -> RebuildReport:
        started = time.monotonic()
        self._refuse_unless_empty()
        report = RebuildReport(dry_run, self.state.where())
        in_source = self._source_contacts()
        held = self._read_contacts(list(in_source))
        lists = self._segment_lists()
        rebuilt = [self._rebuilt(contact, lists) for contact in held]
        report.contacts = [self._with_segments_seen_in_enrollments(c, in_source.get(c.email)) for c in rebuilt]
        report.source_contacts, report.in_hubspot = len(in_source), len(held)
        report.enrollment_lookups = len(self._workflows) + len(self._sequences)
        if not dry_run:
            self.state.record_rebuilt_state(report.contacts, self.now)
            log.info("state rebuilt", where=report.where, contacts=len(report.contacts),
                     stage_entries=report.stage_entries, segment_members=sum(report.segment_members.values()))
        report.seconds = time.monotonic() - started
        return report

    def _refuse_unless_empty(self) -> None:
        if self.state.holds_nothing():
            return
        raise RebuildRefused(
            f"the state at {self.state.where()} already holds contacts (or was rebuilt already): "
            "`state rebuild` only fills a new or empty state, so that what HubSpot holds never mixes "
            "with what the state recorded. To rebuild anyway, move this state aside (or point "
            "state.url at a new file or an empty database) and run it again")

    def _source_contacts(self) -> dict[str, frozenset[str] | None]:
        """Each source contact's email -> the segments its row puts it in now (None: not looked at)."""
        rows = self.source.read()
        check_columns(self.config, rows.columns, self.source.key)
        mapper = ContactMapper(self.config, rows.columns, self.now) if self._traceless else None
        found: dict[str, frozenset[str] | None] = {}
        for row in rows.rows:
            email = normalize_email(row.get(self.source.key))
            if email is None or email in found:
                continue
            mapped = mapper.map(row, email) if mapper else None
            found[email] = mapped.segments if isinstance(mapped, DesiredContact) else None
        return found

    def _read_contacts(self, emails: Sequence[str]) -> list[HeldContact]:
        names = list(self._types)
        held: list[HeldContact] = []
        for start in range(0, len(emails), READ_BATCH):
            held += self.reading.read_contacts(emails[start : start + READ_BATCH], names)
            if self.progress:
                self.progress(min(start + READ_BATCH, len(emails)), len(emails))
        return held

    def _segment_lists(self) -> dict[str, set[str]]:
        """Segment -> the record ids on its list."""
        members: dict[str, set[str]] = {}
        by_list: dict[str, set[str]] = {}
        for segment in self.config.segments:
            name = segment.enroll.list if segment.enroll else None
            if name is None:
                continue
            if name not in by_list:
                list_id = self.enrollment.find_or_create_list(name, create=False)
                by_list[name] = self.reading.list_members(list_id) if list_id else set()
            members[segment.name] = by_list[name]
        return members

    def _rebuilt(self, held: HeldContact, lists: dict[str, set[str]]) -> RebuiltContact:
        values = {name: as_written(held.properties.get(name), kind) for name, kind in self._types.items()}
        values = {name: value for name, value in values.items() if value != CLEARED}
        stage, entries = self._stage(values)
        segments = frozenset(
            segment.name for segment in self.config.segments
            if (segment.property and values.get(segment.property) == "true")
            or held.record_id in lists.get(segment.name, ())
        )
        return RebuiltContact(held.email, held.record_id, values, stage, entries, segments,
                              _days(values, HELLO_WORLD_PROPERTY), _days(values, WORKING_APP_PROPERTY))

    def _stage(self, values: dict[str, str]) -> tuple[str | None, dict[str, datetime]]:
        funnel = self.config.funnel
        if funnel is None:
            return None, {}
        stage = values.get(funnel.property)
        entries: dict[str, datetime] = {}
        for value in dict.fromkeys([*(s.value for s in funnel.stages), *([stage] if stage else [])]):
            entered_at = held_moment(values.get(entry_property(funnel, value)))
            if entered_at is not None:
                entries[value] = entered_at
        if stage is not None and stage not in entries:
            # HubSpot lost when: from now, as a sync would have said; without an entry the next
            # syncs would each write their own time into the stage's `*_entered_at`.
            entries[stage] = self.now
        return stage, entries

    def _with_segments_seen_in_enrollments(self, contact: RebuiltContact,
                                           now_in: frozenset[str] | None) -> RebuiltContact:
        if contact.record_id is None:
            return contact
        entering = [segment for segment in self._traceless if segment.name not in contact.segments
                    and (now_in is None or segment.name in now_in)]
        seen = {segment.name for segment in entering if self._enrolled_for(segment, contact.record_id)}
        return replace(contact, segments=contact.segments | seen) if seen else contact

    def _enrolled_for(self, segment: Segment, record_id: str) -> bool:
        enroll = segment.enroll
        assert enroll is not None
        if enroll.workflow_id is not None:
            if record_id not in self._workflows:
                self._workflows[record_id] = self.enrollment.workflows_of(record_id)
            if enroll.workflow_id in self._workflows[record_id]:
                return True
        if enroll.sequence is not None:
            if record_id not in self._sequences:
                self._sequences[record_id] = self.enrollment.sequence_of(record_id)
            return self._sequences[record_id] == str(enroll.sequence.id)
        return False
