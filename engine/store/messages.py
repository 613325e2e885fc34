"""Message rows: one per address per send, keyed by the send's idempotency key."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Insert,
    Select,
    Update,
    bindparam,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from engine.store import driver
from engine.store.models import Base, Message, MessageAttempt
from engine.store.rows import one_of, per_dialect, table_of
from engine.store.session import dialect_name
from schemas.common import Channel, MessageStatus

# Statuses that mean "we sent (or are sending) this": they count against frequency caps.
COUNTED = (
    MessageStatus.PENDING,
    MessageStatus.SENT,
    MessageStatus.DELIVERED,
    MessageStatus.UNDELIVERED,
    MessageStatus.UNKNOWN,  # it may have reached the person
)


async def rows_for_send(
    session: AsyncSession, *, workflow_id: str, step: str, key: str
) -> list[Message]:
    """The rows an earlier attempt of this send wrote (the send row or one per device)."""
    rows = await session.scalars(
        select(Message)
        .where(Message.workflow_id == workflow_id, Message.step == step)
        .order_by(Message.created_at, Message.id)
    )
    return [r for r in rows if r.idempotency_key == key or r.idempotency_key.startswith(key + "/")]


@dataclass(frozen=True)
class CountedSend:
    """One non-transactional send (all of its rows), as frequency caps count it."""

    channel: str
    journey: str | None
    at: datetime
    """Its `sent_at`, or its reservation time while it is still being sent."""


async def counted_sends(
    session: AsyncSession, *, user_id: str, since: datetime
) -> list[CountedSend]:
    """The user's non-transactional sends counted since `since`, oldest first.

    A push to three devices is one send: rows are grouped by (workflow, step), and a send
    counts from the first time it reached the person (`sent_at`), so a slow provider call
    does not shorten the gap the person sees.
    """
    values = {"user_id": user_id, "since": since, "counted": list(COUNTED)}
    found = [
        CountedSend(channel, journey, stamp)
        for channel, journey, stamp in await driver.rows(session, _counted_sends(session), values)
    ]
    return sorted(found, key=lambda send: send.at)


@per_dialect
def _counted_sends(dialect: str) -> Select[Channel, str | None, datetime]:
    at = func.coalesce(Message.sent_at, Message.created_at)
    return (
        select(Message.channel, Message.journey, func.min(at))
        .where(
            Message.user_id == bindparam("user_id"),
            Message.transactional.is_(False),
            one_of(dialect, Message.status, "counted"),
            at >= bindparam("since", type_=Message.created_at.type),
        )
        .group_by(Message.workflow_id, Message.step, Message.channel, Message.journey)
    )


@dataclass(frozen=True)
class MessageFilter:
    """What a message search narrows on; None means any. `since`/`until` bound the time the
    row was created (UTC, `until` exclusive)."""

    user_id: str | None = None
    status: MessageStatus | None = None
    journey: str | None = None
    template: str | None = None
    channel: Channel | None = None
    since: datetime | None = None
    until: datetime | None = None


async def list_messages(
    session: AsyncSession,
    *,
    user_id: str | None,
    after: tuple[datetime, str] | None,
    limit: int,
    where: MessageFilter | None = None,
) -> list[Message]:
    """Messages newest first, paginated by (created_at, id); `where` narrows the search."""
    query = select(Message)
    if user_id is not None:
        query = query.where(Message.user_id == user_id)
    if where is not None:
        query = query.where(*_conditions(where))
    if after is not None:
        stamp, last_id = after
        query = query.where(
            (Message.created_at < stamp) | ((Message.created_at == stamp) & (Message.id < last_id))
        )
    query = query.order_by(Message.created_at.desc(), Message.id.desc()).limit(limit)
    return list(await session.scalars(query))


def _conditions(where: MessageFilter) -> list[ColumnElement[bool]]:
    found: list[ColumnElement[bool]] = []
    if where.user_id is not None:
        found.append(Message.user_id == where.user_id)
    if where.status is not None:
        found.append(Message.status == where.status)
    if where.journey is not None:
        found.append(Message.journey == where.journey)
    if where.template is not None:
        found.append(Message.template == where.template)
    if where.channel is not None:
        found.append(Message.channel == where.channel)
    if where.since is not None:
        found.append(Message.created_at >= where.since)
    if where.until is not None:
        found.append(Message.created_at < where.until)
    return found


async def attempts(session: AsyncSession, *, message_id: str) -> list[MessageAttempt]:
    return list(
        await session.scalars(
            select(MessageAttempt)
            .where(MessageAttempt.message_id == message_id)
            .order_by(MessageAttempt.attempt)
        )
    )


async def reserve(
    session: AsyncSession, rows: Sequence[Message], attempts: Sequence[MessageAttempt]
) -> None:
    """Insert a send's new rows and the first attempts of those it delivers. One row is one
    statement, the ORM's unit of work skipped: alone (a suppressed send, or one no provider
    serves), or, on Postgres, with its attempt (the row's insert a CTE of the attempt's).
    The rest go through the session."""
    if len(rows) == 1 and not attempts:
        row = _set_columns(rows[0])
        await driver.execute(session, _insert_one(tuple(row)), _bound("m", row))
        return
    if dialect_name(session) == "postgresql" and len(rows) == len(attempts) == 1:
        row, attempt = _set_columns(rows[0]), _set_columns(attempts[0])
        values = _bound("m", row) | _bound("a", attempt)
        await driver.execute(session, _reserve_one(tuple(row), tuple(attempt)), values)
        return
    session.add_all(rows)
    session.add_all(attempts)
    await session.flush()


def _set_columns(row: Base) -> dict[str, Any]:
    """The columns a new row's attributes set (the others keep their defaults)."""
    columns = table_of(type(row)).columns
    return {k: v for k, v in vars(row).items() if k in columns}


