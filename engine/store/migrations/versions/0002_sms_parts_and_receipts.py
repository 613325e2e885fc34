"""SMS parts and delivery receipts

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 08:45:00
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "message_parts",
        sa.Column("smsc_id", sa.String(length=128), nullable=False),
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("part", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=True),
        sa.Column("error_code", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(["message_id"], ["messages.id"]),
        sa.PrimaryKeyConstraint("smsc_id"),
    )
    op.create_index("ix_message_parts_message_id", "message_parts", ["message_id"])
    op.create_table(
        "sms_receipts",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("smsc_id", sa.String(length=128), nullable=False),
        sa.Column("stat", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("final", sa.Boolean(), nullable=False),
        sa.Column("error_code", sa.String(length=32), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_sms_receipts_smsc_id", "sms_receipts", ["smsc_id"])


def downgrade() -> None:
    op.drop_index("ix_sms_receipts_smsc_id", table_name="sms_receipts")
    op.drop_table("sms_receipts")
    op.drop_index("ix_message_parts_message_id", table_name="message_parts")
    op.drop_table("message_parts")
