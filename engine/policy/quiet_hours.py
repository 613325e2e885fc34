"""Quiet hours: when a message may not go out, in the person's own time zone. Pure functions.

A window `start`-`end` that begins on local date D covers the instants from the first moment
the wall clock in the zone reads `start` on D up to (not including) the first moment after
that when it reads `end` (on D, or on D + 1 when `end` <= `start`, i.e. it crosses midnight).
"The first moment the clock reads t" is `engine.localtime.resolve_local`: a time skipped by a
spring-forward gap resolves to the end of the gap, a time repeated by a fall-back resolves to
its first occurrence. So a quiet period ending at 01:30 on a fall-back night ends at the first
01:30, and one ending at 02:30 on a spring-forward night ends at 03:00.

A window whose `start` equals its `end` is empty (never quiet).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from engine.config.nudge_toml import QuietHours, QuietWindow
from engine.localtime import resolve_local

__all__ = ["QuietHoursNeverEnd", "quiet_until", "release_time"]

_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# A combined quiet period longer than this covers every instant of a whole week, so it repeats
# forever: the configuration leaves no time to send at all.
_MAX_PERIOD = timedelta(days=8)


class QuietHoursNeverEnd(ValueError):
    """The applicable quiet windows chain into a quiet period that never ends."""


def _applies(window: QuietWindow, channel: str) -> bool:
    return window.channel in ("any", channel)


def _occurrence(window: QuietWindow, day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The UTC interval [start, end) of `window` when it starts on local date `day`."""
    anchor = datetime.combine(day, window.start)  # only its date is used by resolve_local
    start = resolve_local(anchor, window.start, zone)
    end_day = anchor if window.end > window.start else anchor + timedelta(days=1)
    return start, resolve_local(end_day, window.end, zone)


def _intervals(
    windows: list[QuietWindow], first: date, zone: ZoneInfo
) -> Iterator[list[tuple[datetime, datetime]]]:
    """Per local start date from `first` onwards, the non-empty intervals of `windows`."""
    day = first
    while True:
        found = []
        for window in windows:
            if window.days is not None and _WEEKDAYS[day.weekday()] not in window.days:
                continue
            start, end = _occurrence(window, day, zone)
            if start < end:  # a window swallowed by a DST gap never holds a send
                found.append((start, end))
        yield found
        day += timedelta(days=1)


def quiet_until(
    now: datetime,
    *,
    zone: str,
    quiet: QuietHours,
    channel: str,
    transactional: bool = False,
) -> datetime | None:
    """The UTC instant the quiet period holding `now` ends, or None if `now` is not quiet.

    `now` must be timezone-aware. `zone` is the person's IANA zone; `channel` is "sms", "push"
    or "webpush" (windows with channel "any" apply to all). Transactional messages are never
    held unless `quiet.apply_to_transactional`. When windows overlap or one starts exactly where
    another ends, the result is the end of the whole chain, so the returned instant is never
    itself quiet. Raises `QuietHoursNeverEnd` if the windows leave no time to send at all.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if transactional and not quiet.apply_to_transactional:
        return None
    windows = [w for w in quiet.all_windows() if _applies(w, channel) and w.start != w.end]
    if not windows:
        return None
    tz = ZoneInfo(zone)
    now = now.astimezone(UTC)
    # A window holding `now` started on the local date of `now` or the day before (windows are
    # under 25 hours long); two days back leaves room for a fall-back repeating the date.
    days = _intervals(windows, now.astimezone(tz).date() - timedelta(days=2), zone=tz)
    seen: list[tuple[datetime, datetime]] = []
    for _ in range(4):  # start dates D-2 .. D+1: every window that can hold `now`
        seen.extend(next(days))
    holding = [end for start, end in seen if start <= now < end]
    if not holding:
        return None
    until = max(holding)
    # Follow the chain: any window starting at or before `until` and ending after it extends
    # the quiet period. Pull further start dates while they could still start before `until`.
    pending = seen
    while True:
        longer = [end for start, end in pending if start <= until < end]
        if longer:
            until = max(longer)
            if until - now > _MAX_PERIOD:
                raise QuietHoursNeverEnd("quiet hours cover every hour of the week")
            continue
        latest_start = max((start for start, _ in pending), default=now)
        if latest_start > until:
            return until
        pending = pending + next(days)


def release_time(end: datetime, *, jitter: timedelta, rand: float) -> datetime:
    """Where in [end, end + jitter) to release a held message; `rand` is uniform in [0, 1).

    The caller supplies the random number (in a workflow: `workflow.random().random()`) so
    this stays deterministic. A zero jitter releases exactly at `end`. Raises `ValueError` for
    a negative jitter or `rand` outside [0, 1).
    """
    if not 0.0 <= rand < 1.0:
        raise ValueError("rand must lie in [0, 1)")
    if jitter < timedelta(0):
        raise ValueError("jitter must not be negative")
    if not jitter:
        return end
    # timedelta * float rounds to the microsecond, which can round up to `jitter` itself.
    return end + min(jitter * rand, jitter - timedelta(microseconds=1))