def _bound(prefix: str, columns: dict[str, Any]) -> dict[str, Any]:
    """`columns` as the values of `_insert_one` / `_reserve_one` (`<prefix>_<column>`)."""
    return {f"{prefix}_{k}": v for k, v in columns.items()}


@functools.cache
def _insert_one(row: tuple[str, ...]) -> Insert:
    """`reserve`'s statement for one row, the columns given bound as `m_<column>` (built
    once per column set)."""
    messages = table_of(Message)
    return insert(messages).values({k: bindparam(f"m_{k}", type_=messages.c[k].type) for k in row})


@functools.cache
def _reserve_one(row: tuple[str, ...], attempt: tuple[str, ...]) -> Insert:
    """`reserve`'s statement for one row and its attempt, the columns given bound as
    `m_<column>` and `a_<column>` (built once per column set)."""
    attempts = table_of(MessageAttempt)
    return (
        insert(attempts)
        .values({k: bindparam(f"a_{k}", type_=attempts.c[k].type) for k in attempt})
        .add_cte(_insert_one(row).cte("reserved"))
    )


async def finish_attempt(
    session: AsyncSession, *, row: Message, outcome: str, error: str | None, finished_at: datetime
) -> None:
    """Store what one provider call did: the message row as it now stands (status, provider
    ids, encoding) and the end of its attempt `row.attempts`. One statement on Postgres
    (a session that runs only this may `autocommit`), two on SQLite."""
    values = {f"b_{name}": getattr(row, name) for name in _MESSAGE_OUTCOME}
    values |= {
        "b_message_id": row.id,
        "b_attempt": row.attempts,
        "b_finished_at": finished_at,
        "b_outcome": outcome,
        "b_error": error,
    }
    for statement in _finish_attempt(session):
        await driver.execute(session, statement, values)


# The message columns an outcome sets, each from the row's attribute of the same name.
_MESSAGE_OUTCOME = (
    "status",
    "reason",
    "provider",
    "provider_id",
    "encoding",
    "parts",
    "sent_at",
    "updated_at",
)
# The attempt's columns; its provider's are the message's (`b_provider`, `b_provider_id`).
_ATTEMPT_OUTCOME = ("finished_at", "outcome", "error", "provider", "provider_id")


@per_dialect
def _finish_attempt(dialect: str) -> tuple[Update, ...]:
    """`finish_attempt`'s updates, on the tables (an ORM-enabled update synchronises the
    session first), their values bound as `b_<column>` (a column's own name is reserved
    for SQLAlchemy's SET parameters). On Postgres the message's update is a CTE of the
    attempt's: one statement, one round trip."""
    messages, attempts = table_of(Message), table_of(MessageAttempt)
    message = (
        update(messages)
        .where(messages.c.id == bindparam("b_message_id"))
        .values({name: bindparam(f"b_{name}") for name in _MESSAGE_OUTCOME})
    )
    attempt = (
        update(attempts)
        .where(
            attempts.c.message_id == bindparam("b_message_id"),
            attempts.c.attempt == bindparam("b_attempt"),
        )
        .values({name: bindparam(f"b_{name}") for name in _ATTEMPT_OUTCOME})
    )
    if dialect == "postgresql":
        return (attempt.add_cte(message.cte("finished_message")),)
    return message, attempt


async def unfinished_attempt(
    session: AsyncSession, *, message_id: str
) -> tuple[int, str | None] | None:
    """The latest attempt of this message that started and never finished (the worker died
    mid-call), if any, with the provider it was submitting to: its outcome is unknown."""
    found = (
        await session.execute(
            select(MessageAttempt.attempt, MessageAttempt.provider)
            .where(MessageAttempt.message_id == message_id, MessageAttempt.finished_at.is_(None))
            .order_by(MessageAttempt.attempt.desc())
            .limit(1)
        )
    ).first()
    return None if found is None else (found[0], found[1])


async def submitting(
    session: AsyncSession, *, message_id: str, attempt: int, provider: str
) -> None:
    """Say which provider an attempt is about to submit to (before the call)."""
    await session.execute(
        update(MessageAttempt)
        .where(MessageAttempt.message_id == message_id, MessageAttempt.attempt == attempt)
        .values(provider=provider)
    )


async def last_outcome(session: AsyncSession, *, message_id: str) -> str | None:
    """The outcome of this message's most recent finished attempt, if any."""
    return await session.scalar(
        select(MessageAttempt.outcome)
        .where(MessageAttempt.message_id == message_id, MessageAttempt.finished_at.is_not(None))
        .order_by(MessageAttempt.attempt.desc())
        .limit(1)
    )


async def close_attempt(
    session: AsyncSession, *, message_id: str, attempt: int, outcome: str, at: datetime
) -> None:
    """Close an attempt that will never report (its worker died): say what became of it."""
    await session.execute(
        update(MessageAttempt)
        .where(
            MessageAttempt.message_id == message_id,
            MessageAttempt.attempt == attempt,
            MessageAttempt.finished_at.is_(None),
        )
        .values(finished_at=at, outcome=outcome)
    )
