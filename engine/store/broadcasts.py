"""Broadcasts: their progress rows, and the per-user entry records that make a broadcast
enter each member once.

A broadcast's entry into a journey is an ordinary `journey_runs` row whose entry event is a
`Broadcast` event of that user, stored already routed, with the message id
`broadcast/{id}`: so the user's timeline shows it, re-entry rules see it, and (journey,
event) being unique makes recording an entry idempotent. Keyword-only; never commits.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from engine.clock import now
from engine.store.models import Broadcast, Event, JourneyRun
from engine.store.rows import insert_for, insert_ignore
from schemas.broadcasts import BROADCAST_EVENT, BroadcastStatus


def entry_message_id(broadcast_id: str) -> str:
    """The message id of the entry event a broadcast stores for each member."""
    return f"broadcast/{broadcast_id}"


async def create(
    session: AsyncSession,
    *,
    broadcast_id: str,
    journey: str,
    segment: str,
    status: BroadcastStatus = BroadcastStatus.SCHEDULED,
    local: bool = False,
    at: datetime | None = None,
    local_at: str | None = None,
    rate: float | None = None,
    schedule: str | None = None,
    stamp: datetime | None = None,
) -> bool:
    """Insert the broadcast's row unless it exists; True if inserted."""
    stamp = stamp or now()
    return await insert_ignore(
        session,
        Broadcast,
        {
            "id": broadcast_id,
            "journey": journey,
            "segment": segment,
            "status": status,
            "local": local,
            "at": at,
            "local_at": local_at,
            "rate": rate,
            "schedule": schedule,
            "entered": 0,
            "skipped": 0,
            "created_at": stamp,
            "updated_at": stamp,
        },
        conflict=["id"],
    )


async def get(session: AsyncSession, *, broadcast_id: str) -> Broadcast | None:
    return await session.get(Broadcast, broadcast_id)


async def recent(
    session: AsyncSession, *, limit: int = 50, before: str | None = None
) -> list[Broadcast]:
    """Broadcasts newest first (by creation time, then id)."""
    query = select(Broadcast).order_by(Broadcast.created_at.desc(), Broadcast.id.desc())
    if before is not None:
        edge = await session.get(Broadcast, before)
        if edge is not None:
            query = query.where(Broadcast.created_at <= edge.created_at, Broadcast.id != before)
    return list(await session.scalars(query.limit(limit)))


async def mark(
    session: AsyncSession,
    *,
    broadcast_id: str,
    status: BroadcastStatus,
    total: int | None = None,
    next_at: datetime | None = None,
) -> None:
    """Set the status (and the member count when known, the next wave's time)."""
    values: dict[str, Any] = {"status": status, "next_at": next_at, "updated_at": now()}
    if total is not None:
        values["total"] = total
    if status in (BroadcastStatus.COMPLETED, BroadcastStatus.FAILED):
        values["finished_at"] = values["updated_at"]
    await session.execute(update(Broadcast).where(Broadcast.id == broadcast_id).values(**values))


async def add_progress(
    session: AsyncSession, *, broadcast_id: str, entered: int, skipped: int
) -> None:
    await session.execute(
        update(Broadcast)
        .where(Broadcast.id == broadcast_id)
        .values(
            entered=Broadcast.entered + entered,
            skipped=Broadcast.skipped + skipped,
            status=BroadcastStatus.RUNNING,
            next_at=None,
            updated_at=now(),
        )
    )


async def entry_events(
    session: AsyncSession, *, broadcast_id: str, user_ids: Iterable[str], at: datetime
) -> dict[str, int]:
    """The broadcast's entry event of each user (stored now if missing, already routed):
    event id by user id."""
    wanted = sorted(set(user_ids))
    if not wanted:
        return {}
    message_id = entry_message_id(broadcast_id)
    stamp = now()
    rows = [
        {
            "message_id": message_id,
            "user_id": user_id,
            "type": "track",
            "name": BROADCAST_EVENT,
            "properties": {"broadcast": broadcast_id},
            "context": {"source": "broadcast"},
            "timestamp": at,
            "received_at": stamp,
            "routed_at": stamp,
            "route_attempts": 0,
        }
        for user_id in wanted
    ]
    insert = insert_for(session)(Event).values(rows)
    await session.execute(insert.on_conflict_do_nothing(index_elements=["user_id", "message_id"]))
    found = await session.execute(
        select(Event.user_id, Event.id).where(
            Event.user_id.in_(wanted), Event.message_id == message_id
        )
    )
    return {user_id: event_id for user_id, event_id in found}


async def entered(
    session: AsyncSession, *, journey: str, entry_event_ids: Iterable[int]
) -> set[int]:
    """Which of these entry events already have their run row (the user was entered)."""
    wanted = sorted(set(entry_event_ids))
    if not wanted:
        return set()
    rows = await session.scalars(
        select(JourneyRun.entry_event_id).where(
            JourneyRun.journey == journey, JourneyRun.entry_event_id.in_(wanted)
        )
    )
    return set(rows)
