"""Pure parts of recurring journeys and local-time broadcasts: cron checks (croniter), the
declaration's refusals, and the waves a local broadcast plans (one instant per zone)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

import pytest

from engine.journey import JourneyDefinitionError, JourneySettings, journey
from engine.journey.base import Journey
from engine.schedules import ScheduleError, check_cron, next_runs, time_of_day
from engine.system.broadcast import waves
from schemas.broadcasts import BroadcastPlan


@pytest.mark.parametrize(
    ("cron", "local", "why"),
    [
        ("0 9 * *", False, "five fields"),
        ("0 25 * * MON", False, "not a valid cron"),
        ("*/15 9 * * MON", True, "one time of day"),
        ("0 9-17 * * MON", True, "one time of day"),
    ],
)
def test_bad_crons_are_refused_with_the_reason(cron: str, local: bool, why: str) -> None:
    with pytest.raises(ScheduleError, match=why):
        check_cron(cron, local=local)


def test_next_runs_follow_the_zone_across_dst() -> None:
    # Paris springs forward on 2027-03-28: 09:00 local is 08:00 UTC before, 07:00 after.
    after = datetime(2027, 3, 20, tzinfo=UTC)
    runs = next_runs("0 9 * * MON", zone="Europe/Paris", after=after, count=2)
    assert runs == [datetime(2027, 3, 22, 8, tzinfo=UTC), datetime(2027, 3, 29, 7, tzinfo=UTC)]
    assert time_of_day("30 7 * * *") == time(7, 30)


def test_a_schedule_needs_an_audience_and_a_local_one_a_fixed_time() -> None:
    def declare(**options: object) -> None:
        @journey(name="t_declared", **options)  # type: ignore[arg-type]
        class T(Journey[JourneySettings]):
            async def run(self) -> None: ...

    with pytest.raises(JourneyDefinitionError, match="no audience"):
        declare(schedule="0 9 * * MON")
    with pytest.raises(JourneyDefinitionError, match="one time of day"):
        declare(schedule="0 */2 * * MON", audience="x", local=True)
    with pytest.raises(JourneyDefinitionError, match="go with schedule"):
        declare(audience="x")


def test_local_waves_are_one_instant_per_zone_in_order() -> None:
    plan = BroadcastPlan(
        total=5,
        zones={"Asia/Tokyo": 1, "America/New_York": 1, "": 1, "UTC": 1, "Nowhere/Else": 1},
    )
    planned = waves(plan, local_date=date(2027, 3, 14), local_time=time(2, 30), default_zone="UTC")
    assert [(w.at, sorted(w.zones, key=str)) for w in planned] == [
        (datetime(2027, 3, 13, 17, 30, tzinfo=UTC), ["Asia/Tokyo"]),
        # No-zone users and an unknown zone follow the default zone, UTC.
        (datetime(2027, 3, 14, 2, 30, tzinfo=UTC), sorted([None, "Nowhere/Else", "UTC"], key=str)),
        # 02:30 does not exist in New York that night: the first instant after the gap.
        (datetime(2027, 3, 14, 7, 0, tzinfo=UTC), ["America/New_York"]),
    ]
