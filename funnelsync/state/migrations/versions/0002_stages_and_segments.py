"""Stage entries, segment members, and the funnel's timing per contact.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlmodel.sql import sqltypes

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

UTC_DATETIME = sqltypes.UTCDateTime
TEXT = sqltypes.AutoString


def upgrade() -> None:
    op.create_table(
        "stage_entries",
        sa.Column("email", TEXT(), primary_key=True),
        sa.Column("stage", TEXT(), primary_key=True),
        sa.Column("first_entered_at", UTC_DATETIME(), nullable=False),
    )
    op.create_table(
        "segment_members",
        sa.Column("email", TEXT(), primary_key=True),
        sa.Column("segment", TEXT(), primary_key=True, index=True),
        sa.Column("entered_at", UTC_DATETIME(), nullable=False),
    )
    with op.batch_alter_table("contacts") as contacts:
        contacts.add_column(sa.Column("hello_world_days", sa.Float(), nullable=True))
        contacts.add_column(sa.Column("working_app_days", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("contacts") as contacts:
        contacts.drop_column("working_app_days")
        contacts.drop_column("hello_world_days")
    op.drop_table("segment_members")
    op.drop_table("stage_entries")
