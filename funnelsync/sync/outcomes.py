"""What a confirmed write or a segment change means for the journal: the enrollments it makes
and the list a contact leaves. Pure: decided from the config and the typed facts the planner
put on the write (its stage move), never from HubSpot's wire strings; the state only records.

Each operation's key names the contact, the target and the entry (a stage entry by the run
that moved the contact, a segment entry or exit by the run that saw it), so the same entry is
never journaled twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime

from funnelsync.config import Config, Enroll
from funnelsync.state.models import OperationKind
from funnelsync.state.records import Confirmed, PlannedOperation, SegmentChange


def stage_targets(config: Config) -> dict[str, Enroll | None]:
    return {stage.value: stage.enroll for stage in config.funnel.stages} if config.funnel else {}


def segment_targets(config: Config) -> dict[str, Enroll | None]:
    return {segment.name: segment.enroll for segment in config.segments}


def entry_operations(email: str, entry: str, at: datetime, reason: str, entering: Enroll | None,
                     leaving: Enroll | None) -> Iterator[PlannedOperation]:
    """The enrollments entering a stage or segment makes, and the removal from the list left."""
    planned: list[tuple[OperationKind, str, dict[str, str]]] = []
    if entering is not None:
        if entering.event is not None:
            planned.append((OperationKind.ENROLL_EVENT, entering.event, {"occurred_at": at.isoformat()}))
        if entering.workflow_id is not None:
            planned.append((OperationKind.ENROLL_WORKFLOW, str(entering.workflow_id), {}))
        if entering.list is not None:
            planned.append((OperationKind.LIST_ADD, entering.list, {}))
        if entering.sequence is not None:
            sequence = entering.sequence
            planned.append((OperationKind.ENROLL_SEQUENCE, str(sequence.id),
                            {"sender_email": sequence.sender_email, "user_id": str(sequence.user_id)}))
    if leaving is not None and leaving.list is not None and leaving.list != (entering.list if entering else None):
        planned.append((OperationKind.LIST_REMOVE, leaving.list, {}))
    for kind, target, extra in planned:
        yield PlannedOperation(kind, f"{kind}:{target}:{email}:{entry}", email, target, {"for": reason, **extra})


def stage_entry_operations(confirmed: Iterable[Confirmed],
                           targets: Mapping[str, Enroll | None]) -> list[PlannedOperation]:
    """What the stage moves of a batch HubSpot confirmed make."""
    operations: list[PlannedOperation] = []
    for result in confirmed:
        write, move = result.write, result.write.stage_move
        if move is None:
            continue
        operations += entry_operations(write.email, f"stage-entry:{move.to_stage}:{move.at.isoformat()}", move.at,
                                       f"stage {move.to_stage}", targets.get(move.to_stage),
                                       targets.get(write.previous_stage or ""))
    return operations


def segment_change_operations(changes: Sequence[SegmentChange], targets: Mapping[str, Enroll | None],
                              now: datetime) -> list[PlannedOperation]:
    operations: list[PlannedOperation] = []
    for change in changes:
        target = targets.get(change.segment)
        if change.entered:
            operations += entry_operations(change.email, f"segment:{change.segment}:{now.isoformat()}", now,
                                           f"segment {change.segment}", target, None)
        else:
            operations += entry_operations(change.email, f"segment-exit:{change.segment}:{now.isoformat()}", now,
                                           f"segment {change.segment}", None, target)
    return operations
