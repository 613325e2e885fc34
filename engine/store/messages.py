"""Message rows: one per address per send, keyed by the send's idempotency key."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Select, Update, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from engine.store.models import Message, MessageAttempt
from engine.store.rows import per_dialect, table_of
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
    query = _counted_sends(session)
    found = [
        CountedSend(channel, journey, stamp)
        for channel, journey, stamp in await session.execute(
            query, {"user_id": user_id, "since": since}
        )
    ]
    return sorted(found, key=lambda send: send.at)


@per_dialect
def _counted_sends(_dialect: str) -> Select[Channel, str | None, datetime]:
    at = func.coalesce(Message.sent_at, Message.created_at)
    return (
        select(Message.channel, Message.journey, func.min(at))
        .where(
            Message.user_id == bindparam("user_id"),
            Message.transactional.is_(False),
            Message.status.in_(COUNTED),
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


async def finish_attempt(
    session: AsyncSession, *, row: Message, outcome: str, error: str | None, finished_at: datetime
) -> None:
    """Store what one provider call did: the message row as it now stands (status, provider
    ids, encoding) and the end of its attempt `row.attempts`."""
    message, attempt = _finish_attempt(session)
    stands = {f"b_{name}": getattr(row, name) for name in _MESSAGE_OUTCOME}
    await session.execute(message, {"b_message_id": row.id, **stands})
    await session.execute(
        attempt,
        {
            "b_message_id": row.id,
            "b_attempt": row.attempts,
            "b_finished_at": finished_at,
            "b_outcome": outcome,
            "b_error": error,
            "b_provider": row.provider,
            "b_provider_id": row.provider_id,
        },
    )


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
_ATTEMPT_OUTCOME = ("finished_at", "outcome", "error", "provider", "provider_id")


@per_dialect
def _finish_attempt(_dialect: str) -> tuple[Update, Update]:
    """The two updates of `finish_attempt`, on the tables (an ORM-enabled update synchronises
    the session first), their values bound as `b_<column>` (a column's own name is reserved
    for SQLAlchemy's SET parameters)."""
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
