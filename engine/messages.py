"""Message rows: one per address per send, keyed by the send's idempotency key."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from engine.db.models import Message, MessageAttempt
from schemas.common import MessageStatus

# Statuses that mean "we sent (or are sending) this": they count against frequency caps.
COUNTED = (
    MessageStatus.PENDING.value,
    MessageStatus.SENT.value,
    MessageStatus.DELIVERED.value,
    MessageStatus.UNDELIVERED.value,
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


async def counted_sends(
    session: AsyncSession,
    *,
    user_id: str,
    since: datetime,
    channel: str | None,
    journey: str | None,
) -> list[datetime]:
    """When each non-transactional send to the user since `since` happened, oldest first.

    A push to three devices is one send: rows are grouped by (workflow, step).
    """
    query = (
        select(func.min(Message.created_at))
        .where(
            Message.user_id == user_id,
            Message.transactional.is_(False),
            Message.status.in_(COUNTED),
            Message.created_at >= since,
        )
        .group_by(Message.workflow_id, Message.step)
    )
    if channel is not None:
        query = query.where(Message.channel == channel)
    if journey is not None:
        query = query.where(Message.journey == journey)
    return sorted(await session.scalars(query))


async def list_messages(
    session: AsyncSession, *, user_id: str | None, after: tuple[datetime, str] | None, limit: int
) -> list[Message]:
    """Messages newest first, paginated by (created_at, id)."""
    query = select(Message)
    if user_id is not None:
        query = query.where(Message.user_id == user_id)
    if after is not None:
        stamp, last_id = after
        query = query.where(
            (Message.created_at < stamp) | ((Message.created_at == stamp) & (Message.id < last_id))
        )
    query = query.order_by(Message.created_at.desc(), Message.id.desc()).limit(limit)
    return list(await session.scalars(query))


async def attempts(session: AsyncSession, *, message_id: str) -> list[MessageAttempt]:
    return list(
        await session.scalars(
            select(MessageAttempt)
            .where(MessageAttempt.message_id == message_id)
            .order_by(MessageAttempt.attempt)
        )
    )


def public(message: Message) -> dict[str, Any]:
    """A message as every surface shows it (API, CLI): no address, no body."""
    return {
        "id": message.id,
        "user_id": message.user_id,
        "journey": message.journey,
        "step": message.step,
        "channel": message.channel,
        "template": message.template,
        "device_id": message.device_id,
        "status": message.status,
        "reason": message.reason,
        "provider": message.provider,
        "provider_id": message.provider_id,
        "encoding": message.encoding,
        "parts": message.parts,
        "attempts": message.attempts,
        "transactional": message.transactional,
        "created_at": message.created_at,
        "sent_at": message.sent_at,
        "delivered_at": message.delivered_at,
    }
