"""Users' last known locations, and the geofences each one is in.

The router calls `move` for every location event, in the user's order, and compares the
geofences it returns with the new ones: that difference is what `Geofence Entered` and
`Geofence Exited` events are made of. Keyword-only; the caller commits.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from engine.store.models import UserLocation
from engine.store.rows import for_update


async def move(
    session: AsyncSession,
    *,
    user_id: str,
    latitude: float,
    longitude: float,
    taken_at: datetime,
    geofences: Iterable[str],
    at: datetime,
) -> list[str] | None:
    """Store the user's new location and the geofences it lies in; return the geofences of
    the previous location (None: the first one known). A location older than the stored
    one is ignored (returns the stored geofences, so nothing crosses)."""
    inside = sorted(set(geofences))
    query = for_update(session, select(UserLocation).where(UserLocation.user_id == user_id))
    row = (await session.scalars(query)).first()
    if row is None:
        session.add(
            UserLocation(
                user_id=user_id,
                latitude=latitude,
                longitude=longitude,
                at=taken_at,
                geofences=inside,
                updated_at=at,
            )
        )
        await session.flush()
        return None
    before = list(row.geofences or [])
    if taken_at < row.at:
        return before  # a late fix never moves the user back
    row.latitude, row.longitude, row.at = latitude, longitude, taken_at
    row.geofences, row.updated_at = inside, at
    return before


async def last_location(session: AsyncSession, *, user_id: str) -> UserLocation | None:
    """The user's last known location, or None."""
    return await session.get(UserLocation, user_id)


async def forget(session: AsyncSession, *, user_id: str) -> None:
    """Erasure: the user's location goes."""
    await session.execute(delete(UserLocation).where(UserLocation.user_id == user_id))
