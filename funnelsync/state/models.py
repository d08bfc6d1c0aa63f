"""The state database's tables. Times are aware and in UTC."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

SCHEMA_VERSION = "1"
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
