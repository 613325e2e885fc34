"""Local wall-clock arithmetic in a person's IANA zone, DST-correct. Pure functions."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo


def resolve_local(day: datetime, at: time, zone: ZoneInfo) -> datetime:
    """The instant (UTC) when the wall clock in `zone` reads `at` on `day`'s local date.

    A wall time that does not exist (spring-forward gap) resolves to the first instant after
    the gap; an ambiguous one (fall-back) to its first occurrence.
    """
    local = datetime.combine(day.date(), at, tzinfo=zone)
    as_utc = local.astimezone(UTC)
    if as_utc.astimezone(zone).replace(tzinfo=None) == local.replace(tzinfo=None):
        return as_utc
    # In a gap: the clock jumps over `at`, so take the instant the gap ends. It lies between
    # the two readings of `at` (with the offsets before and after); bisect to the second.
    low = local.replace(fold=1).astimezone(UTC)
    high = local.replace(fold=0).astimezone(UTC)
    low, high = min(low, high), max(low, high)
    after = high.astimezone(zone).utcoffset()
    while high - low > timedelta(seconds=1):
        mid = low + (high - low) / 2
        if mid.astimezone(zone).utcoffset() == after:
            high = mid
        else:
            low = mid
    return high.replace(microsecond=0)


def next_local_time(now: datetime, at: time, zone: ZoneInfo | str) -> datetime:
    """The first instant strictly after `now` when the local clock in `zone` reads `at`.

    `now` must be timezone-aware; the result is in UTC.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    tz = ZoneInfo(zone) if isinstance(zone, str) else zone
    local_now = now.astimezone(tz)
    for days in range(0, 3):
        candidate = resolve_local(local_now + timedelta(days=days), at, tz)
        if candidate > now:
            return candidate
    raise AssertionError("unreachable: a local time recurs within two days")


def _tz(zone: ZoneInfo | str) -> ZoneInfo:
    return ZoneInfo(zone) if isinstance(zone, str) else zone


def at_local(day: date, at: time, zone: ZoneInfo | str) -> datetime:
    """The instant (UTC) when the wall clock in `zone` reads `at` on the local date `day`
    (a time in a spring-forward gap: the end of the gap; a fall-back one: its first reading)."""
    return resolve_local(datetime.combine(day, time(12)), at, _tz(zone))


def local_instant(when: datetime | date, at: time | None, zone: ZoneInfo | str) -> datetime:
    """The instant (UTC) `sleep_until_local(when, at)` sleeps until, in the user's `zone`.

    An aware `when` without `at` is that instant; a naive one is a wall time in `zone`; a
    date (or a date-time's local date) with `at` is that local date at `at`.
    """
    tz = _tz(zone)
    if isinstance(when, datetime):
        if at is None:
            if when.tzinfo is not None:
                return when.astimezone(UTC)
            return at_local(when.date(), when.time(), tz)
        day = when.astimezone(tz).date() if when.tzinfo is not None else when.date()
        return at_local(day, at, tz)
    return at_local(when, at or time(0), tz)


def parse_date(value: Any) -> date | datetime | None:
    """An ISO date (`1990-05-17`) or date-time (`2027-03-04T14:00:00+11:00`), or None."""
    if isinstance(value, datetime | date):
        return value
    if not isinstance(value, str):
        return None
    try:
        if len(value) <= 10:
            return date.fromisoformat(value)
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _on_year(day: date, year: int) -> date:
    try:
        return day.replace(year=year)
    except ValueError:  # 29 February in a common year: the 28th
        return day.replace(year=year, day=28)


def _rule_instant(
    value: date | datetime, *, at: time | None, offset: timedelta, tz: ZoneInfo
) -> datetime:
    if at is None:
        if isinstance(value, datetime):
            base = value if value.tzinfo is not None else value.replace(tzinfo=tz)
            return (base.astimezone(UTC) + offset).astimezone(UTC)
        value = datetime.combine(value, time(0))
        return local_instant(value + offset, None, tz)
    day = (
        (value.astimezone(tz).date() if value.tzinfo is not None else value.date())
        if isinstance(value, datetime)
        else value
    )
    wall = datetime.combine(day, at) + offset  # wall-clock arithmetic: "the day before at 9"
    return at_local(wall.date(), wall.time(), tz)


def date_due(
    value: date | datetime,
    *,
    at: time | None,
    offset: timedelta,
    anniversary: bool,
    zone: ZoneInfo | str,
    after: datetime,
) -> datetime | None:
    """The first instant (UTC) strictly after `after` that a date rule names, or None.

    The rule: `value` (a date, or a date-time taken on the local calendar of `zone`),
    moved by `offset` on the wall clock, at local time `at` (None: the instant itself plus
    `offset`); with `anniversary`, the same month and day of every year (29 February: the
    28th in common years).
    """
    tz = _tz(zone)
    if not anniversary:
        due = _rule_instant(value, at=at, offset=offset, tz=tz)
        return due if due > after else None
    day = value.astimezone(tz).date() if isinstance(value, datetime) and value.tzinfo else value
    if isinstance(day, datetime):
        day = day.date()
    year = after.astimezone(tz).year
    for candidate in range(year - 1, year + 3):  # an offset can move a date across New Year
        due = _rule_instant(_on_year(day, candidate), at=at or time(0), offset=offset, tz=tz)
        if due > after:
            return due
    return None
