"""Due triggers: entries Nudge owes journeys at a time, not on an event (inactivity, dates).

Rows are written by the router as it routes (a watched event resets an inactivity count, a
date event plans a reminder) and turned into events by the sweep (`take_due`, then
`outbox.add_event`, then `fired`, in one transaction). Every query the sweep makes reads the
partial index on unfired rows, so a sweep costs what is due, not what is stored.
Keyword-only; the caller commits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from engine.store.models import DueTrigger, User
from engine.store.rows import for_update, insert_for

INACTIVE = "inactive"
DATE = "date"


async def touch_inactive(
    session: AsyncSession,
    *,
    journey: str,
    window: timedelta,
    seen: Mapping[str, datetime],
    at: datetime,
) -> None:
    """The watched event happened for these users (user id -> when): each one's count
    starts again, due `window` later. An older sighting than the stored one changes nothing."""
    if not seen:
        return
    rows: list[dict[str, Any]] = [
        {
            "journey": journey,
            "user_id": user_id,
            "key": "",
            "kind": INACTIVE,
            "last_at": when,
            "due_at": when + window,
            "fired_at": None,
            "detail": {},
            "updated_at": at,
        }
        for user_id, when in sorted(seen.items())
    ]
    stmt = insert_for(session)(DueTrigger).values(rows)
    stmt = stmt.on_conflict_do_update(
        index_elements=["journey", "user_id", "key"],
        set_={
            "last_at": stmt.excluded.last_at,
            "due_at": stmt.excluded.due_at,
            "fired_at": None,
            "updated_at": stmt.excluded.updated_at,
        },
        where=(DueTrigger.last_at.is_(None)) | (DueTrigger.last_at < stmt.excluded.last_at),
    )
    await session.execute(stmt)


async def plan(session: AsyncSession, *, rows: Sequence[Mapping[str, Any]], at: datetime) -> None:
    """Plan date entries: each row has `journey`, `user_id`, `key`, `due_at`, `detail`. A
    newer plan for the same (journey, user, key) replaces the old one, fired or not."""
    if not rows:
        return
    values = [{**row, "kind": DATE, "fired_at": None, "updated_at": at} for row in rows]
    stmt = insert_for(session)(DueTrigger).values(values)
    stmt = stmt.on_conflict_do_update(
        index_elements=["journey", "user_id", "key"],
        set_={
            "due_at": stmt.excluded.due_at,
            "detail": stmt.excluded.detail,
            "fired_at": None,
            "updated_at": stmt.excluded.updated_at,
        },
    )
    await session.execute(stmt)


async def cancel(session: AsyncSession, *, journey: str, user_id: str, key: str = "") -> None:
    """Drop a planned entry that has not fired (the journey's exit event came first)."""
    await session.execute(
        delete(DueTrigger).where(
            DueTrigger.journey == journey,
            DueTrigger.user_id == user_id,
            DueTrigger.key == key,
            DueTrigger.fired_at.is_(None),
        )
    )


async def cancel_many(session: AsyncSession, *, journey: str, user_ids: Sequence[str]) -> None:
    """`cancel` for many users of a journey that is not keyed (their date is gone)."""
    if user_ids:
        await session.execute(
            delete(DueTrigger).where(
                DueTrigger.journey == journey,
                DueTrigger.user_id.in_(sorted(set(user_ids))),
                DueTrigger.key == "",
                DueTrigger.fired_at.is_(None),
            )
        )


async def changed_profiles(
    session: AsyncSession, *, since: tuple[datetime, str] | None, until: datetime, limit: int
) -> list[User]:
    """Users whose profile changed after the cursor `since` (updated_at, id) and no later
    than `until`, in that order (keyset pagination on the `updated_at` index)."""
    query = select(User).where(User.updated_at <= until, User.erased_at.is_(None))
    if since is not None:
        stamp, uid = since
        query = query.where(
            or_(User.updated_at > stamp, and_(User.updated_at == stamp, User.id > uid))
        )
    query = query.order_by(User.updated_at, User.id).limit(limit)
    return list(await session.scalars(query))


async def take_due(
    session: AsyncSession, *, at: datetime, limit: int, journeys: Sequence[str] | None = None
) -> list[DueTrigger]:
    """Unfired rows due at or before `at` (of `journeys`, when given), oldest first, locked
    for this transaction (Postgres `SKIP LOCKED`: two sweeps never take the same row)."""
    query = select(DueTrigger).where(DueTrigger.fired_at.is_(None), DueTrigger.due_at <= at)
    if journeys is not None:
        query = query.where(DueTrigger.journey.in_(sorted(journeys)))
    query = query.order_by(DueTrigger.due_at).limit(limit)
    return list(await session.scalars(for_update(session, query, skip_locked=True)))


def fired(row: DueTrigger, *, at: datetime, again_at: datetime | None = None) -> None:
    """The row's event was written at `at`; `again_at`: it recurs (an anniversary) then."""
    if again_at is not None:
        row.due_at, row.updated_at = again_at, at
    else:
        row.fired_at, row.updated_at = at, at


async def next_due(
    session: AsyncSession, *, journeys: Sequence[str] | None = None
) -> datetime | None:
    """When the earliest unfired row (of `journeys`, when given) falls due (None: nothing
    is planned)."""
    query = select(func.min(DueTrigger.due_at)).where(DueTrigger.fired_at.is_(None))
    if journeys is not None:
        query = query.where(DueTrigger.journey.in_(sorted(journeys)))
    found: datetime | None = await session.scalar(query)
    return found


async def forget(session: AsyncSession, *, user_id: str) -> None:
    """Erasure: the user's planned entries go (they carry event properties)."""
    await session.execute(delete(DueTrigger).where(DueTrigger.user_id == user_id))
