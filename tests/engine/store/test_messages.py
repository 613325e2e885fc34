"""engine.store.messages: a send's rows reserved (one statement for a lone row, and on
Postgres for a row and its attempt) and an attempt's end stored (one statement on Postgres,
which an autocommit session commits as it runs), on Postgres and SQLite."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from engine.store import messages
from engine.store.driver import autocommit
from engine.store.models import Message, MessageAttempt
from engine.store.session import dialect_name
from schemas.common import MessageStatus
from tests.kit.db import new_user

AT = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def _row(user_id: str, key: str) -> Message:
    return Message(
        id=f"msg_{uuid.uuid4().hex}",
        idempotency_key=key,
        user_id=user_id,
        journey="j",
        workflow_id="wf",
        step="s",
        channel="push",
        transactional=False,
        test=False,
        status=MessageStatus.PENDING,
        body={"title": "Hé 😀", "data": {"n": [1, None]}},
        attempts=1,
        created_at=AT,
        updated_at=AT,
    )


def _attempt(row: Message) -> MessageAttempt:
    return MessageAttempt(message_id=row.id, attempt=1, started_at=AT, provider="lane-a")


async def _reserve(
    db: async_sessionmaker[AsyncSession], rows: list[Message], attempted: list[Message]
) -> None:
    """`messages.reserve` of `rows`, with a first attempt for each of `attempted`, committed."""
    async with db() as session, session.begin():
        await messages.reserve(session, rows, [_attempt(row) for row in attempted])


async def test_reserve_stores_the_row_and_its_attempt_and_a_repeat_conflicts(
    db: async_sessionmaker[AsyncSession],
) -> None:
    uid = await new_user(db, "messages")
    row = _row(uid, "send/1")
    await _reserve(db, [row], [row])
    async with db() as session:
        stored = await session.get(Message, row.id)
        attempts = list(await session.scalars(select(MessageAttempt)))
    assert stored is not None
    assert stored.status == MessageStatus.PENDING
    assert stored.body == {"title": "Hé 😀", "data": {"n": [1, None]}}
    assert stored.created_at == AT
    assert stored.deferrals == 0  # left out: its default
    assert [(a.message_id, a.attempt, a.provider, a.started_at) for a in attempts] == [
        (row.id, 1, "lane-a", AT)
    ]

    again = _row(uid, "send/1")  # the same send's key: an earlier attempt's rows exist
    with pytest.raises(IntegrityError):
        await _reserve(db, [again], [again])
    async with db() as session:
        assert await session.get(Message, again.id) is None
        assert len(list(await session.scalars(select(MessageAttempt)))) == 1


async def test_reserve_stores_several_rows_and_those_without_an_attempt(
    db: async_sessionmaker[AsyncSession],
) -> None:
    uid = await new_user(db, "messages")
    first, second = _row(uid, "send/2/d1"), _row(uid, "send/2/d2")
    await _reserve(db, [first, second], [first])
    async with db() as session:
        ids = set(await session.scalars(select(Message.id)))
        attempted = list(await session.scalars(select(MessageAttempt.message_id)))
    assert ids == {first.id, second.id}
    assert attempted == [first.id]


async def test_reserve_stores_a_lone_row_without_an_attempt_and_a_repeat_conflicts(
    db: async_sessionmaker[AsyncSession],
) -> None:
    uid = await new_user(db, "messages")
    row = _row(uid, "send/3")
    row.status, row.reason, row.body = MessageStatus.SUPPRESSED, "capped", None
    await _reserve(db, [row], [])
    async with db() as session:
        stored = await session.get(Message, row.id)
        attempts = list(await session.scalars(select(MessageAttempt)))
    assert stored is not None
    assert (stored.status, stored.reason, stored.body) == (MessageStatus.SUPPRESSED, "capped", None)
    assert (stored.created_at, stored.deferrals, attempts) == (AT, 0, [])
    with pytest.raises(IntegrityError):
        await _reserve(db, [_row(uid, "send/3")], [])


async def test_an_attempts_end_is_stored_and_autocommitted_on_postgres(
    db: async_sessionmaker[AsyncSession],
) -> None:
    uid = await new_user(db, "messages")
    row = _row(uid, "send/3")
    await _reserve(db, [row], [row])
    row.status, row.provider, row.provider_id = MessageStatus.SENT, "console", "p-1"
    row.sent_at = row.updated_at = AT + timedelta(seconds=2)
    async with db() as session:
        await autocommit(session)
        await messages.finish_attempt(
            session, row=row, outcome="sent", error=None, finished_at=AT + timedelta(seconds=3)
        )
        if dialect_name(session) == "postgresql":
            # Committed as it ran: another connection sees it while this session is open.
            async with db() as other:
                assert await other.scalar(select(Message.status)) == MessageStatus.SENT
        await session.commit()
    async with db() as session:
        stored = await session.get(Message, row.id)
        attempt = await session.scalar(select(MessageAttempt))
    assert stored is not None and attempt is not None
    assert (stored.status, stored.provider, stored.provider_id, stored.sent_at) == (
        MessageStatus.SENT,
        "console",
        "p-1",
        AT + timedelta(seconds=2),
    )
    assert (attempt.outcome, attempt.provider, attempt.provider_id, attempt.finished_at) == (
        "sent",
        "console",
        "p-1",
        AT + timedelta(seconds=3),
    )
