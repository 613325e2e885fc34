"""engine.store.due and engine.store.locations on Postgres and SQLite: an inactivity count
restarts on a newer sighting only, a date plan moves and cancels, the sweep takes only what
is due, and a location reports the fences of the one before it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from engine.store import due, locations
from engine.store.users import ensure_user

Sessions = async_sessionmaker[AsyncSession]
T0 = datetime(2027, 5, 1, 12, 0, tzinfo=UTC)
DAYS_14 = timedelta(days=14)


async def test_inactivity_counts_restart_and_due_rows_fire_once(db: Sessions) -> None:
    async with db() as session, session.begin():
        ann = (await ensure_user(session, external_id=f"ann-{uuid.uuid4()}")).id
        bo = (await ensure_user(session, external_id=f"bo-{uuid.uuid4()}")).id
        seen = {ann: T0, bo: T0}
        await due.touch_inactive(session, journey="wb", window=DAYS_14, seen=seen, at=T0)
        # bo comes back on day 13; an older sighting of ann (arriving late) changes nothing.
        late = {ann: T0 - timedelta(days=1), bo: T0 + timedelta(days=13)}
        await due.touch_inactive(session, journey="wb", window=DAYS_14, seen=late, at=T0)
    async with db() as session, session.begin():
        assert await due.next_due(session) == T0 + DAYS_14
        assert await due.take_due(session, at=T0 + DAYS_14 - timedelta(seconds=1), limit=10) == []
        [row] = await due.take_due(session, at=T0 + DAYS_14, limit=10)
        assert (row.user_id, row.last_at) == (ann, T0)
        due.fired(row, at=T0 + DAYS_14)
    async with db() as session, session.begin():
        assert await due.take_due(session, at=T0 + DAYS_14, limit=10) == []
        assert await due.next_due(session) == T0 + timedelta(days=27)
        # ann comes back after firing: counting again, unfired.
        back = {ann: T0 + timedelta(days=20)}
        await due.touch_inactive(session, journey="wb", window=DAYS_14, seen=back, at=T0)
    async with db() as session:
        rows = await due.take_due(session, at=T0 + timedelta(days=40), limit=10)
        assert sorted(r.user_id for r in rows) == sorted([ann, bo])


async def test_date_plans_move_and_cancel(db: Sessions) -> None:
    async with db() as session, session.begin():
        kim = (await ensure_user(session, external_id=f"kim-{uuid.uuid4()}")).id
        row = {"journey": "ar", "user_id": kim, "key": "a1", "due_at": T0, "detail": {"x": 1}}
        await due.plan(session, rows=[row], at=T0)
        await due.plan(session, rows=[{**row, "due_at": T0 + DAYS_14}], at=T0)  # moved
        await due.plan(session, rows=[{**row, "key": "a2"}], at=T0)
        await due.cancel(session, journey="ar", user_id=kim, key="a2")
    async with db() as session, session.begin():
        [planned] = await due.take_due(session, at=T0 + timedelta(days=30), limit=10)
        assert (planned.key, planned.due_at, planned.detail) == ("a1", T0 + DAYS_14, {"x": 1})


async def test_a_location_reports_the_fences_of_the_one_before(db: Sessions) -> None:
    async with db() as session, session.begin():
        uid = (await ensure_user(session, external_id=f"loc-{uuid.uuid4()}")).id
        first = await locations.move(
            session, user_id=uid, latitude=1, longitude=2, taken_at=T0, geofences=[], at=T0
        )
        inside = await locations.move(
            session,
            user_id=uid,
            latitude=1.1,
            longitude=2,
            taken_at=T0 + timedelta(minutes=5),
            geofences=["office"],
            at=T0,
        )
        stale = await locations.move(
            session, user_id=uid, latitude=9, longitude=9, taken_at=T0, geofences=[], at=T0
        )
        assert (first, inside, stale) == (None, [], ["office"])
        where = await locations.last_location(session, user_id=uid)
        assert where is not None and (where.latitude, where.geofences) == (1.1, ["office"])
