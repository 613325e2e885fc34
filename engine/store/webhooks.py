"""Webhook events and their deliveries: what Nudge reports to CRMs and warehouses.

`enqueue` is called inside the transaction that records a fact (a message sent, a run
ended, a consent change), so an event exists exactly when its fact does. Only kinds some
endpoint subscribes to are written: the session's `info["webhook_kinds"]` says which
(`engine.context` sets it from `nudge.toml`). The dispatcher (`triggers/webhooks.py`) turns
each event into one delivery per subscribed endpoint, each delivered by a Temporal workflow.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from engine.clock import now
from engine.store.driver import autocommit
from engine.store.models import Message, User, WebhookDelivery, WebhookEvent
from engine.store.rows import for_update, insert_for

KINDS_KEY = "webhook_kinds"

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"


def wanted(session: AsyncSession, kind: str) -> bool:
    """Whether an endpoint subscribes to `kind` (so `enqueue` writes it)."""
    kinds: frozenset[str] = session.info.get(KINDS_KEY) or frozenset()
    return kind in kinds


async def autocommit_unless_wanted(session: AsyncSession, kind: str) -> None:
    """Let the session's statements commit as they run (`driver.autocommit`) unless an
    endpoint wants `kind`: then its event must be written in one transaction with its fact.
    For work whose statements are each complete on its own."""
    if not wanted(session, kind):
        await autocommit(session)


async def enqueue(
    session: AsyncSession,
    *,
    kind: str,
    payload: dict[str, Any],
    user_id: str | None = None,
    at: datetime | None = None,
) -> str | None:
    """Record one webhook event (if any endpoint wants `kind`); its id, or None."""
    if not wanted(session, kind):
        return None
    event_id = "wh_" + secrets.token_hex(12)
    data = dict(payload)
    if user_id is not None:
        # Receivers know people by the product's id; Nudge's own id comes along.
        external = await session.scalar(select(User.external_id).where(User.id == user_id))
        data = {"user_id": external, "uid": user_id, **data}
    session.add(
        WebhookEvent(
            id=event_id,
            kind=kind,
            user_id=user_id,
            payload={"type": kind, "timestamp": (at or now()).isoformat(), "data": data},
            created_at=at or now(),
        )
    )
    return event_id


def message_payload(message: Message) -> dict[str, Any]:
    """What a `message.*` webhook says about a message (never its body or address)."""
    return {
        "message_id": message.id,
        "journey": message.journey,
        "step": message.step,
        "template": message.template,
        "channel": str(message.channel),
        "status": str(message.status),
        "reason": message.reason,
        "provider": message.provider,
        "variant": message.variant,
        "transactional": message.transactional,
    }


async def claim(session: AsyncSession, *, limit: int) -> list[WebhookEvent]:
    """Undispatched events, oldest first, locked for this transaction (several dispatchers
    share them on Postgres)."""
    query = (
        select(WebhookEvent)
        .where(WebhookEvent.dispatched_at.is_(None))
        .order_by(WebhookEvent.created_at, WebhookEvent.id)
        .limit(limit)
    )
    return list(await session.scalars(for_update(session, query, skip_locked=True)))


async def add_deliveries(
    session: AsyncSession, *, pairs: Iterable[tuple[str, str]], at: datetime
) -> None:
    """One pending delivery per (endpoint, event id); a repeat is ignored."""
    rows = [
        {
            "endpoint": endpoint,
            "event_id": event_id,
            "status": PENDING,
            "attempts": 0,
            "created_at": at,
            "updated_at": at,
        }
        for endpoint, event_id in pairs
    ]
    if rows:
        stmt = insert_for(session)(WebhookDelivery).values(rows)
        await session.execute(stmt.on_conflict_do_nothing(index_elements=["endpoint", "event_id"]))


async def mark_dispatched(session: AsyncSession, *, event_ids: Iterable[str], at: datetime) -> None:
    ids = sorted(set(event_ids))
    if ids:
        await session.execute(
            update(WebhookEvent).where(WebhookEvent.id.in_(ids)).values(dispatched_at=at)
        )


@dataclass(frozen=True)
class Outgoing:
    """What one delivery attempt sends: the event id (`webhook-id`) and its JSON body."""

    event_id: str
    body: dict[str, Any]
    status: str


async def begin_attempt(session: AsyncSession, *, endpoint: str, event_id: str) -> Outgoing | None:
    """Count one attempt of a delivery and return what to send; None if there is no such
    delivery (or event)."""
    delivery = (
        await session.scalars(
            for_update(
                session,
                select(WebhookDelivery).where(
                    WebhookDelivery.endpoint == endpoint, WebhookDelivery.event_id == event_id
                ),
            )
        )
    ).first()
    event = await session.get(WebhookEvent, event_id)
    if delivery is None or event is None:
        return None
    delivery.attempts += 1
    delivery.updated_at = now()
    return Outgoing(event_id=event.id, body=dict(event.payload), status=delivery.status)


async def record_answer(
    session: AsyncSession,
    *,
    endpoint: str,
    event_id: str,
    status: str,
    http_status: int | None,
    error: str | None = None,
) -> None:
    """What the receiver answered (or why there was no answer)."""
    stamp = now()
    values: dict[str, Any] = {
        "status": status,
        "last_status": http_status,
        "last_error": (error or "")[:200] or None,
        "updated_at": stamp,
    }
    if status == DELIVERED:
        values["delivered_at"] = stamp
    await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.endpoint == endpoint, WebhookDelivery.event_id == event_id)
        .values(**values)
    )


async def deliveries(
    session: AsyncSession,
    *,
    endpoint: str | None = None,
    status: str | None = None,
    limit: int = 50,
) -> list[tuple[WebhookDelivery, WebhookEvent]]:
    """Recent deliveries with their events, newest first (for `nudge webhooks deliveries`)."""
    query = select(WebhookDelivery, WebhookEvent).join(
        WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id
    )
    if endpoint is not None:
        query = query.where(WebhookDelivery.endpoint == endpoint)
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    query = query.order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc())
    return [(d, e) for d, e in await session.execute(query.limit(limit))]
