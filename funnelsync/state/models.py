"""The state database's tables. Times are aware and in UTC."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlmodel import AutoString, Field, SQLModel

APPLICATION = "funnelsync"


class RunOutcome(enum.StrEnum):
    RUNNING = "running"
    OK = "ok"
    REJECTS = "rejects"  # contacts rejected (exit 1)
    ENROLLMENTS_FAILED = "enrollments-failed"  # exit 1
    STOPPED = "stopped"  # on request, or planning stopped; the next run carries on
    FAILED = "failed"
    DAILY_LIMIT = "daily-limit"
    INTERRUPTED = "interrupted"  # never finished (killed): set by the next run


class OperationKind(enum.StrEnum):
    WRITE = "write"  # one batch of property writes
    LIST_ADD = "list_add"
    LIST_REMOVE = "list_remove"
    ENROLL_WORKFLOW = "enroll_workflow"
    ENROLL_SEQUENCE = "enroll_sequence"
    ENROLL_EVENT = "enroll_event"  # a custom event occurrence, its uuid derived from the key


class OperationStatus(enum.StrEnum):
    PLANNED = "planned"  # also a refused enrollment, with its reason: tried again next run
    STARTED = "started"  # sent, or about to be: an enrollment's outcome is unknown until done
    DONE = "done"
    SUPERSEDED = "superseded"  # a write left unfinished: the next run's diff plans it again


E = TypeVar("E", bound=enum.StrEnum)


class _Stored(sa.TypeDecorator[E]):
    """An enum column stored as its value's plain text (the strings the states always held),
    read back as the member."""

    impl = AutoString
    cache_ok = True

    def __init__(self, enum_type: type[E]) -> None:
        super().__init__()
        self.enum_type = enum_type

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> str | None:
        return None if value is None else str(self.enum_type(value))

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> E | None:
        return None if value is None else self.enum_type(value)


class Meta(SQLModel, table=True):
    __tablename__ = "funnelsync_meta"
    key: str = Field(primary_key=True)
    value: str


class Contact(SQLModel, table=True):
    """What HubSpot confirmed it holds for a contact, as last written by funnelsync."""

    __tablename__ = "contacts"
    email: str = Field(primary_key=True)
    record_id: str | None = None
    fingerprint: str  # of every property value below: the cheap way to see "unchanged"
    properties: str  # JSON object: property name -> value as written
    stage: str | None = None
    stage_entered_at: datetime | None = None
    below_since: datetime | None = None  # first run that measured the contact below its stage
    written_at: datetime
    hello_world_days: float | None = None  # signup to first API call
    working_app_days: float | None = None  # signup to production


class StageChange(SQLModel, table=True):
    __tablename__ = "stage_changes"
    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(index=True)
    from_stage: str | None = None
    to_stage: str
    changed_at: datetime = Field(index=True)
    run_id: int


class Reject(SQLModel, table=True):
    """A record that could not be written, with the reason; retried by the next run."""

    __tablename__ = "rejects"
    email: str = Field(primary_key=True)
    reason: str
    code: str
    will_retry: bool = True
    attempts: int = 1
    first_rejected_at: datetime
    last_rejected_at: datetime
    run_id: int


class Run(SQLModel, table=True):
    __tablename__ = "runs"
    id: int | None = Field(default=None, primary_key=True)
    started_at: datetime
    finished_at: datetime | None = None
    outcome: RunOutcome = Field(default=RunOutcome.RUNNING, sa_type=_Stored(RunOutcome))
    rows_read: int = 0
    rows_skipped: int = 0
    contacts_changed: int = 0
    contacts_written: int = 0
    contacts_rejected: int = 0
    api_calls: int = 0
    message: str = ""
    enrollments_made: int | None = None  # None: the run ended before it could count them


class StageCount(SQLModel, table=True):
    """Contacts per stage when a run finished: the funnel over time (the contacts table holds only now)."""

    __tablename__ = "stage_counts"
    run_id: int = Field(primary_key=True)
    stage: str = Field(primary_key=True)
    contacts: int
    counted_at: datetime = Field(index=True)


class Operation(SQLModel, table=True):
    """The journal: what a run plans to do in the CRM, recorded before it is done.

    `key` makes an operation idempotent across retries, reruns and crashes: the same
    operation is never planned twice. `status` moves planned -> started -> done; a refused
    enrollment goes back to planned with its reason; a property write left unfinished by a
    crashed run is `superseded` (the next run's diff plans it again), an enrollment is
    finished or checked against the CRM.
    """

    __tablename__ = "operations"
    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(index=True)
    kind: OperationKind = Field(sa_type=_Stored(OperationKind))
    key: str = Field(unique=True)
    email: str | None = None
    target: str | None = None
    payload: str = "{}"  # JSON
    status: OperationStatus = Field(default=OperationStatus.PLANNED, index=True, sa_type=_Stored(OperationStatus))
    attempts: int = 0
    last_error: str = ""
    created_at: datetime
    updated_at: datetime


class StageEntry(SQLModel, table=True):
    """When a contact first entered each stage: the funnel's timing properties come from here."""

    __tablename__ = "stage_entries"
    email: str = Field(primary_key=True)
    stage: str = Field(primary_key=True)
    first_entered_at: datetime


class SegmentMember(SQLModel, table=True):
    """A contact currently in a segment, since when (each entry is a new enrollment)."""

    __tablename__ = "segment_members"
    email: str = Field(primary_key=True)
    segment: str = Field(primary_key=True, index=True)
    entered_at: datetime
