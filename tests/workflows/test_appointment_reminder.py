"""The appointment reminder in virtual time: a date trigger "1 day before, 09:00 local" for
an appointment in Sydney, across the day Sydney moves its clocks forward; a cancelled
appointment is never reminded of."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from engine.testing.pytest_plugin import EnvFactory
from tests.kit.clock import next_spring_forward
from workflows import AppointmentReminder

SYDNEY = ZoneInfo("Australia/Sydney")


async def test_reminded_at_9_local_the_day_before_across_a_dst_change(
    journey_env: EnvFactory,
) -> None:
    change = next_spring_forward("Australia/Sydney")  # 02:00 -> 03:00 that morning
    start = datetime.combine(change - timedelta(days=3), time(12, 0), tzinfo=SYDNEY)
    env = await journey_env(AppointmentReminder, start_at=start)
    kim = await env.user("kim", zone="Australia/Sydney", traits={"first_name": "Kim"})
    lee = await env.user("lee", zone="Australia/Sydney")
    starts_at = datetime.combine(change + timedelta(days=1), time(14, 30), tzinfo=SYDNEY)
    booked = {"appointment_id": "a-1", "starts_at": starts_at.isoformat()}
    await env.emit(kim, "Appointment Booked", booked)
    await env.emit(lee, "Appointment Booked", booked)
    await env.advance(days=1)
    await env.emit(lee, "Appointment Cancelled", {"appointment_id": "a-1"})
    await env.advance(days=3)

    day_before, day_of = await env.sent(kim)
    assert (day_before.template, day_before.channel) == ("day_before", "push")
    # 09:00 on the clock after the change is 22:00 UTC, not the 23:00 of the day before.
    due = datetime.combine(change, time(9, 0), tzinfo=SYDNEY).astimezone(UTC)
    assert due.hour == 22
    assert timedelta(0) <= day_before.at - due < timedelta(minutes=1)
    assert day_before.local.date() == change and day_before.local_time == "09:00"
    assert (day_of.template, day_of.channel, day_of.local_time) == ("day_of", "sms", "08:00")
    assert day_of.local.date() == starts_at.date()
    run = await env.run(kim, "appointment_reminder")
    assert run.outcome == "reminded"
    assert await env.messages(lee) == [] and await env.runs(lee) == []
