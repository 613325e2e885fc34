"""Parts of concatenated inbound SMS, held until their message is complete

Revision ID: 0011
Revises: 0008
Create Date: 2026-12-02 06:30:00
"""
import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "sms_inbound_parts",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("sender", sa.String(length=32), nullable=False),
        sa.Column("destination", sa.String(length=32), nullable=False),
        sa.Column("reference", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("data_coding", sa.Integer(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("joined_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("sender", "reference", "seq"),
    )
    op.create_index("ix_sms_inbound_parts_received_at", "sms_inbound_parts", ["received_at"])


def downgrade() -> None:
    op.drop_index("ix_sms_inbound_parts_received_at", table_name="sms_inbound_parts")
    op.drop_table("sms_inbound_parts")
