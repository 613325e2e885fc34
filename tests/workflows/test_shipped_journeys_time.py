"""The shipped journeys at their REAL durations (days, nights, DST), on time skipping."""

from __future__ import annotations

import time as wall
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from temporalio.client import Client

from engine.config.nudge_toml import NudgeConfig
from engine.testing import pytest_plugin as testing_pytest
from engine.testing.pytest_plugin import EnvFactory
from workflows import AbandonedCart, Onboarding

journey_env = testing_pytest.journey_env  # the kit's fixture (or: pytest_plugins in conftest)


@pytest.fixture(scope="session")
def nudge_temporal_client(temporal_client: Client) -> Client:
    """Reuse the session's dev server (tests/conftest.py: time skipping on)."""
    return temporal_client


def next_local(zone: str, at: time, *, after_days: int = 1) -> datetime:
    """`at` local time in `zone`, `after_days` local days from today (aware)."""
    tz = ZoneInfo(zone)
    day = datetime.now(tz).date() + timedelta(days=after_days)
    return datetime.combine(day, at, tzinfo=tz)


async def test_onboarding_three_days(journey_env: EnvFactory) -> None:
    t0 = wall.monotonic()
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
        assert abs(m.at - (start + timedelta(days=days))) < timedelta(minutes=1), (m, days)
    run = await env.run(ann, "onboarding")
    assert run.outcome == "onboarded"
    print("wall", wall.monotonic() - t0)


QUIET = {"quiet_hours": {"start": "21:00", "end": "08:00"}}


async def test_abandoned_cart_tokyo_night_defers_to_the_end_of_quiet_hours(
    journey_env: EnvFactory,
) -> None:
    start = next_local("Asia/Tokyo", time(20, 30))
    env = await journey_env(AbandonedCart, config=NudgeConfig.model_validate(QUIET), start_at=start)
    kei = await env.user("kei", zone="Asia/Tokyo")
    await env.emit(kei, "Cart Updated", {"item_count": 2})
    await env.advance(hours=15)
    reminder, last_call = await env.sent(kei)
    # Due at 21:30 local (1 h after the cart), held by quiet hours until 08:00 local.
    assert (reminder.template, reminder.channel) == ("cart_reminder", "push")
    assert reminder.local.date() == start.date() + timedelta(days=1)
    assert reminder.local_time == "08:00"
    assert (last_call.template, last_call.channel, last_call.local_time) == (
        "cart_last_call",
        "sms",
        "10:00",
    )
    assert last_call.at.astimezone(UTC).hour == 1  # 10:00 JST = 01:00 UTC
    assert (await env.run(kei, "abandoned_cart")).outcome == "reminded"


async def test_push_cap_defers_the_second_push(journey_env: EnvFactory) -> None:
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
        assert abs(got - timedelta(hours=want)) < timedelta(minutes=1), offsets


def next_spring_forward(zone: str) -> date:
    """The next local date on which `zone` moves its clocks forward."""
    tz = ZoneInfo(zone)
    day = datetime.now(tz).date() + timedelta(days=2)
    for _ in range(400):
        before = datetime.combine(day - timedelta(days=1), time(12), tzinfo=tz).utcoffset()
        after = datetime.combine(day, time(12), tzinfo=tz).utcoffset()
        assert before is not None and after is not None
        if after > before:
            return day
        day += timedelta(days=1)
    raise AssertionError(f"{zone} has no DST change within a year")


async def test_last_call_after_spring_forward_is_at_local_ten(journey_env: EnvFactory) -> None:
    zone = "America/New_York"
    change = next_spring_forward(zone)
    start = datetime.combine(change - timedelta(days=1), time(20, 0), tzinfo=ZoneInfo(zone))
    env = await journey_env(AbandonedCart, start_at=start)
    ny = await env.user("ny", zone=zone)
    await env.emit(ny, "Cart Updated")
    await env.advance(hours=16)
    reminder, last_call = await env.sent(ny)
    assert reminder.local_time == "21:00"
    assert last_call.template == "cart_last_call"
    assert last_call.local.date() == change
    assert last_call.local_time == "10:00"
    # 10:00 EDT (UTC-4) after the change, not 15:00 UTC as the evening's EST offset would say.
    assert last_call.at.astimezone(UTC).strftime("%H:%M") == "14:00"
