"""Message attempts name the provider of a route they submit to, before the submit

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 17:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("message_attempts") as batch:
        batch.add_column(sa.Column("provider", sa.String(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("message_attempts") as batch:
        batch.drop_column("provider")
