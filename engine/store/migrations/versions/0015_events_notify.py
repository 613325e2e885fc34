"""Storing events notifies routers (Postgres NOTIFY), so a router in another process routes
them at once instead of at its next poll

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 07:00:00
"""

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite runs in one process: its routers poll
    # Once per statement, not per row; the payload names the schema (channels are
    # database-wide), and Postgres folds repeats in one transaction into one, sent at commit.
    op.execute(
        """
        CREATE FUNCTION nudge_events_stored() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('nudge_events', TG_TABLE_SCHEMA);
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER events_stored AFTER INSERT ON events"
        " FOR EACH STATEMENT EXECUTE FUNCTION nudge_events_stored()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER events_stored ON events")
    op.execute("DROP FUNCTION nudge_events_stored()")
