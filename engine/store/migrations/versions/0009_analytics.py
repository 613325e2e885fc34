"""Analytics: runs record their experiment at `split`, messages their run, deferrals,
clicks and opens; links count clicks (human and bot); experiments keep their arms.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 06:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")
UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("journey_runs") as batch:
        batch.add_column(sa.Column("experiment", sa.String(length=100), nullable=True))
        batch.create_index("ix_runs_journey_started", ["journey", "started_at"])
        batch.create_index("ix_runs_experiment_started", ["experiment", "started_at"])
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("run_id", sa.String(length=64), nullable=True))
        batch.add_column(
            sa.Column("deferrals", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("clicked_at", UTC, nullable=True))
        batch.add_column(sa.Column("opened_at", UTC, nullable=True))
        batch.create_index("ix_messages_run_step", ["run_id", "step"])
    with op.batch_alter_table("links") as batch:
        batch.add_column(sa.Column("clicks", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(
            sa.Column("bot_clicks", sa.Integer(), nullable=False, server_default="0")
        )
    op.create_table(
        "experiments",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("journey", sa.String(length=100), nullable=False),
        sa.Column("arms", JSON, nullable=False),
        sa.Column("holdout", sa.Float(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("experiments")
    with op.batch_alter_table("links") as batch:
        batch.drop_column("bot_clicks")
        batch.drop_column("clicks")
    with op.batch_alter_table("messages") as batch:
        batch.drop_index("ix_messages_run_step")
        batch.drop_column("opened_at")
        batch.drop_column("clicked_at")
        batch.drop_column("deferrals")
        batch.drop_column("run_id")
    with op.batch_alter_table("journey_runs") as batch:
        batch.drop_index("ix_runs_experiment_started")
        batch.drop_index("ix_runs_journey_started")
        batch.drop_column("experiment")
