"""Virtual start instants for the time-skipping kit (`engine.testing.JourneyEnv`): the kit's
clock starts wherever a test says, as long as it is not in the past."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo


def next_local(zone: str, at: time, *, after_days: int = 1) -> datetime:
    """`at` on the wall clock of `zone`, `after_days` local days from today (aware)."""
    tz = ZoneInfo(zone)
    day = datetime.now(tz).date() + timedelta(days=after_days)
    return datetime.combine(day, at, tzinfo=tz)


def next_spring_forward(zone: str) -> date:
    """The next local date (from the day after tomorrow) on which `zone` moves its clocks
    forward."""
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
