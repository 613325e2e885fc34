"""Broadcasts (progress of each entry workflow) and the events index segments read

Revision ID: 0010
Revises: 0008
Create Date: 2026-12-02 06:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "broadcasts",
        sa.Column("id", sa.String(length=160), primary_key=True),
        sa.Column("journey", sa.String(length=100), nullable=False),
        sa.Column("segment", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("local", sa.Boolean(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("local_at", sa.String(length=32), nullable=True),
        sa.Column("rate", sa.Float(), nullable=True),
        sa.Column("schedule", sa.String(length=100), nullable=True),
        sa.Column("total", sa.Integer(), nullable=True),
        sa.Column("entered", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.Integer(), nullable=False),
        sa.Column("next_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_broadcasts_created_at", "broadcasts", ["created_at"])
    op.create_index("ix_events_user_name_time", "events", ["user_id", "name", "timestamp"])


def downgrade() -> None:
    op.drop_index("ix_events_user_name_time", table_name="events")
    op.drop_table("broadcasts")
