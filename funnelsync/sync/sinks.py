"""Where a plan's writes go: the journal (a real run) or a preview (`plan`, writes nothing)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from funnelsync.config import Enroll
from funnelsync.state.records import PlannedWrite, SegmentChange
from funnelsync.state.store import StateStore
from funnelsync.sync.lost_state import LostState
from funnelsync.sync.outcomes import segment_change_operations


class JournalSink:
    """Journals planned writes in batches of the CRM's batch size as the plan finds them."""

    def __init__(self, state: StateStore, run_id: int, batch_size: int,
                 segment_enrollments: Mapping[str, Enroll | None], now: datetime) -> None:
        self.state = state
        self.run_id = run_id
        self.batch_size = batch_size
        self.segment_enrollments = segment_enrollments
        self.now = now
        self._pending: list[PlannedWrite] = []
        self._next_batch = 0

    def add_writes(self, writes: Sequence[PlannedWrite], held: Mapping[str, Mapping[str, str]]) -> None:
        self._pending += writes
        full = len(self._pending) - len(self._pending) % self.batch_size
        if full:
            self._flush(self._pending[:full])
            self._pending = self._pending[full:]

    def add_unsent(self, changes: dict[str, tuple[str, datetime | None]]) -> None:
        self.state.record_unsent(changes)

    def add_segment_changes(self, changes: Sequence[SegmentChange]) -> None:
        operations = segment_change_operations(changes, self.segment_enrollments, self.now)
        self.state.record_segment_changes(changes, operations, self.run_id, self.now)

    def drop_writes(self, emails: set[str]) -> list[PlannedWrite]:
        dropped = [w for w in self._pending if w.email in emails]
        self._pending = [w for w in self._pending if w.email not in emails]
        return dropped + self.state.drop_planned_writes(self.run_id, emails)

    def finish(self) -> None:
        self._flush(self._pending)
        self._pending = []

    def _flush(self, writes: list[PlannedWrite]) -> None:
        batches = [writes[i : i + self.batch_size] for i in range(0, len(writes), self.batch_size)]
        if batches:
            self._next_batch = self.state.journal_writes(self.run_id, batches, self._next_batch)


class PreviewSink:
    """Keeps every change for `plan` to show: each write with the values it replaces, and the
    segment changes. It grows with the changes, as `plan --format json` does."""

    def __init__(self) -> None:
        self.unsent = 0
        self.lost_state: LostState | None = None  # a real run would stop before writing
        self.segment_changes: list[SegmentChange] = []
        # email -> what the state says the contact holds of the properties its write changes;
        # none for a contact new to the state
        self.held: dict[str, dict[str, str]] = {}
        self._planned: dict[str, PlannedWrite] = {}

    @property
    def writes(self) -> list[PlannedWrite]:
        """In the order planned."""
        return list(self._planned.values())

    def add_writes(self, writes: Sequence[PlannedWrite], held: Mapping[str, Mapping[str, str]]) -> None:
        for write in writes:
            self._planned[write.email] = write
            if (values := held.get(write.email)) is not None:
                self.held[write.email] = {name: values.get(name, "") for name in write.properties}

    def add_unsent(self, changes: dict[str, tuple[str, datetime | None]]) -> None:
        self.unsent += len(changes)

    def add_segment_changes(self, changes: Sequence[SegmentChange]) -> None:
        self.segment_changes += changes

    def drop_writes(self, emails: set[str]) -> list[PlannedWrite]:
        for email in emails:
            self.held.pop(email, None)
        return [self._planned.pop(email) for email in emails & self._planned.keys()]

    def finish(self) -> None:
        pass
