"""Recurring journeys: cron expressions (checked and stepped with `croniter`) and the
definition of a journey's schedule, from `@journey(schedule=..., audience=...)` or from
`nudge.toml` `[schedules.<journey>]`. Pure; the Temporal side is `engine.temporal.schedules`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from croniter import CroniterBadCronError, croniter

EARLIEST_ZONE = "Pacific/Kiritimati"
"""Where a local schedule fires (UTC+14): the first zone to reach any wall-clock time."""


class ScheduleError(ValueError):
    """A schedule that cannot be used; `str()` says why."""


def check_cron(expression: str, *, local: bool = False) -> None:
    """Refuse anything but a valid five-field cron expression; with `local`, also one whose
    minute and hour are not single numbers (each user's wall clock needs one time of day)."""
    fields = expression.split()
    if len(fields) != 5:
        raise ScheduleError(
            f"{expression!r}: a cron expression has five fields (minute hour day month weekday)"
        )
    try:
        croniter(expression)
    except (CroniterBadCronError, ValueError, KeyError) as exc:
        raise ScheduleError(f"{expression!r} is not a valid cron expression: {exc}") from None
    if local and not (fields[0].isdigit() and fields[1].isdigit()):
        raise ScheduleError(
            f"{expression!r}: a local schedule needs one time of day (e.g. '0 9 * * MON')"
        )


def time_of_day(expression: str) -> time:
    """The time of day of a cron expression with a fixed minute and hour."""
    minute, hour = expression.split()[:2]
    return time(int(hour), int(minute))


def next_runs(
    expression: str, *, zone: str = "UTC", after: datetime, count: int = 3
) -> list[datetime]:
    """The next `count` firings strictly after `after` (aware), read in `zone`, in UTC."""
    if after.tzinfo is None:
        raise ValueError("after must be timezone-aware")
    walker = croniter(expression, after.astimezone(ZoneInfo(zone)))
    return [walker.get_next(datetime).astimezone(UTC) for _ in range(count)]


@dataclass(frozen=True)
class Recurring:
    """A journey's schedule: enter every member of `audience` at each `cron` firing.

    `local`: the cron's time of day in each user's own zone (the firing happens in the
    earliest zone; the broadcast waits for each zone). `overlap` is Temporal's policy for a
    firing while the previous one still runs; `catchup_window` how late a missed one still
    starts; `rate` entries per second.
    """

    journey: str
    cron: str
    audience: str
    local: bool = False
    timezone: str = "UTC"
    overlap: str = "skip"
    catchup_window: timedelta = timedelta(hours=1)
    rate: float | None = None
    paused: bool = False

    def __post_init__(self) -> None:
        check_cron(self.cron, local=self.local)

    @property
    def fires_in(self) -> str:
        """The zone Temporal reads the cron in."""
        return EARLIEST_ZONE if self.local else self.timezone

    def describe(self) -> str:
        """Human-readable: "0 9 * * MON, 09:00 in each user's zone"."""
        if self.local:
            return f"{self.cron} ({time_of_day(self.cron):%H:%M} in each user's zone)"
        return f"{self.cron} ({self.timezone})"
