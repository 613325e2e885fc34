"""engine.store.runs: the router's routing state in `journey_runs`, on Postgres and SQLite.
Entries in bulk, open runs and last entries for many users at once, and the bookkeeping
that closes rows, which waits (`RunRowMissing`) for the router's row of a fast run."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from engine.store import outbox, runs
from engine.store.users import ensure_user
from schemas.common import RunStatus
from tests.kit.db import sessions

Sessions = async_sessionmaker[AsyncSession]
T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


async def user(session: AsyncSession) -> str:
    return (await ensure_user(session, external_id=f"u-{uuid.uuid4()}")).id


async def entry_event(session: AsyncSession, user_id: str) -> int:
    message_id = f"e-{uuid.uuid4()}"
    await outbox.add_event(
        session, user_id=user_id, name="Go", message_id=message_id, properties={}, source="test"
    )
    claimed = await outbox.claim(session, limit=1000)
    return next(e.id for e in claimed if e.message_id == message_id)


def entry(
    user_id: str, event_id: int, journey: str = "j", key: str | None = None, **extra: Any
) -> dict[str, Any]:
    workflow_id = f"journey/{journey}/{user_id}" + (f"/{key}" if key else "")
    return {
        "journey": journey,
        "user_id": user_id,
        "key": key,
        "workflow_id": workflow_id,
        "run_id": f"run-{uuid.uuid4()}",
        "entry_event_id": event_id,
        "version": "test",
        "started_at": T0,
        **extra,
    }


async def test_entries_are_open_and_a_repeated_entry_keeps_the_first_row(db: Sessions) -> None:
    async with db() as session, session.begin():
        uid = await user(session)
        first = entry(uid, await entry_event(session, uid))
        await runs.add_entries(session, [first])
        await runs.add_entries(session, [{**first, "run_id": "a-retried-routing"}])
        await runs.add_entries(session, [])
    async with db() as session:
        [row] = await runs.runs_of_user(session, user_id=uid)
    assert (row.status, row.run_id, row.journey) == (RunStatus.OPEN, first["run_id"], "j")


async def test_open_runs_of_many_users_oldest_first(db: Sessions) -> None:
    async with db() as session, session.begin():
        ann, bob, cid = await user(session), await user(session), await user(session)
        rows = [
            entry(ann, await entry_event(session, ann), journey="one"),
            entry(bob, await entry_event(session, bob), journey="one"),
            entry(ann, await entry_event(session, ann), journey="two"),
        ]
        await runs.add_entries(session, rows)
        await runs.mark_finished(
            session,
            workflow_id=rows[1]["workflow_id"],
            run_id=rows[1]["run_id"],
            status=RunStatus.COMPLETED,
            outcome="done",
        )
    async with db() as session:
        found = await runs.open_runs_of(session, user_ids=[ann, bob, cid, ann])
        assert {u: [r.journey for r in rs] for u, rs in found.items()} == {ann: ["one", "two"]}
        assert await runs.open_runs_of(session, user_ids=[]) == {}
        assert [r.journey for r in await runs.open_runs(session, user_id=ann)] == ["one", "two"]


async def test_last_entries_are_the_newest_per_journey_user_and_key(db: Sessions) -> None:
    async with db() as session, session.begin():
        ann, bob = await user(session), await user(session)
        rows = [
            entry(ann, await entry_event(session, ann), started_at=T0),
            entry(ann, await entry_event(session, ann), started_at=T0 + timedelta(days=1)),
            entry(ann, await entry_event(session, ann), key="c1"),
            entry(ann, await entry_event(session, ann), journey="other"),
            entry(bob, await entry_event(session, bob)),
        ]
        await runs.add_entries(session, rows)
    async with db() as session:
        found = await runs.last_entries(session, user_ids=[ann, bob], journeys=["j"])
        assert set(found) == {("j", ann, None), ("j", ann, "c1"), ("j", bob, None)}
        assert found[("j", ann, None)].started_at == T0 + timedelta(days=1)
        assert await runs.last_entries(session, user_ids=[ann], journeys=[]) == {}
        last = await runs.last_entry(session, journey="other", user_id=ann, key=None)
        assert last is not None and last.run_id == rows[3]["run_id"]
        assert await runs.last_entry(session, journey="other", user_id=bob, key=None) is None


async def test_mark_finished_waits_for_the_routers_row_then_closes_it_once(
    db: Sessions,
) -> None:
    async with db() as session, session.begin():
        uid = await user(session)
        row = entry(uid, await entry_event(session, uid))
    finished: dict[str, Any] = {
        "workflow_id": row["workflow_id"],
        "run_id": row["run_id"],
        "status": RunStatus.EXITED,
        "outcome": "exited:Stop",
        "step": "wait:Ping",
        "variant": "b",
        "version": "v2",
        "at": T0 + timedelta(hours=1),
    }
    # The run ended before the router that started it committed the row.
    async with db() as session, session.begin():
        with pytest.raises(runs.RunRowMissing):
            await runs.mark_finished(session, **finished)
    async with db() as session, session.begin():
        await runs.add_entries(session, [row])
    for _ in range(2):  # a retried activity: idempotent
        async with db() as session, session.begin():
            await runs.mark_finished(session, **finished)
    async with db() as session:
        [closed] = await runs.runs_of_user(session, user_id=uid)
    assert (closed.status, closed.outcome, closed.step, closed.variant, closed.version) == (
        RunStatus.EXITED,
        "exited:Stop",
        "wait:Ping",
        "b",
        "v2",
    )
    assert closed.ended_at == T0 + timedelta(hours=1)


async def test_a_row_the_router_commits_between_the_two_statements_is_still_updated(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race that left a fast run open for good: the bookkeeping's update finds no row,
    the router commits it, and the check that follows finds it (READ COMMITTED: each
    statement sees what was committed when it began). The row must be closed (converted),
    not left open as if the update had done it."""
    async with sessions(postgres_url) as maker:
        async with maker() as session, session.begin():
            finishing, converting = await user(session), await user(session)
            rows = {
                (row := entry(uid, await entry_event(session, uid)))["workflow_id"]: row
                for uid in (finishing, converting)
            }
        check = runs._require_row

        async def router_commits_meanwhile(
            session: AsyncSession, *, workflow_id: str, run_id: str
        ) -> None:
            async with maker() as router, router.begin():
                await runs.add_entries(router, [rows[workflow_id]])
            await check(session, workflow_id=workflow_id, run_id=run_id)

        monkeypatch.setattr(runs, "_require_row", router_commits_meanwhile)
        ids = [{"workflow_id": w, "run_id": r["run_id"]} for w, r in rows.items()]
        async with maker() as session, session.begin():
            await runs.mark_finished(
                session, **ids[0], status=RunStatus.EXITED, outcome="exited:Stop"
            )
            await runs.mark_converted(session, **ids[1], message_id="m1", at=T0)
        async with maker() as session:
            [finished] = await runs.runs_of_user(session, user_id=finishing)
            [converted] = await runs.runs_of_user(session, user_id=converting)
    assert (finished.status, finished.outcome) == (RunStatus.EXITED, "exited:Stop")
    assert (converted.converted_at, converted.conversion_message_id) == (T0, "m1")


async def test_mark_finished_without_a_run_id_never_waits(db: Sessions) -> None:
    async with db() as session, session.begin():
        await runs.mark_finished(
            session,
            workflow_id="journey/j/u_nobody",
            run_id=None,
            status=RunStatus.COMPLETED,
            outcome="done",
        )


async def test_mark_converted_waits_for_the_row_and_records_once(db: Sessions) -> None:
    async with db() as session, session.begin():
        uid = await user(session)
        row = entry(uid, await entry_event(session, uid))
    goal: dict[str, Any] = {
        "workflow_id": row["workflow_id"],
        "run_id": row["run_id"],
        "message_id": "m_first",
        "at": T0,
    }
    async with db() as session, session.begin():
        with pytest.raises(runs.RunRowMissing):
            await runs.mark_converted(session, **goal)
    async with db() as session, session.begin():
        await runs.add_entries(session, [row])
    async with db() as session, session.begin():
        await runs.mark_converted(session, **goal)
    async with db() as session, session.begin():
        await runs.mark_converted(session, **{**goal, "message_id": "m_later", "at": T0})
    async with db() as session:
        [converted] = await runs.runs_of_user(session, user_id=uid)
    assert (converted.converted_at, converted.conversion_message_id) == (T0, "m_first")
