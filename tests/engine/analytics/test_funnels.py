"""engine.analytics on Postgres and SQLite: a funnel, its attribution, an experiment
readout and the journey list, from rows whose counts are worked out by hand below."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from engine.analytics import experiment_readout, journey_stats, list_journeys
from engine.store import experiments, outbox
from engine.store.models import JourneyRun, Message
from engine.store.users import ensure_user
from schemas.common import MessageStatus, RunStatus
from tests.kit.db import sessions

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)

# run: (variant, status, outcome, converted)
RUNS = {
    "r1": ("a", RunStatus.COMPLETED, "reminded", True),
    "r2": ("a", RunStatus.COMPLETED, "reminded", False),
    "r3": ("a", RunStatus.EXITED, "exited:Order Completed", False),
    "r4": ("b", RunStatus.OPEN, None, False),
    "r5": ("b", RunStatus.COMPLETED, "checked_out", True),
    "r6": ("b", RunStatus.TERMINATED, "terminated", False),
}
# message: (run, step, status, reason, minutes after T0, extra)
MESSAGES: list[tuple[str, str, MessageStatus, str | None, int, dict[str, Any]]] = [
    ("r1", "first", MessageStatus.DELIVERED, None, 1, {}),
    ("r1", "first", MessageStatus.SENT, None, 1, {}),  # a second device: still one run
    ("r2", "first", MessageStatus.SENT, None, 1, {"deferrals": 1}),
    ("r3", "first", MessageStatus.SUPPRESSED, "no_consent", 1, {}),
    ("r4", "first", MessageStatus.FAILED, "invalid", 1, {}),
    ("r5", "first", MessageStatus.DELIVERED, None, 1, {"clicked_at": T0}),
    ("r1", "second", MessageStatus.SENT, None, 30, {}),
    ("r2", "second", MessageStatus.SUPPRESSED, "capped", 30, {}),
]


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    async with sessions(database_url) as maker:
        async with maker() as session, session.begin():
            await _rows(session)
        yield maker


async def _run(session: AsyncSession, journey: str, run_id: str, started: datetime) -> JourneyRun:
    user = await ensure_user(session, external_id=f"u-{uuid.uuid4()}")
    await outbox.add_event(
        session, user_id=user.id, name="Go", message_id=run_id, properties={}, source="test"
    )
    event = next(e for e in await outbox.claim(session, limit=100) if e.message_id == run_id)
    row = JourneyRun(
        journey=journey,
        user_id=user.id,
        workflow_id=f"journey/{journey}/{user.id}",
        run_id=run_id,
        entry_event_id=event.id,
        status=RunStatus.OPEN,
        version="v1",
        started_at=started,
    )
    session.add(row)
    await session.flush()
    return row


async def _rows(session: AsyncSession) -> None:
    runs = {}
    for n, (run_id, (variant, status, outcome, _)) in enumerate(RUNS.items()):
        row = await _run(session, "j", run_id, T0 + timedelta(minutes=n))
        await experiments.record_assignment(
            session,
            workflow_id=row.workflow_id,
            run_id=run_id,
            journey="j",
            experiment="exp",
            variant=variant,
            arms=["a", "b"],
            holdout=0.0,
            at=T0,
        )
        row.status, row.outcome = status, outcome
        runs[run_id] = row
    await _run(session, "j", "old", T0 - timedelta(days=1))  # before the range
    await _run(session, "other", "x1", T0)
    for n, (run_id, step, state, reason, minutes, extra) in enumerate(MESSAGES):
        run = runs[run_id]
        at = T0 + timedelta(minutes=minutes)
        session.add(
            Message(
                id=f"m{n}",
                idempotency_key=f"{run_id}/{step}/{n}",
                user_id=run.user_id,
                journey="j",
                workflow_id=run.workflow_id,
                run_id=run_id,
                step=step,
                template=f"tpl_{step}",
                channel="push",
                status=state,
                reason=reason,
                created_at=at,
                updated_at=at,
                **extra,
            )
        )
    # Conversions: r1 on its second message (m6), r5 on its only one (m5).
    for run_id, message_id in (("r1", "m6"), ("r5", "m5")):
        runs[run_id].converted_at = T0 + timedelta(hours=1)
        runs[run_id].conversion_message_id = message_id


async def test_the_funnel_counts_runs_per_step(db: async_sessionmaker[AsyncSession]) -> None:
    async with db() as session:
        stats = await journey_stats(session, "j", since=T0, until=T0 + timedelta(days=1))
    assert (stats.entered, stats.open, stats.converted) == (6, 1, 2)
    assert stats.finished == {"reminded": 2, "checked_out": 1}
    assert stats.exited == {"Order Completed": 1, "terminated": 1}
    assert stats.variants == ["a", "b"]
    first, second = stats.steps
    assert first.model_dump() == {
        "step": "first",
        "reached": 5,
        "sent": 3,
        "delivered": 2,
        "clicked": 1,
        "opened": 0,
        "failed": 1,
        "deferred": 1,
        "suppressed": {"no_consent": 1},
    }
    assert (second.step, second.reached, second.sent, second.suppressed) == (
        "second",
        2,
        1,
        {"capped": 1},
    )
    touches = {(a.step, a.last_touch, a.any_touch) for a in stats.attribution}
    assert touches == {("first", 1, 2), ("second", 1, 1)}


async def test_filters_by_variant_version_and_range(db: async_sessionmaker[AsyncSession]) -> None:
    async with db() as session:
        arm_a = await journey_stats(session, "j", since=T0, variant="a")
        everything = await journey_stats(session, "j")
        other_version = await journey_stats(session, "j", version="v2")
    assert (arm_a.entered, arm_a.converted, [s.reached for s in arm_a.steps]) == (3, 1, [3, 2])
    assert everything.entered == 7  # the run before the range too
    assert other_version.entered == 0 and other_version.steps == []


async def test_readout_and_journey_list(db: async_sessionmaker[AsyncSession]) -> None:
    async with db() as session:
        readout = await experiment_readout(session, "exp")
        unknown = await experiment_readout(session, "nope")
        journeys = await list_journeys(session)
    assert (readout.journey, readout.control) == ("j", "a")
    a, b = readout.arms
    assert (a.variant, a.users, a.conversions, a.lift) == ("a", 3, 1, None)
    assert (b.variant, b.users, b.conversions) == ("b", 3, 1)
    assert b.lift == pytest.approx(0.0) and b.p_value == pytest.approx(1.0)
    assert len(readout.warnings) == 4  # both arms short of users and of conversions
    assert unknown.arms == [] and unknown.warnings == ["no run was assigned an arm of 'nope' yet"]
    assert [(j.name, j.entered, j.open, j.converted) for j in journeys] == [
        ("j", 7, 2, 2),
        ("other", 1, 1, 0),
    ]
