"""Onboarding at its real durations (three days), in virtual time on the time-skipping kit:
a welcome push, a profile nudge a day later, tips by SMS on day three; a completed profile
ends it early; a push cap holds the second push."""

from __future__ import annotations

from datetime import time, timedelta

from engine.config.nudge_toml import NudgeConfig
from engine.testing.pytest_plugin import EnvFactory
from tests.kit.clock import next_local
from workflows import Onboarding

CLOSE = timedelta(minutes=1)


async def test_three_messages_over_three_days(journey_env: EnvFactory) -> None:
    start = next_local("Europe/Paris", time(12, 0))
    env = await journey_env(Onboarding, start_at=start)
    ann = await env.user("ann", zone="Europe/Paris", traits={"first_name": "Ann"})
    await env.emit(ann, "Signed Up")
    await env.advance(days=3)
    sent = await env.sent(ann)
    assert [(m.template, m.channel) for m in sent] == [
        ("welcome", "push"),
        ("complete_profile", "push"),
        ("tips", "sms"),
    ]
    for m, days in zip(sent, (0, 1, 2), strict=True):
        assert abs(m.at - (start + timedelta(days=days))) < CLOSE, (m, days)
    assert (await env.run(ann, "onboarding")).outcome == "onboarded"


async def test_a_completed_profile_ends_it_early(journey_env: EnvFactory) -> None:
    env = await journey_env(Onboarding, start_at=next_local("UTC", time(9, 0)))
    bea = await env.user("bea")
    await env.emit(bea, "Signed Up")
    await env.advance(hours=30)  # welcome, then complete_profile at +24 h
    await env.emit(bea, "Profile Completed")
    await env.advance(days=2)
    run = await env.run(bea, "onboarding")
    assert (run.status, run.outcome) == ("exited", "exited:Profile Completed")
    assert [m.template for m in await env.sent(bea)] == ["welcome", "complete_profile"]


async def test_a_push_cap_defers_the_second_push(journey_env: EnvFactory) -> None:
    config = NudgeConfig.model_validate(
        {
            "caps": [{"channel": "push", "limit": 1, "per": "4h", "on_capped": "defer"}],
            "journeys": {"onboarding": {"day": "1h"}},
        }
    )
    start = next_local("UTC", time(9, 0))
    env = await journey_env(Onboarding, config=config, start_at=start)
    bo = await env.user("bo", traits={"first_name": "Bo"})
    await env.emit(bo, "Signed Up")
    await env.advance(hours=6)
    sent = await env.sent(bo)
    assert [m.template for m in sent] == ["welcome", "complete_profile", "tips"]
    offsets = [m.at - start for m in sent]
    # complete_profile was due at +1 h; the 1-per-4h push cap held it until +4 h.
    for got, want in zip(offsets, (0, 4, 5), strict=True):
        assert abs(got - timedelta(hours=want)) < CLOSE, offsets
