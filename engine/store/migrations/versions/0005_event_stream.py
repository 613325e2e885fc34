"""Keep up with an event stream: dedupe per user, partial indexes for the router, Segment
timestamps, user merges

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 01:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# How the unnamed unique constraint of 0001 is found on SQLite (batch mode reflects it).
NAMING = {"uq": "uq_%(table_name)s_%(column_0_name)s"}
UNROUTED = sa.text("routed_at IS NULL")


def _old_unique() -> str:
    return "events_message_id_key" if op.get_bind().dialect.name == "postgresql" else "uq_events_message_id"


def upgrade() -> None:
    with op.batch_alter_table("events", naming_convention=NAMING) as batch:
        batch.drop_constraint(_old_unique(), type_="unique")
        batch.alter_column("message_id", type_=sa.String(length=300))
        batch.add_column(sa.Column("original_timestamp", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_unique_constraint("uq_events_user_message", ["user_id", "message_id"])
        batch.drop_index("ix_events_unrouted")
    op.create_index(
        "ix_events_unrouted_id",
        "events",
        ["id"],
        postgresql_where=UNROUTED,
        sqlite_where=UNROUTED,
    )
    op.create_index(
        "ix_events_unrouted_user",
        "events",
        ["user_id", "id"],
        postgresql_where=UNROUTED,
        sqlite_where=UNROUTED,
    )
    op.create_index("ix_runs_user_journey", "journey_runs", ["user_id", "journey", "id"])
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("merged_into", sa.String(length=40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("merged_into")
    op.drop_index("ix_runs_user_journey", table_name="journey_runs")
    op.drop_index("ix_events_unrouted_user", table_name="events")
    op.drop_index("ix_events_unrouted_id", table_name="events")
    with op.batch_alter_table("events") as batch:
        batch.create_index("ix_events_unrouted", ["routed_at", "id"])
        batch.drop_constraint("uq_events_user_message", type_="unique")
        batch.drop_column("sent_at")
        batch.drop_column("original_timestamp")
        batch.alter_column("message_id", type_=sa.String(length=255))
        batch.create_unique_constraint("uq_events_message_id", ["message_id"])
