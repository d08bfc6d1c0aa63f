"""Carrying out journaled enrollments: lists kept in step, workflows and sequences once per entry.

Each enrollment is marked `started` in the state before the call and `done` after it. One left
`started` has an unknown outcome: a crash came between the call and its record, or the answer
was lost (a timeout, a reset, a 5xx). Before it is sent again, in the same run or the next, HubSpot
is asked whether the contact is already enrolled, so neither a crash nor a lost answer enrolls
anyone twice. List changes are idempotent and simply resent. A refused enrollment goes back to
`planned` with its reason and is tried again on the next run; contacts are written either way.
"""

from __future__ import annotations

import functools
import json
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import groupby

import structlog

from funnelsync import telemetry
from funnelsync.config import Config, Enroll
from funnelsync.connectors.crm import Enrollment
from funnelsync.errors import (
    BatchRejected,
    CredentialsError,
    DailyLimitReached,
    EnrollmentTargetError,
    FatalError,
    FunnelsyncError,
    OutcomeUnknown,
    StopRequested,
)
from funnelsync.state.models import Operation, OperationKind, OperationStatus
from funnelsync.state.records import CallCount
from funnelsync.state.store import StateStore
from funnelsync.sync.inflight import send_all
from funnelsync.sync.progress import CHANGING_LISTS, ENROLLING, PhaseClock, ProgressReport

log = structlog.get_logger("funnelsync.enroll")
LIST_KINDS = (OperationKind.LIST_ADD, OperationKind.LIST_REMOVE)
NOT_IN_HUBSPOT = "the contact is not in HubSpot yet (its write has not been confirmed)"
SENDS_PER_RUN = 3  # of one enrollment whose answers keep being lost, each settled before the next


@dataclass
class EnrollmentSummary:
    done: dict[OperationKind, int] = field(default_factory=dict)
    failed: int = 0
    already_enrolled: int = 0
    answers_lost: int = 0
    problems: dict[str, str] = field(default_factory=dict)  # target -> reason
    halted: str = ""  # why the rest was left for the next run (HubSpot not answering)

    def count(self, kind: OperationKind, number: int = 1) -> None:
        self.done[kind] = self.done.get(kind, 0) + number
        telemetry.enrollments(kind, "done", number)


def check_enrollment_targets(config: Config, crm: Enrollment) -> dict[str, str]:
    """Problems with the workflows, lists and sequences the config names: `where: reason`.
    Changes nothing: a missing list is only reported as to be created."""
    problems: dict[str, str] = {}
    for where, enroll in config.enrollments():
        try:
            if enroll.workflow_id is not None:
                crm.check_workflow(enroll.workflow_id)
            if enroll.sequence is not None:
                crm.check_sequence(str(enroll.sequence.id), str(enroll.sequence.user_id))
            if enroll.list is not None and crm.find_or_create_list(enroll.list, create=False) is None:
                log.info("list will be created on the first sync", list=enroll.list)
            if enroll.event is not None and not crm.check_event(enroll.event):
                log.info("custom event will be defined on the first sync", custom_event=enroll.event)
        except DailyLimitReached:
            raise
        except FunnelsyncError as error:
            problems[where] = str(error)
    return problems


NO_TRIGGER_READ = "HubSpot's API does not show a workflow's enrollment triggers"


def unchecked_targets(config: Config) -> list[str]:
    """What `validate` cannot check of the ways the config enrolls contacts, said plainly."""
    notes = []
    if config.funnel and any(stage.enroll is None for stage in config.funnel.stages):
        notes.append(f"that a workflow enrolls on {config.funnel.label!r} (the stages with no `enroll`): "
                     f"{NO_TRIGGER_READ}")
    for where, enroll in config.enrollments():
        if enroll.list is not None:
            notes.append(f"{where}: that a workflow enrolls on membership of the list {enroll.list!r}: "
                         f"{NO_TRIGGER_READ}")
        if enroll.event is not None:
            notes.append(f"{where}: that a workflow enrolls on the custom event {enroll.event!r}: {NO_TRIGGER_READ}; "
                         "custom events need an Enterprise hub: HubSpot says so when the event is first defined")
    return notes


