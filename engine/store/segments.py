"""Who is in a segment: in bulk (keyset pages by user id), its size and a sample, or one
user. The condition comes from `engine.segments.compile`; erased and merged users are never
members. Reads only; nothing here commits."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from engine.segments.compile import to_sql
from engine.segments.language import Node
from engine.store.models import User
from engine.store.session import dialect_name


@dataclass(frozen=True)
class Member:
    """A member as a broadcast needs it: the internal id and the profile's zone (or None)."""

    user_id: str
    timezone: str | None


def condition(session: AsyncSession, tree: Node, *, at: datetime) -> ColumnElement[bool]:
    """The segment as a condition on `users` at instant `at`, live users only."""
    return to_sql(tree, now=at, dialect=dialect_name(session)) & (
        User.erased_at.is_(None) & User.merged_into.is_(None)
    )


async def page(
    session: AsyncSession,
    *,
    tree: Node,
    at: datetime,
    after: str | None = None,
    limit: int = 500,
    timezones: list[str | None] | None = None,
) -> list[Member]:
    """Up to `limit` members with ids greater than `after`, by id (keyset pagination: each
    page costs the same however deep it is). `timezones` keeps only users whose profile
    zone is one of them (None in the list: users without a zone)."""
    query = select(User.id, User.timezone).where(condition(session, tree, at=at))
    if after is not None:
        query = query.where(User.id > after)
    if timezones is not None:
        named = [z for z in timezones if z is not None]
        zone_test: ColumnElement[bool] = User.timezone.in_(named)
        if None in timezones:
            zone_test = zone_test | User.timezone.is_(None)
        query = query.where(zone_test)
    rows = await session.execute(query.order_by(User.id).limit(limit))
    return [Member(user_id, zone) for user_id, zone in rows]


async def size(session: AsyncSession, *, tree: Node, at: datetime) -> int:
    """How many users are in the segment at `at`."""
    found = await session.scalar(
        select(func.count()).select_from(User).where(condition(session, tree, at=at))
    )
    return int(found or 0)


async def sample(
    session: AsyncSession, *, tree: Node, at: datetime, limit: int = 10
) -> list[tuple[str, str | None]]:
    """A few members, as (internal id, external id), the first by id."""
    rows = await session.execute(
        select(User.id, User.external_id)
        .where(condition(session, tree, at=at))
        .order_by(User.id)
        .limit(limit)
    )
    return [(uid, external) for uid, external in rows]


async def zones(session: AsyncSession, *, tree: Node, at: datetime) -> dict[str | None, int]:
    """Members per profile zone (None: no zone set), for per-zone local-time waves."""
    rows = await session.execute(
        select(User.timezone, func.count())
        .where(condition(session, tree, at=at))
        .group_by(User.timezone)
    )
    return {zone: int(count) for zone, count in rows}


async def is_member(session: AsyncSession, *, tree: Node, at: datetime, user_id: str) -> bool:
    """Whether the user (internal id) is in the segment at `at`."""
    found = await session.scalar(
        select(User.id).where(User.id == user_id, condition(session, tree, at=at))
    )
    return found is not None
