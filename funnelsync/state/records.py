"""What the state stores and gives back, as typed records: the planner's writes and journal
operations, HubSpot's confirmations and refusals, what the state knows of a contact, runs
interrupted, stages counted, contacts rebuilt from the CRM, alerts told."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from funnelsync.state.models import OperationKind


@dataclass(frozen=True)
class KnownContact:
    fingerprint: str
    stage: str | None
    below_since: datetime | None
    entries: Mapping[str, datetime] = field(default_factory=dict)  # stage -> first entered
    segments: frozenset[str] = frozenset()


NOT_KNOWN = KnownContact("", None, None)


@dataclass(frozen=True)
class CallCount:
    """The HubSpot calls a run has made so far, recorded with each piece of its work: a killed
    run's calls still count toward the day's budget."""

    run_id: int
    calls: int


@dataclass(frozen=True)
class StageMove:
    """A contact's move into a stage, as the planner decided it."""

    to_stage: str
    at: datetime  # the planning run's time: when the contact is recorded entering it


@dataclass(frozen=True)
class PlannedOperation:
    """An enrollment or list change to journal, keyed so that it is never planned twice."""

    kind: OperationKind
    key: str
    email: str
    target: str
    payload: Mapping[str, str]


@dataclass(frozen=True)
class SegmentChange:
    email: str
    segment: str
    entered: bool  # False: left


@dataclass(frozen=True)
class PlannedWrite:
    """One contact's part of a journaled write: what to send, and what the state becomes."""

    email: str
    properties: dict[str, str]
    fingerprint: str  # of every value the contact should hold once this is confirmed
    below_since: datetime | None = None
    previous_stage: str | None = None
    stage_move: StageMove | None = None
    hello_world_days: float | None = None  # the funnel's timing, when the write carries it
    working_app_days: float | None = None

    def as_json(self) -> dict[str, object]:
        move = self.stage_move
        return {"email": self.email, "properties": self.properties, "fingerprint": self.fingerprint,
                "below_since": _iso(self.below_since), "previous_stage": self.previous_stage,
                "stage_move": {"to_stage": move.to_stage, "at": move.at.isoformat()} if move else None,
                "hello_world_days": self.hello_world_days, "working_app_days": self.working_app_days}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PlannedWrite:
        move = data.get("stage_move")
        return cls(str(data["email"]), dict(data["properties"]), str(data["fingerprint"]),
                   _moment(data.get("below_since")), data.get("previous_stage") or None,
                   StageMove(str(move["to_stage"]), datetime.fromisoformat(move["at"])) if move else None,
                   data.get("hello_world_days"), data.get("working_app_days"))


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _moment(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


@dataclass(frozen=True)
class Confirmed:
    """A contact write HubSpot confirmed."""

    write: PlannedWrite
    record_id: str | None


@dataclass(frozen=True)
class Refused:
    email: str
    reason: str
    code: str
    will_retry: bool = True


@dataclass(frozen=True)
class WriteBatch:
    operation_id: int
    writes: list[PlannedWrite]


class CountedStage(NamedTuple):
    """Contacts in a stage as a run left them."""

    run_id: int
    at: datetime
    stage: str
    contacts: int


@dataclass(frozen=True)
class Interrupted:
    run_id: int
    started_at: datetime
    unfinished: dict[OperationKind, int]  # count left planned or started


@dataclass(frozen=True)
class RebuiltContact:
    """A contact as a rebuild read it back from the CRM."""

    email: str
    record_id: str | None
    properties: dict[str, str]  # funnelsync's properties that hold a value, as funnelsync writes them
    stage: str | None = None
    entries: Mapping[str, datetime] = field(default_factory=dict)  # stage -> first entered
    segments: frozenset[str] = frozenset()
    hello_world_days: float | None = None
    working_app_days: float | None = None


@dataclass(frozen=True)
class ToldAlert:
    """An alert the daemon told, kept in the state so that a restarted daemon, or a standby
    taking over, does not tell it again. For a streak of failed runs: since the start of its
    first run, and how many so far."""

    event: str
    told_at: datetime
    since: datetime | None = None
    runs: int = 0
