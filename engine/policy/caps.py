"""Frequency caps: which caps apply to a send, where their window starts, when there is room.

Pure functions over the times of messages already sent; the caller loads those times (and
makes the check atomic) in the database.

Windows, and which sent messages they count:

* `rolling`: the half-open interval (now - per, now]. `per` is an absolute duration (a "1d"
  rolling cap is 24 hours even across a DST change). A message sent exactly `per` ago no
  longer counts, so in SQL: `sent_at > window_start`.
* `calendar`: the local period holding now, [start, next start). Counts `sent_at >= start`.
  - `per` = 1 day: the current local day, from local midnight. A local day is 23, 24 or
    25 hours long; where midnight falls in a DST gap the day starts at the end of the gap.
  - `per` = N whole days, N not a multiple of 7: N-day periods made of whole local days,
    numbered from the Unix epoch date: a period starts on local date E + k*N for an
    integer k, where E = 1970-01-01. (So "2d" periods start on even-numbered days since
    the epoch, the same for every person; local midnight is in each person's zone.)
  - `per` = 7 days: the ISO week, from Monday 00:00 local. `per` = 7*N days: N-week periods
    starting on a Monday, numbered from the ISO week holding the epoch (Monday 1969-12-29).
  - `per` that is not a whole number of days: refused with `ValueError` (there is no local
    calendar period to align it to; use a rolling window).

Message times later than `now` (clock skew between workers) count as if sent at `now`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from engine.config.nudge_toml import Cap
from engine.localtime import resolve_local

__all__ = [
    "applicable_caps",
    "calendar_period",
    "count_in_window",
    "counted_times",
    "next_free_at",
    "over_cap",
    "window_start",
]

_EPOCH = date(1970, 1, 1)
_EPOCH_MONDAY = date(1969, 12, 29)  # Monday of the ISO week that holds the epoch
_DAY = timedelta(days=1)


def applicable_caps(
    caps: Sequence[Cap], *, channel: str, journey: str | None, transactional: bool
) -> list[Cap]:
    """The caps that count a send on `channel` from `journey` (None: not from a journey).

    Transactional messages are exempt from every cap. A cap on channel "any" applies to all
    channels; a cap with `journey` set applies only to sends from that journey.
    """
    if transactional:
        return []
    return [
        cap
        for cap in caps
        if cap.channel in ("any", channel) and (cap.journey is None or cap.journey == journey)
    ]


class _Send(Protocol):
    @property
    def channel(self) -> str: ...
    @property
    def journey(self) -> str | None: ...
    @property
    def at(self) -> datetime: ...


def counted_times(cap: Cap, sends: Iterable[_Send]) -> list[datetime]:
    """The times of the sends that `cap` counts (its channel, or any; its journey, if set)."""
    return [
        send.at
        for send in sends
        if cap.channel in ("any", send.channel)
        and (cap.journey is None or cap.journey == send.journey)
    ]


def _utc(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(UTC)


def _period_days(cap: Cap) -> tuple[int, date]:
    """(period length in days, a local date on which a period starts) for a calendar cap."""
    if cap.per % _DAY:
        raise ValueError(f"a calendar cap needs a whole number of days, not {cap.per}")
    days = cap.per // _DAY
    return days, (_EPOCH_MONDAY if days % 7 == 0 else _EPOCH)


def _period_start_date(day: date, cap: Cap) -> date:
    length, origin = _period_days(cap)
    return day - timedelta(days=(day - origin).days % length)


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    """The first instant of local date `day` in `zone`, in UTC."""
    return resolve_local(datetime.combine(day, time(0)), time(0), zone)


def calendar_period(now: datetime, cap: Cap, *, zone: str) -> tuple[datetime, datetime]:
    """The calendar period [start, end) of `cap` that holds `now`, both in UTC."""
    now = _utc(now)
    tz = ZoneInfo(zone)
    length = timedelta(days=_period_days(cap)[0])
    first = _period_start_date(now.astimezone(tz).date(), cap)
    start, end = _midnight(first, tz), _midnight(first + length, tz)
    # Where midnight is repeated by a fall-back, an instant can read the previous date after
    # the new day has begun; move on so the period really holds `now`.
    while end <= now:
        first += length
        start, end = end, _midnight(first + length, tz)
    return start, end


def window_start(now: datetime, cap: Cap, *, zone: str) -> datetime:
    """The UTC instant where the window of `cap` that holds `now` begins.

    Rolling: `now - per` (exclusive bound). Calendar: the start of the local period (inclusive
    bound); see the module docstring for how periods are aligned.
    """
    if cap.window == "rolling":
        return _utc(now) - cap.per
    return calendar_period(now, cap, zone=zone)[0]


def _counted(now: datetime, cap: Cap, zone: str, sent_at: Sequence[datetime]) -> list[datetime]:
    """The send times `cap` counts at `now`, sorted, with future ones moved to `now`."""
    now = _utc(now)
    start = window_start(now, cap, zone=zone)
    times = sorted(min(_utc(t), now) for t in sent_at)
    if cap.window == "rolling":
        return [t for t in times if t > start]
    return [t for t in times if t >= start]


def count_in_window(now: datetime, cap: Cap, *, zone: str, sent_at: Sequence[datetime]) -> int:
    """How many of the messages sent at `sent_at` the window of `cap` holding `now` counts."""
    return len(_counted(now, cap, zone, sent_at))


def over_cap(now: datetime, cap: Cap, *, zone: str, sent_at: Sequence[datetime]) -> bool:
    """True when one more message at `now` would break `cap` (the window is already full)."""
    return count_in_window(now, cap, zone=zone, sent_at=sent_at) >= cap.limit


def next_free_at(
    now: datetime, cap: Cap, *, zone: str, sent_at: Sequence[datetime]
) -> datetime | None:
    """The earliest UTC instant >= `now` at which one more message fits under `cap`.

    `now` itself when there is room. Rolling: the moment enough of the oldest counted messages
    have left the window. Calendar: the start of the next period. None when `cap.limit` is 0
    (no message ever fits).
    """
    if cap.limit == 0:
        return None
    now = _utc(now)
    counted = _counted(now, cap, zone, sent_at)
    if len(counted) < cap.limit:
        return now
    if cap.window == "rolling":
        # At T the window (T - per, T] must hold at most limit - 1 of them: drop the oldest
        # len - limit + 1, i.e. wait until counted[len - limit] is `per` old.
        return counted[len(counted) - cap.limit] + cap.per
    return calendar_period(now, cap, zone=zone)[1]
