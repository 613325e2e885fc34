"""engine.analytics on Postgres and SQLite: a funnel, its attribution, an experiment
readout and the journey list, from rows whose counts are worked out by hand (`seed`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from engine.analytics import experiment_readout, journey_stats, list_journeys
from tests.engine.analytics.seed import T0, seed
from tests.kit.db import sessions


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    async with sessions(database_url) as maker:
        async with maker() as session, session.begin():
            await seed(session)
        yield maker


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
