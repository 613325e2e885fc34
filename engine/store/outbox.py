"""The outbox: every event Nudge accepts is a row in `events` before anyone is told.

The router drains it into Temporal (`triggers/router.py`). Events come from the API
(`accept`) and from inside Nudge (SMS receipts and replies, consent changes): all of them
go through `add_event`, so every row has the same shape and deduplicates the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from engine import ids
from engine.clock import now
from engine.observability.metrics import EVENTS_ACCEPTED
from engine.store.models import Event
from engine.store.rows import for_update, insert_ignore
from engine.store.users import apply_profile, ensure_user
from schemas.events import IdentifyCall, TrackCall

Call = TrackCall | IdentifyCall


async def add_event(
    session: AsyncSession,
    *,
    user_id: str,
    name: str,
    message_id: str,
    properties: dict[str, Any],
    source: str,
    context: dict[str, Any] | None = None,
    timestamp: datetime | None = None,
    received_at: datetime | None = None,
    kind: str = "track",
) -> bool:
    """Store one event for the router; False when `message_id` was stored before (the
    repeat is ignored). `source` says where it came from (`api`, `smpp`, `consent`, ...).
    The caller commits."""
    received = received_at or now()
    return await insert_ignore(
        session,
        Event,
        {
            "message_id": message_id,
            "user_id": user_id,
            "type": kind,
            "name": name,
            "properties": properties,
            "context": {"source": source, **(context or {})},
            "timestamp": timestamp or received,
            "received_at": received,
            "route_attempts": 0,
        },
        conflict=["message_id"],
    )


@dataclass
class Accepted:
    """What `accept` did: stored message ids, and how many were repeats."""

    message_ids: list[str] = field(default_factory=list)
    duplicates: int = 0
    stored: int = 0


async def accept(session: AsyncSession, calls: list[Call]) -> Accepted:
    """Store every Segment call as an event row. A repeated `messageId` is accepted and
    ignored. `identify` traits update the profile, once per message id.

    A bad trait raises `engine.store.users.ProfileError`; the caller then rolls back, so
    nothing of the call is stored. The caller commits.
    """
    accepted = Accepted()
    received = now()
    for call in calls:
        message_id = call.message_id or ids.new_message_id()
        accepted.message_ids.append(message_id)
        user = await ensure_user(session, external_id=call.user_id, anonymous_id=call.anonymous_id)
        if isinstance(call, IdentifyCall):
            name, properties = "Identify", dict(call.traits)
        else:
            name, properties = call.event, dict(call.properties)
        inserted = await add_event(
            session,
            user_id=user.id,
            name=name,
            message_id=message_id,
            properties=properties,
            source="api",
            context=dict(call.context),
            timestamp=call.timestamp or received,
            received_at=received,
            kind=call.type,
        )
        if inserted:
            if isinstance(call, IdentifyCall):  # once per message id: a repeat changes nothing
                apply_profile(user, call.traits)
            accepted.stored += 1
            EVENTS_ACCEPTED.labels(call.type).inc()
        else:
            accepted.duplicates += 1
    return accepted


# -- the router's side -------------------------------------------------------------------


async def claim(session: AsyncSession, *, limit: int, skip: Iterable[int] = ()) -> list[Event]:
    """The oldest unrouted events, up to `limit`, locked for this transaction; each user's
    events come as a prefix of that user's unrouted events, so routing them now keeps the
    user's order whichever router holds the rest.

    Postgres: `FOR UPDATE SKIP LOCKED`, so several routers share the backlog; a user whose
    earlier event another router holds (or that waits in `skip`, e.g. to be retried later)
    is left out until that event is routed. Both queries use the partial index on unrouted
    events, so the cost follows the batch, not the backlog.
    """
    held = sorted(set(skip))
    query = select(Event).where(Event.routed_at.is_(None))
    if held:
        query = query.where(Event.id.not_in(held))
    query = for_update(session, query.order_by(Event.id).limit(limit), of=Event, skip_locked=True)
    claimed = list(await session.scalars(query))
    if not claimed:
        return []
    users = sorted({event.user_id for event in claimed})
    top = max(event.id for event in claimed)
    # Every unrouted event of these users up to the batch's last one, locked by us or not.
    others = await session.execute(
        select(Event.user_id, Event.id)
        .where(Event.routed_at.is_(None), Event.user_id.in_(users), Event.id <= top)
        .order_by(Event.id)
    )
    mine = {event.id for event in claimed}
    blocked: set[str] = set()
    routable: set[int] = set()
    for user_id, event_id in others:
        if user_id in blocked:
            continue
        if event_id in mine and event_id not in held:
            routable.add(event_id)
        else:
            blocked.add(user_id)  # an earlier event is elsewhere: the rest waits for it
    return [event for event in claimed if event.id in routable]


async def mark_routed(
    session: AsyncSession, *, ids: Iterable[int], at: datetime, error: str | None = None
) -> None:
    """Routing is done for these events (`error`: given up on for good, set aside)."""
    wanted = sorted(set(ids))
    if not wanted:
        return
    values: dict[str, Any] = {"routed_at": at, "route_attempts": Event.route_attempts + 1}
    if error is not None:
        values["route_error"] = error[:200]
    await session.execute(update(Event).where(Event.id.in_(wanted)).values(**values))


async def note_attempt(session: AsyncSession, *, ids: Iterable[int]) -> None:
    """These events failed for a passing reason and stay unrouted."""
    wanted = sorted(set(ids))
    if wanted:
        await session.execute(
            update(Event)
            .where(Event.id.in_(wanted))
            .values(route_attempts=Event.route_attempts + 1)
        )
