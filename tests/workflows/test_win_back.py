"""Win-back in virtual time on the time-skipping kit: an offer picked by the experiment arm,
a last offer by SMS three days later unless the user came back; the holdout gets nothing
and is still measured."""

from __future__ import annotations

from datetime import time

from sqlalchemy import select

from engine.store import experiments
from engine.store.models import JourneyRun, Message
from engine.testing.kit import JourneyEnv, TestUser
from engine.testing.pytest_plugin import EnvFactory
from schemas.common import RunStatus
from tests.kit.clock import next_local
from workflows import WinBack

OFFERS = {"discount": "offer_discount", "content": "offer_content"}


async def _entered(env: JourneyEnv, user: TestUser) -> str:
    """Start the user's run; returns its arm."""
    await env.emit(user, "User Inactive")
    run = await env.run(user, "win_back")
    assert run.state is not None and run.state.variant is not None
    # `split` recorded the arm on the open run's row at once, and the experiment's arms.
    async with env.context.sessions() as session:
        row = await session.scalar(
            select(JourneyRun)
            .where(JourneyRun.workflow_id == run.workflow_id)
            .order_by(JourneyRun.id.desc())
        )
        declared = await experiments.get(session, name="win_back_offer")
    assert row is not None and row.status == RunStatus.OPEN
    assert (row.experiment, row.variant) == ("win_back_offer", run.state.variant)
    assert declared is not None and declared.arms == ["discount", "content"]
    return run.state.variant


async def test_no_return_gets_the_offer_then_the_last_offer(journey_env: EnvFactory) -> None:
    env = await journey_env(WinBack, start_at=next_local("UTC", time(12, 0)))
    ann = await env.user("ann", traits={"first_name": "Ann"})
    arm = await _entered(env, ann)
    await env.advance(days=4)
    run = await env.run(ann, "win_back")
    assert run.outcome == "offered"
    messages = [(m.template, m.status, m.reason) for m in await env.messages(ann)]
    async with env.context.sessions() as session:
        variants = set(await session.scalars(select(Message.variant)))
    assert variants == {arm}  # each message records the arm too
    if arm == "holdout":
        assert messages == [
            ("offer_discount", "suppressed", "holdout"),
            ("last_offer", "suppressed", "holdout"),
        ]
    else:
        assert messages == [(OFFERS[arm], "sent", None), ("last_offer", "sent", None)]


async def test_coming_back_ends_it_returned_and_converts(journey_env: EnvFactory) -> None:
    env = await journey_env(WinBack, start_at=next_local("UTC", time(12, 0)))
    bo = await env.user("bo")
    arm = await _entered(env, bo)
    await env.advance(days=1)
    await env.emit(bo, "App Opened")
    await env.advance(days=3)
    run = await env.run(bo, "win_back")
    assert run.outcome == "returned"
    assert run.state is None or run.state.converted
    templates = [m.template for m in await env.messages(bo)]
    assert templates == [OFFERS.get(arm, "offer_discount")]  # no last offer


async def test_the_arm_is_the_same_on_every_entry(journey_env: EnvFactory) -> None:
    env = await journey_env(WinBack, start_at=next_local("UTC", time(12, 0)))
    cy = await env.user("cy")
    first = await _entered(env, cy)
    await env.advance(days=31)  # past the 3-day wait and the 30-day re-entry
    second = await _entered(env, cy)
    assert len(await env.runs(cy)) == 2
    assert first == second
