"""Messages say whether they were a test send (`nudge send-test`), outside every journey

Revision ID: 0013
Revises: 0009 (issue 13's analytics, merged here)
Create Date: 2026-12-02 06:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(
            sa.Column("test", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("test")
