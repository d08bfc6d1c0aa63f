"""The first state schema: contacts, stage changes, rejects, runs, the journal.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlmodel.sql import sqltypes

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

UTC_DATETIME = sqltypes.UTCDateTime
TEXT = sqltypes.AutoString


def upgrade() -> None:
    op.create_table(
        "funnelsync_meta",
        sa.Column("key", TEXT(), primary_key=True),
        sa.Column("value", TEXT(), nullable=False),
    )
    op.bulk_insert(
        sa.table("funnelsync_meta", sa.column("key", sa.String), sa.column("value", sa.String)),
        [{"key": "application", "value": "funnelsync"}],
    )
    op.create_table(
        "contacts",
        sa.Column("email", TEXT(), primary_key=True),
        sa.Column("record_id", TEXT(), nullable=True),
        sa.Column("fingerprint", TEXT(), nullable=False),
        sa.Column("properties", TEXT(), nullable=False),
        sa.Column("stage", TEXT(), nullable=True),
        sa.Column("stage_entered_at", UTC_DATETIME(), nullable=True),
        sa.Column("below_since", UTC_DATETIME(), nullable=True),
        sa.Column("written_at", UTC_DATETIME(), nullable=False),
    )
    op.create_table(
        "stage_changes",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("email", TEXT(), nullable=False, index=True),
        sa.Column("from_stage", TEXT(), nullable=True),
        sa.Column("to_stage", TEXT(), nullable=False),
        sa.Column("changed_at", UTC_DATETIME(), nullable=False, index=True),
        sa.Column("run_id", sa.Integer(), nullable=False),
    )
    op.create_table(
        "rejects",
        sa.Column("email", TEXT(), primary_key=True),
        sa.Column("reason", TEXT(), nullable=False),
        sa.Column("code", TEXT(), nullable=False),
        sa.Column("will_retry", sa.Boolean(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("first_rejected_at", UTC_DATETIME(), nullable=False),
        sa.Column("last_rejected_at", UTC_DATETIME(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("started_at", UTC_DATETIME(), nullable=False),
        sa.Column("finished_at", UTC_DATETIME(), nullable=True),
        sa.Column("outcome", TEXT(), nullable=False),
        sa.Column("rows_read", sa.Integer(), nullable=False),
        sa.Column("rows_skipped", sa.Integer(), nullable=False),
        sa.Column("contacts_changed", sa.Integer(), nullable=False),
        sa.Column("contacts_written", sa.Integer(), nullable=False),
        sa.Column("contacts_rejected", sa.Integer(), nullable=False),
        sa.Column("api_calls", sa.Integer(), nullable=False),
        sa.Column("message", TEXT(), nullable=False),
    )
    op.create_table(
        "operations",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("run_id", sa.Integer(), nullable=False, index=True),
        sa.Column("kind", TEXT(), nullable=False),
        sa.Column("key", TEXT(), nullable=False, unique=True),
        sa.Column("email", TEXT(), nullable=True),
        sa.Column("target", TEXT(), nullable=True),
        sa.Column("payload", TEXT(), nullable=False),
        sa.Column("status", TEXT(), nullable=False, index=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", TEXT(), nullable=False),
        sa.Column("created_at", UTC_DATETIME(), nullable=False),
        sa.Column("updated_at", UTC_DATETIME(), nullable=False),
    )


def downgrade() -> None:
    for table in ("operations", "runs", "rejects", "stage_changes", "contacts", "funnelsync_meta"):
        op.drop_table(table)
