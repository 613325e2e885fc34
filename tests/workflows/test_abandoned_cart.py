"""Abandoned cart at its real durations (an hour, a night, a DST change), in virtual time on
the time-skipping kit: the push after `nudge_after`, held by quiet hours in the user's zone,
the last-call SMS at 10:00 local the next morning, and the ways out (checkout, small cart)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from engine.config.nudge_toml import NudgeConfig
from engine.testing.pytest_plugin import EnvFactory
from tests.kit.clock import next_local, next_spring_forward
from workflows import AbandonedCart

QUIET = {"quiet_hours": {"start": "21:00", "end": "08:00"}}


async def test_tokyo_night_defers_to_the_end_of_quiet_hours(journey_env: EnvFactory) -> None:
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


async def test_checkout_within_the_hour_sends_nothing(journey_env: EnvFactory) -> None:
    env = await journey_env(AbandonedCart, start_at=next_local("UTC", time(12, 0)))
    ann = await env.user("ann")
    await env.emit(ann, "Cart Updated", {"item_count": 1})
    await env.advance(minutes=40)
    await env.emit(ann, "Checkout Started")
    await env.advance(hours=2)
    assert (await env.run(ann, "abandoned_cart")).outcome == "checked_out"
    assert await env.messages(ann) == []


async def test_a_small_cart_gets_the_push_only(journey_env: EnvFactory) -> None:
    env = await journey_env(AbandonedCart, start_at=next_local("UTC", time(12, 0)))
    bo = await env.user("bo")
    await env.emit(bo, "Cart Updated", {"item_count": 1, "value": 5})
    await env.advance(hours=2)
    assert [m.template for m in await env.sent(bo)] == ["cart_reminder"]
    assert (await env.run(bo, "abandoned_cart")).outcome == "push_only"


async def test_an_order_mid_delay_ends_the_run_before_the_last_call(
    journey_env: EnvFactory,
) -> None:
    env = await journey_env(AbandonedCart, start_at=next_local("UTC", time(12, 0)))
    cy = await env.user("cy")
    await env.emit(cy, "Cart Updated", {"item_count": 3, "value": 80})
    await env.advance(hours=2)  # the push went; the run sleeps until 10:00 tomorrow
    await env.emit(cy, "Order Completed")
    await env.advance(days=1)
    run = await env.run(cy, "abandoned_cart")
    assert (run.status, run.outcome) == ("exited", "exited:Order Completed")
    assert [m.template for m in await env.sent(cy)] == ["cart_reminder"]
