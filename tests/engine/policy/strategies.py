"""Hypothesis strategies and a wall-clock oracle shared by the send-gate policy tests.

The oracle does not use `engine.localtime`: it reads wall clocks through `astimezone` only.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo

from hypothesis import strategies as st

# DST zones (30-minute shift on Lord Howe; transitions at midnight in Santiago and Havana) and
# odd fixed offsets (+05:45, +13:00, +09:00 without DST).
ZONES = [
    "America/New_York",
    "Europe/Berlin",
    "Australia/Lord_Howe",
    "America/Santiago",
    "America/Havana",
    "Asia/Kathmandu",
    "Pacific/Tongatapu",
    "Pacific/Apia",
    "Asia/Tokyo",
    "UTC",
    # St. John's fell back from 00:01 to 23:01 until 2010: a date began, then began again.
    "America/St_Johns",
]
_YEARS = {"America/St_Johns": (2008, 2011)}  # [from, to) years to draw from; else 2025-2027


def _span(zone: str) -> tuple[datetime, datetime]:
    first, last = _YEARS.get(zone, (2025, 2028))
    return datetime(first, 1, 1, tzinfo=UTC), datetime(last, 1, 1, tzinfo=UTC)


@cache
def transitions(zone: str) -> list[datetime]:
    """The UTC instants (to the second) where `zone` changes its offset in its test years."""
    tz = ZoneInfo(zone)
    found = []
    begin, end = _span(zone)
    t, before = begin, begin.astimezone(tz).utcoffset()
    while t < end:
        step = t + timedelta(days=1)
        if step.astimezone(tz).utcoffset() != before:
            low, high = t, step
            while high - low > timedelta(seconds=1):
                mid = low + (high - low) / 2
                if mid.astimezone(tz).utcoffset() == before:
                    low = mid
                else:
                    high = mid
            found.append(high.replace(microsecond=0))
            before = step.astimezone(tz).utcoffset()
        t = step
    return found


def instants(zone: str) -> st.SearchStrategy[datetime]:
    """UTC instants, often within 36 hours of one of the zone's DST transitions."""
    seconds = st.one_of(
        st.integers(-36 * 3600, 36 * 3600),
        st.integers(-3 * 3600, 3 * 3600),  # the hours around the change itself
        st.integers(-36 * 60, 36 * 60).map(lambda m: m * 60),  # whole minutes hit edges
    )
    begin, end = _span(zone)
    anywhere = st.integers(0, int((end - begin).total_seconds())).map(
        lambda s: begin + timedelta(seconds=s)
    )
    edges = transitions(zone)
    if not edges:
        return anywhere
    near = st.tuples(st.sampled_from(edges), seconds).map(lambda p: p[0] + timedelta(seconds=p[1]))
    return st.one_of(near, anywhere)


def zone_and_instant(zones: list[str] = ZONES) -> st.SearchStrategy[tuple[str, datetime]]:
    return st.sampled_from(zones).flatmap(lambda z: st.tuples(st.just(z), instants(z)))


# Wall-clock times: quarter hours, plus the hours DST likes to move.
wall_times = st.one_of(
    st.integers(0, 95).map(lambda q: time(q // 4, q % 4 * 15)),
    st.sampled_from([time(0), time(1), time(1, 30), time(2), time(2, 30), time(3), time(23)]),
    st.integers(0, 24 * 60 - 1).map(lambda m: time(m // 60, m % 60)),
)


def reading(t: datetime, tz: ZoneInfo) -> datetime:
    """What the wall clock in `tz` reads at `t`, as a naive datetime."""
    return t.astimezone(tz).replace(tzinfo=None)


def highest_reading(t: datetime, tz: ZoneInfo) -> datetime:
    """The highest wall-clock reading in `tz` at or before `t` (naive).

    It differs from `reading(t)` only during the hour repeated after a fall-back. "The clock
    has reached X by t" is `highest_reading(t) >= X`. Exact for whole-minute X when the zone's
    transitions fall on whole minutes: samples one a minute over the previous 2.5 hours.
    """
    earlier = t - timedelta(minutes=150)
    if earlier.astimezone(tz).utcoffset() == t.astimezone(tz).utcoffset():
        return reading(t, tz)  # no transition in between (zones change at most twice a year)
    return max(reading(t - timedelta(minutes=k), tz) for k in range(151))


def day_of(t: datetime, tz: ZoneInfo) -> date:
    """The local date the clock in `tz` has reached by `t`."""
    return highest_reading(t, tz).date()
