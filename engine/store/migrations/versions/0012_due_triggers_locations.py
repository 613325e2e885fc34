"""Due triggers (inactivity and date triggers, swept through a partial index), users'
last locations (geofence crossings), and an index on users.updated_at (the sweep reads the
profiles changed since its last look, for date triggers on profile attributes)

Revision ID: 0012
Revises: 0008
Create Date: 2026-12-02 06:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "due_triggers",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("journey", sa.String(length=100), nullable=False),
        sa.Column("user_id", sa.String(length=40), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("fired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("detail", JSON, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("journey", "user_id", "key", name="uq_due_triggers"),
    )
    op.create_index("ix_due_triggers_user_id", "due_triggers", ["user_id"])
    op.create_index(
        "ix_due_triggers_unfired",
        "due_triggers",
        ["due_at"],
        postgresql_where=sa.text("fired_at IS NULL"),
        sqlite_where=sa.text("fired_at IS NULL"),
    )
    op.create_index("ix_users_updated_at", "users", ["updated_at"])
    op.create_table(
        "user_locations",
        sa.Column(
            "user_id", sa.String(length=40), sa.ForeignKey("users.id"), primary_key=True
        ),
        sa.Column("latitude", sa.Float(), nullable=False),
        sa.Column("longitude", sa.Float(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("geofences", JSON, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("user_locations")
    op.drop_index("ix_users_updated_at", table_name="users")
    op.drop_index("ix_due_triggers_unfired", table_name="due_triggers")
    op.drop_table("due_triggers")