def lists_to_change(state: StateStore, stage_targets: Mapping[str, Enroll | None], *, stages_move: bool) -> set[str]:
    """The lists this run will change: those with changes journaled and, when contacts move
    stage, every stage's list (each move may add to one and remove from another)."""
    names = {target for kind, target, _ in state.unfinished_by_target() if kind in LIST_KINDS}
    if stages_move:
        names |= {enroll.list for enroll in stage_targets.values() if enroll and enroll.list}
    return names


def event_uuid(key: str) -> str:
    """The uuid of the event occurrence an enrollment sends: the same for every retry of one entry."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"funnelsync:{key}"))


def _target_key(operation: Operation) -> str:
    kind = "list" if operation.kind in LIST_KINDS else operation.kind.removeprefix("enroll_")
    return f"{kind} {operation.target}"


def _list_calls(operations: list[Operation]) -> list[list[Operation]]:
    """One list's adds and removes as few calls' worth as keeps each contact's own changes in
    order: a contact's first change goes in the first round (its adds together, its removes
    together), its second in the next round, and so on; a round holds each contact once."""
    rounds: list[list[Operation]] = []
    seen: Counter[str] = Counter()
    for operation in operations:
        position = seen[str(operation.email)]
        seen[str(operation.email)] += 1
        if position == len(rounds):
            rounds.append([])
        rounds[position].append(operation)
    return [changes for each in rounds for kind in LIST_KINDS
            if (changes := [op for op in each if op.kind == kind])]


def _by_target(operations: list[Operation]) -> list[Operation]:
    """Each target's operations together, in the order planned: the changes to one list then go
    in a few calls however the journal interleaved them with other targets' (a contact's own
    changes to one list keep their order)."""
    return sorted(operations, key=_target_key)


class EnrollmentRunner:
    def __init__(self, crm: Enrollment, state: StateStore, stop: threading.Event,
                 calls: Callable[[], CallCount | None] = lambda: None, *,
                 width: Callable[[], int] = lambda: 1, progress: ProgressReport | None = None,
                 requests_per_second: float = 10.0) -> None:
        self.crm = crm
        self.state = state
        self.stop = stop
        self.calls = calls  # recorded with each mark: a killed run's calls still count
        self.width = width  # enrollments in flight at once
        self.progress = progress
        self.requests_per_second = requests_per_second
        self.summary = EnrollmentSummary()
        self._list_ids: dict[str, str] = {}
        self._list_errors: dict[str, FunnelsyncError] = {}  # a list that could not be found nor made, and why
        self._record_ids: dict[str, str] = {}
        # Enrollments go out from several threads; their marks and counts are made one at a time.
        self._lock = threading.RLock()

    def _mark(self, ids: Sequence[int], status: OperationStatus, error: str = "") -> None:
        with self._lock:
            self.state.mark_operations(ids, status, error, calls=self.calls())

    def run(self) -> EnrollmentSummary:
        operations = self.state.pending_enrollments()
        telemetry.enrollments_pending(op.kind for op in operations)
        if not operations:
            return self.summary
        self._record_ids = self.state.record_ids({op.email for op in operations if op.email})
        lists = self._clock(CHANGING_LISTS, [op for op in operations if op.kind in LIST_KINDS],
                            self.crm.contacts_per_list_change)
        enrolling = self._clock(ENROLLING, [op for op in operations if op.kind not in LIST_KINDS], 1)
        for key, group in groupby(_by_target(operations), key=_target_key):
            if self._stopping():
                break
            if key.startswith("list "):
                for changes in _list_calls(list(group)):
                    self._change_list(changes, lists)
                continue
            send_all(group, self._enroll, lambda answered: enrolling.advance(len(answered)), width=self.width,
                     stop=self.stop, key=lambda operation: str(operation.email))
        if self.summary.problems:
            log.warning("enrollment targets failing", **self.summary.problems)
        if self.summary.halted:
            log.warning("enrollments left for the next run: HubSpot is not answering", reason=self.summary.halted)
        return self.summary

    def _clock(self, phase: str, operations: list[Operation], per_request: int) -> PhaseClock:
        report = self.progress if operations else None
        return PhaseClock(phase, len(operations), report, per_request=per_request,
                          requests_per_second=self.requests_per_second)

    def _stopping(self) -> bool:
        return self.stop.is_set() or bool(self.summary.halted)

    def _fail(self, operations: list[Operation], reason: str) -> None:
        self._mark([op.id for op in operations if op.id is not None], OperationStatus.PLANNED, reason)
        with self._lock:
            self.summary.failed += len(operations)
        for operation in operations:
            telemetry.enrollments(operation.kind, "failed")

    def _change_list(self, operations: list[Operation], clock: PhaseClock) -> None:
        """One list's adds (or removes), in calls of as many contacts as HubSpot takes, several in flight."""
        key = _target_key(operations[0])
        if key in self.summary.problems:
            self._fail(operations, self.summary.problems[key])
            clock.advance(len(operations))
            return
        known = [op for op in operations if op.email in self._record_ids]
        unknown = [op for op in operations if op.email not in self._record_ids]
        if unknown:
            self._fail(unknown, NOT_IN_HUBSPOT)
            clock.advance(len(unknown))
        try:
            list_id = self._list_id(str(operations[0].target)) if known else ""
        except DailyLimitReached:
            raise
        except FunnelsyncError as error:
            self._failed_target(key, known, error)
            clock.advance(len(known))
            return
        size = self.crm.contacts_per_list_change
        chunks = [known[start : start + size] for start in range(0, len(known), size)]
        send_all(chunks, functools.partial(self._change_chunk, list_id, key),
                 lambda answered: clock.advance(sum(len(chunk) for chunk, _ in answered)),
                 width=self.width, stop=self.stop)

    def _change_chunk(self, list_id: str, key: str, chunk: list[Operation]) -> None:
        """One list-membership call, on a worker thread: marked before it is sent and after."""
        if key in self.summary.problems:
            self._fail(chunk, self.summary.problems[key])
            return
        ids = [op.id for op in chunk if op.id is not None]
        self._mark(ids, OperationStatus.STARTED)
        try:
            self.crm.change_list(list_id, [self._record_ids[str(op.email)] for op in chunk],
                                 add=chunk[0].kind == OperationKind.LIST_ADD)
        except DailyLimitReached:
            raise
        except FunnelsyncError as error:
            self._failed_target(key, chunk, error)
            return
        self._mark(ids, OperationStatus.DONE)
        with self._lock:
            self.summary.count(chunk[0].kind, len(chunk))

    def find_lists(self, names: Iterable[str]) -> None:
        """Find (or make) the lists this run will change, ahead of their changes: their look-ups
        then go alongside the set-up, not one by one before each list's first change. A list
        that cannot be had is told when its changes come (once, without another call)."""
        for name in sorted(set(names)):
            if self.stop.is_set():
                return
            try:
                self._list_id(name)
            except (DailyLimitReached, StopRequested):
                raise
            except FunnelsyncError:
                continue  # told with the list's changes

    def _list_id(self, name: str) -> str:
        if name in self._list_errors:
            raise self._list_errors[name]
        if name not in self._list_ids:
            try:
                found = self.crm.find_or_create_list(name)
            except (DailyLimitReached, StopRequested):  # the run's end, not the list's
                raise
            except FunnelsyncError as error:
                self._list_errors[name] = error
                raise
            assert found is not None
            self._list_ids[name] = found
        return self._list_ids[name]

    def _enroll(self, operation: Operation) -> None:
        """One enrollment, on a worker thread: settled, sent, and marked."""
        if self._stopping():
            return
        key = _target_key(operation)
        if key in self.summary.problems:
            self._fail([operation], self.summary.problems[key])
            return
        record_id = self._record_ids.get(str(operation.email))
        if operation.kind == OperationKind.ENROLL_SEQUENCE and record_id is None:
            self._fail([operation], NOT_IN_HUBSPOT)
            return
        unknown = operation.status == OperationStatus.STARTED  # a crash came between its call and its record
        try:
            for _ in range(SENDS_PER_RUN):
                if unknown and self._settled(operation, record_id):
                    return
                unknown = self._send(operation, record_id)
                if not unknown:
                    return
        except DailyLimitReached:
            raise
        except FunnelsyncError as error:
            if unknown:
                self._leave_unknown(operation, str(error))
            else:
                self._failed_target(key, [operation], error)
            return
        self._leave_unknown(operation, f"HubSpot's answer was lost {SENDS_PER_RUN} times in a row")

    def _send(self, operation: Operation, record_id: str | None) -> bool:
        """Send the enrollment once; True when its outcome is unknown (its answer was lost)."""
        assert operation.id is not None
        self._mark([operation.id], OperationStatus.STARTED)
        try:
            self._call(operation, record_id)
        except OutcomeUnknown as lost:
            log.warning("enrollment answer lost: checking HubSpot before sending it again",
                        email=operation.email, target=_target_key(operation), reason=str(lost))
            with self._lock:
                self.summary.answers_lost += 1
            return True
        except BatchRejected:
            # "already enrolled" is one of HubSpot's refusals: what the contact holds says which
            if operation.kind == OperationKind.ENROLL_SEQUENCE and self._settled(operation, record_id):
                return False
            raise
        self._mark([operation.id], OperationStatus.DONE)
        with self._lock:
            self.summary.count(operation.kind)
        return False

    def _settled(self, operation: Operation, record_id: str | None) -> bool:
        """Whether HubSpot shows the contact enrolled already; if so the operation is done.
        An event is never read back: HubSpot drops a repeat of its uuid, so it is simply resent."""
        if operation.kind == OperationKind.ENROLL_EVENT or not self._already_enrolled(operation, record_id):
            return False
        assert operation.id is not None
        self._mark([operation.id], OperationStatus.DONE, "found enrolled in HubSpot: not sent again")
        with self._lock:
            self.summary.already_enrolled += 1
        telemetry.enrollments(operation.kind, "already_enrolled")
        return True

    def _leave_unknown(self, operation: Operation, reason: str) -> None:
        """Its outcome stays unknown (`started`): the next run settles it before sending anything."""
        assert operation.id is not None
        self._mark([operation.id], OperationStatus.STARTED, f"outcome unknown: {reason}")
        with self._lock:
            self.summary.failed += 1
            self.summary.halted = self.summary.halted or reason
        telemetry.enrollments(operation.kind, "outcome_unknown")

    def _failed_target(self, key: str, operations: list[Operation], error: FunnelsyncError) -> None:
        """A refused target is skipped for the rest of the run; a refused contact (4xx) only
        fails itself; HubSpot not answering after its retries halts the phase."""
        with self._lock:
            if isinstance(error, EnrollmentTargetError | CredentialsError):
                self.summary.problems[key] = str(error)
            elif not isinstance(error, BatchRejected):
                self.summary.halted = str(error)
        self._fail(operations, str(error))

    def _already_enrolled(self, operation: Operation, record_id: str | None) -> bool:
        if record_id is None:
            raise FatalError("its HubSpot record id is not known, so its enrollments cannot be read")
        if operation.kind == OperationKind.ENROLL_WORKFLOW:
            return int(str(operation.target)) in self.crm.workflows_of(record_id)
        return self.crm.sequence_of(record_id) == str(operation.target)

    def _call(self, operation: Operation, record_id: str | None) -> None:
        if operation.kind == OperationKind.ENROLL_WORKFLOW:
            self.crm.enroll_in_workflow(int(str(operation.target)), str(operation.email))
            return
        payload = json.loads(operation.payload)
        if operation.kind == OperationKind.ENROLL_EVENT:
            self.crm.send_event(str(operation.target), str(operation.email), event_uuid(operation.key),
                                datetime.fromisoformat(payload["occurred_at"]))
            return
        assert record_id is not None
        self.crm.enroll_in_sequence(str(operation.target), record_id, payload["sender_email"], payload["user_id"])
