"""Date triggers on a profile attribute: `OnDate("birthday", at=09:00, anniversary=True)`
enters the user at 09:00 on their own clock on the day, and plans next year's."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select

from engine.store.models import DueTrigger
from engine.testing.pytest_plugin import EnvFactory
from tests.journeys import TBirthday
from tests.kit import kit_templates
from tests.kit.clock import next_local

TOKYO = ZoneInfo("Asia/Tokyo")


async def test_a_birthday_on_the_profile_starts_a_run_at_9_local_every_year(
    journey_env: EnvFactory,
) -> None:
    start = next_local("Asia/Tokyo", time(18, 0))
    env = await journey_env(TBirthday, templates=kit_templates(), start_at=start)
    tomorrow = start.date() + timedelta(days=1)
    born = date(1992, tomorrow.month, tomorrow.day)  # a leap year: every day exists
    yui = await env.user("yui", zone="Asia/Tokyo", traits={"birthday": born.isoformat()})
    await env.user("ren", zone="Asia/Tokyo")  # no birthday: never entered
    await env.advance(days=3)
    [greeting] = await env.sent(yui)
    assert greeting.template == "greeting" and greeting.local_time == "09:00"
    assert greeting.local.date() == born.replace(year=greeting.local.year)
    assert (await env.run(yui, "t_birthday")).outcome == "greeted"
    async with env.context.sessions() as session:
        [row] = await session.scalars(select(DueTrigger))
    next_year = datetime.combine(born.replace(year=greeting.local.year + 1), time(9), TOKYO)
    assert row.user_id == yui.id and row.due_at == next_year and row.fired_at is None
