"""Local wall-clock arithmetic in a person's IANA zone, DST-correct. Pure functions."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
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
