"""The state database's tables. Times are aware and in UTC."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

APPLICATION = "funnelsync"


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
    outcome: str = "running"  # running | ok | rejects | failed
    rows_read: int = 0
    rows_skipped: int = 0
    contacts_changed: int = 0
    contacts_written: int = 0
    contacts_rejected: int = 0
    api_calls: int = 0
    message: str = ""


class Operation(SQLModel, table=True):
    """The journal: what a run plans to do in the CRM, recorded before it is done.

    `key` makes an operation idempotent across retries, reruns and crashes: the same
    operation is never planned twice. `status` moves planned -> started -> done (or failed);
    a property write left unfinished by a crashed run is `superseded` (the next run's diff
    plans it again), an enrollment is finished or checked against the CRM.
    """

    __tablename__ = "operations"
    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(index=True)
    kind: str  # write | list_add | list_remove | enroll_workflow | enroll_sequence
    key: str = Field(unique=True)
    email: str | None = None
    target: str | None = None
    payload: str = "{}"  # JSON
    status: str = Field(default="planned", index=True)
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
