"""engine.store.outbox, the router's side: `claim` gives each user's unrouted events as a
prefix of that user's backlog, on Postgres and SQLite; on Postgres, routers claiming at the
same time never get one user's events out of order."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from engine.store import outbox
from engine.store.models import Event
from engine.store.users import ensure_user, existing_users
from schemas.events import TrackCall
from tests.kit.db import sessions

Sessions = async_sessionmaker[AsyncSession]
AT = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def pg(postgres_url: str) -> AsyncIterator[Sessions]:
    async with sessions(postgres_url) as maker:
        yield maker


async def backlog(maker: Sessions, order: str) -> dict[str, int]:
    """Events in the order of `order` ("a1 b1 a2": user a's first, b's first, a's second),
    committed; returns their ids by label. Users are created as needed."""
    labels = order.split()
    async with maker() as session, session.begin():
        users = {}
        for user in sorted({label[0] for label in labels}):
            users[user] = (await ensure_user(session, external_id=f"{user}-{uuid.uuid4()}")).id
        for label in labels:
            await outbox.add_event(
                session,
                user_id=users[label[0]],
                name="Ping",
                message_id=f"{label}-{uuid.uuid4()}",
                properties={"label": label},
                source="test",
                received_at=AT,
            )
    async with maker() as session:
        rows = await session.execute(select(Event.id, Event.properties).order_by(Event.id))
        return {props["label"]: event_id for event_id, props in rows}


def labels(events: list[Event]) -> list[str]:
    return [str(e.properties["label"]) for e in events]


async def claim(maker: Sessions, *, limit: int, skip: tuple[int, ...] = ()) -> list[str]:
    """What one claim gets (rolled back: nothing is marked routed)."""
    async with maker() as session:
        got = labels(await outbox.claim(session, limit=limit, skip=skip))
        await session.rollback()
    return got


async def routed(maker: Sessions, ids: list[int]) -> None:
    async with maker() as session, session.begin():
        await outbox.mark_routed(session, ids=ids, at=AT)


async def test_the_oldest_events_come_first_up_to_the_limit(db: Sessions) -> None:
    await backlog(db, "a1 b1 a2 b2 a3")
    assert await claim(db, limit=2) == ["a1", "b1"]
    assert await claim(db, limit=3) == ["a1", "b1", "a2"]
    assert await claim(db, limit=100) == ["a1", "b1", "a2", "b2", "a3"]


async def test_nothing_to_claim(db: Sessions) -> None:
    assert await claim(db, limit=10) == []


async def test_routed_events_are_not_claimed_again(db: Sessions) -> None:
    ids = await backlog(db, "a1 b1 a2 b2")
    await routed(db, [ids["a1"], ids["b1"]])
    assert await claim(db, limit=10) == ["a2", "b2"]


async def test_a_skipped_event_holds_back_the_rest_of_its_user_only(db: Sessions) -> None:
    ids = await backlog(db, "a1 b1 a2 b2 a3")
    # a1 waits to be retried: none of a's later events may overtake it.
    assert await claim(db, limit=10, skip=(ids["a1"],)) == ["b1", "b2"]
    # b2 waits: b1 (before it) still goes, b's later events would not.
    assert await claim(db, limit=10, skip=(ids["b2"],)) == ["a1", "b1", "a2", "a3"]


async def test_what_a_claim_gives_a_user_is_always_a_prefix(db: Sessions) -> None:
    ids = await backlog(db, "a1 a2 b1 a3 b2 c1 a4")
    for limit in range(1, 9):
        for skip in [(), (ids["a2"],), (ids["b1"],), (ids["a2"], ids["c1"])]:
            got = await claim(db, limit=limit, skip=skip)
            for user in "abc":
                mine = [label for label in got if label[0] == user]
                assert mine == [f"{user}{n}" for n in range(1, len(mine) + 1)], (limit, skip)


async def test_an_event_another_router_holds_holds_back_its_user(pg: Sessions) -> None:
    ids = await backlog(pg, "a1 b1 a2 b2 a3")
    async with pg() as first, first.begin():
        assert labels(await outbox.claim(first, limit=1)) == ["a1"]  # locked until commit
        async with pg() as second:
            # a1 is locked (skipped), so a2 and a3 must wait for it; b's events are free.
            assert labels(await outbox.claim(second, limit=10)) == ["b1", "b2"]
            await second.rollback()
        await outbox.mark_routed(first, ids=[ids["a1"]], at=AT)
    assert await claim(pg, limit=10) == ["b1", "a2", "b2", "a3"]


async def test_concurrent_routers_keep_every_users_order(pg: Sessions) -> None:
    users = "abcdef"
    order = " ".join(f"{u}{n}" for n in range(1, 9) for u in users)
    ids = await backlog(pg, order)
    done: list[list[str]] = []  # batches, in the order they were taken (before commit)

    async def router(limit: int) -> None:
        while True:
            async with pg() as session, session.begin():
                events = await outbox.claim(session, limit=limit)
                if not events:
                    left = await session.scalar(
                        select(Event.id).where(Event.routed_at.is_(None)).limit(1)
                    )
                    if left is None:
                        return
                else:
                    done.append(labels(events))
                    await asyncio.sleep(0)  # let the others claim while this one holds
                    await outbox.mark_routed(session, ids=[e.id for e in events], at=AT)
            await asyncio.sleep(0)

    async with asyncio.timeout(120):
        await asyncio.gather(*(router(limit) for limit in (1, 2, 3, 5)))
    taken = [label for batch in done for label in batch]
    assert sorted(taken) == sorted(ids), "every event routed exactly once"
    for user in users:
        assert [label for label in taken if label[0] == user] == [f"{user}{n}" for n in range(1, 9)]


# -- the API's side: accept --------------------------------------------------------------


def _track(user: str, n: int, *, message_id: str | None = None) -> TrackCall:
    return TrackCall.model_validate(
        {"userId": user, "event": "Ping", "properties": {"n": n}, "messageId": message_id}
    )


async def test_accept_keeps_the_batch_order_for_known_and_new_users(db: Sessions) -> None:
    """Known users' events go in with their lookup (one statement on Postgres), new users'
    after them: each user's events still get ids in the order the batch gave them."""
    tag = uuid.uuid4().hex[:8]
    known, new = f"known-{tag}", f"new-{tag}"
    async with db() as session:
        await outbox.accept(session, [_track(known, 0)])
        await session.commit()
    batch = [
        _track(user, n, message_id=f"{user}-{n}") for n in range(1, 6) for user in (known, new)
    ]
    batch.append(_track(known, 1, message_id=f"{known}-1"))  # a repeat
    async with db() as session:
        accepted = await outbox.accept(session, batch)
        await session.commit()
    assert (accepted.stored, accepted.duplicates) == (10, 1)
    async with db() as session:
        users = await existing_users(session, [known, new])
        for user, first in ((known, 0), (new, 1)):
            rows = await session.execute(
                select(Event.properties)
                .where(Event.user_id == users[user], Event.name == "Ping")
                .order_by(Event.id)
            )
            assert [props["n"] for (props,) in rows] == list(range(first, 6))
