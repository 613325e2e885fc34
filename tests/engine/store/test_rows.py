"""engine.store.rows.insert_many, on Postgres (one `INSERT ... SELECT FROM
jsonb_to_recordset`, the rows one JSON document) and SQLite (an executemany): rows that
conflict are skipped, repeats inside one call too; columns the rows leave out get their
Python-side defaults; each column goes through its type (JSON, aware datetimes, enums) both
ways; a naive datetime is refused."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.exc import StatementError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from engine.store.models import Event, JourneyRun
from engine.store.rows import insert_many
from engine.store.users import ensure_users
from schemas.common import RunStatus
from tests.kit.db import sessions

AT = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
# What JSON must escape or may lose: quotes, backslashes, control and non-BMP characters,
# line separators, integers past 64 bits, floats.
PROPERTIES = {
    "n": 1,
    "nested": {"list": [1, "two", None]},
    "text": 'é😀 "quoted" \\ back\nline\u2028',
    'a "key"': True,
    "big": 2**70,
    "float": 0.1,
}


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    async with sessions(database_url) as maker:
        yield maker


def event(user_id: str, message_id: str, **extra: object) -> dict[str, object]:
    return {
        "message_id": message_id,
        "user_id": user_id,
        "type": "track",
        "name": "Ping",
        "properties": PROPERTIES,
        "context": {},
        "timestamp": AT,
        "received_at": AT + timedelta(seconds=1),
        "routed_at": None,
        **extra,
    }


async def test_inserts_skips_conflicts_and_returns_what_it_inserted(
    db: async_sessionmaker[AsyncSession],
) -> None:
    key = f"rows-{uuid.uuid4()}"
    async with db() as session:
        uid = (await ensure_users(session, [key]))[key]
        first = await insert_many(
            session,
            Event,
            [event(uid, "m1"), event(uid, "m2"), event(uid, "m1")],  # m1 twice in one call
            conflict=["user_id", "message_id"],
            returning=["user_id", "message_id"],
        )
        again = await insert_many(
            session,
            Event,
            [event(uid, "m2"), event(uid, "m3")],
            conflict=["user_id", "message_id"],
            returning=["message_id"],
        )
        await session.commit()
    assert sorted(first) == [(uid, "m1"), (uid, "m2")]
    assert again == [("m3",)]
    async with db() as session:
        rows = (await session.scalars(select(Event).where(Event.user_id == uid))).all()
    assert sorted(row.message_id for row in rows) == ["m1", "m2", "m3"]
    for row in rows:
        assert row.properties == PROPERTIES
        assert row.timestamp == AT and row.timestamp.tzinfo is not None
        assert row.route_attempts == 0  # left out: the column's Python default
        assert row.routed_at is None


async def test_enums_and_missing_columns(db: async_sessionmaker[AsyncSession]) -> None:
    key = f"rows-{uuid.uuid4()}"
    async with db() as session:
        uid = (await ensure_users(session, [key]))[key]
        [(entry,)] = await insert_many(
            session, Event, [event(uid, "m1")], conflict=["user_id", "message_id"], returning=["id"]
        )
        await insert_many(
            session,
            JourneyRun,
            [
                {
                    "journey": "t_rows",
                    "user_id": uid,
                    "key": "",
                    "workflow_id": f"wf-{key}",
                    "status": RunStatus.OPEN,
                    "version": "v1",
                    "entry_event_id": entry,
                    "started_at": AT,
                }
            ],
            conflict=["journey", "entry_event_id"],
        )
        await session.commit()
    async with db() as session:
        run = (await session.scalars(select(JourneyRun).where(JourneyRun.user_id == uid))).one()
    assert run.status is RunStatus.OPEN
    assert run.started_at == AT
    assert run.run_id is None and run.outcome is None


async def test_a_naive_datetime_is_refused(db: async_sessionmaker[AsyncSession]) -> None:
    key = f"rows-{uuid.uuid4()}"
    async with db() as session:
        uid = (await ensure_users(session, [key]))[key]
        with pytest.raises((ValueError, StatementError), match="naive datetime"):
            await insert_many(
                session,
                Event,
                [event(uid, "m1", timestamp=AT.replace(tzinfo=None))],
                conflict=["user_id", "message_id"],
            )
