"""The funnel over time: contacts per stage as each run finished, and the enrollments it made.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlmodel.sql import sqltypes

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

UTC_DATETIME = sqltypes.UTCDateTime
TEXT = sqltypes.AutoString


def upgrade() -> None:
    op.create_table(
        "stage_counts",
        sa.Column("run_id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("stage", TEXT(), primary_key=True),
        sa.Column("contacts", sa.Integer(), nullable=False),
        sa.Column("counted_at", UTC_DATETIME(), nullable=False, index=True),
    )
    with op.batch_alter_table("runs") as runs:
        # runs recorded before this revision never counted theirs: left NULL, not a made-up 0
        runs.add_column(sa.Column("enrollments_made", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as runs:
        runs.drop_column("enrollments_made")
    op.drop_table("stage_counts")
