"""Frequency caps: which apply, their windows across DST, and when there is room again."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.config.nudge_toml import Cap
from engine.policy.caps import (
    applicable_caps,
    calendar_period,
    count_in_window,
    next_free_at,
    over_cap,
    window_start,
)
from tests.engine.policy.strategies import day_of, highest_reading, zone_and_instant

EPOCH = date(1970, 1, 1)
US = timedelta(microseconds=1)

calendar_caps = st.builds(
    Cap,
    limit=st.integers(0, 4),
    per=st.sampled_from([1, 2, 3, 5, 7, 10, 14]).map(lambda d: timedelta(days=d)),
    window=st.just("calendar"),
)
rolling_caps = st.builds(
    Cap,
    limit=st.integers(0, 4),
    per=st.integers(1, 3 * 86400).map(lambda s: timedelta(seconds=s)),
    window=st.just("rolling"),
)


def starts_a_local_day(t: datetime, tz: ZoneInfo) -> bool:
    """`t` is the first instant the clock in `tz` reaches a new date."""
    return highest_reading(t, tz).date() > highest_reading(t - US, tz).date()


@settings(max_examples=300, deadline=None)
@given(zone_and_instant(), calendar_caps)
def test_calendar_period_holds_now_and_runs_midnight_to_midnight(
    where: tuple[str, datetime], cap: Cap
) -> None:
    zone, now = where
    tz = ZoneInfo(zone)
    start, end = calendar_period(now, cap, zone=zone)
    assert window_start(now, cap, zone=zone) == start
    assert start <= now < end
    assert starts_a_local_day(start, tz) and starts_a_local_day(end, tz)
    # At 00:00 local, unless midnight fell into a DST gap (then the clock jumps at `start`).
    if highest_reading(start, tz).time() != time(0):
        assert (start - US).astimezone(tz).utcoffset() != start.astimezone(tz).utcoffset()
    first, after = day_of(start, tz), day_of(end, tz)
    days = cap.per.days
    assert (after - first).days == days  # whole local days, however long each one is
    if days % 7 == 0:
        assert first.weekday() == 0  # Monday
        assert ((first - date(1969, 12, 29)).days // 7) % (days // 7) == 0
    else:
        assert (first - EPOCH).days % days == 0


@settings(max_examples=100, deadline=None)
@given(zone_and_instant(), rolling_caps)
def test_rolling_window_looks_back_per(where: tuple[str, datetime], cap: Cap) -> None:
    zone, now = where
    assert window_start(now, cap, zone=zone) == now - cap.per


def independent_count(at: datetime, cap: Cap, zone: str, sent: list[datetime]) -> int:
    if cap.window == "rolling":
        return sum(1 for t in sent if at - cap.per < t <= at)
    start, end = calendar_period(at, cap, zone=zone)
    return sum(1 for t in sent if start <= t < end)


@settings(max_examples=300, deadline=None)
@given(zone_and_instant(), rolling_caps | calendar_caps, st.data())
def test_next_free_at_has_room_and_is_the_earliest(
    where: tuple[str, datetime], cap: Cap, data: st.DataObject
) -> None:
    zone, now = where
    span = int((cap.per * 2).total_seconds())
    sent = [
        now - timedelta(seconds=s)
        for s in data.draw(st.lists(st.integers(0, span) | st.just(0), max_size=8))
    ]
    free = next_free_at(now, cap, zone=zone, sent_at=sent)
    assert count_in_window(now, cap, zone=zone, sent_at=sent) == independent_count(
        now, cap, zone, sent
    )
    if cap.limit == 0:
        assert free is None
        assert over_cap(now, cap, zone=zone, sent_at=sent)
        return
    assert free is not None and free >= now
    assert independent_count(free, cap, zone, sent) < cap.limit
    assert not over_cap(free, cap, zone=zone, sent_at=sent)
    assert over_cap(now, cap, zone=zone, sent_at=sent) == (free > now)
    if free > now:  # a moment earlier there was no room
        assert independent_count(free - US, cap, zone, sent) >= cap.limit


@pytest.mark.parametrize(
    ("zone", "day", "hours"),
    [
        ("America/New_York", date(2026, 3, 8), 23),
        ("America/New_York", date(2026, 11, 1), 25),
        ("Europe/Berlin", date(2026, 3, 29), 23),
        ("Australia/Lord_Howe", date(2026, 10, 4), 23.5),
        ("Australia/Lord_Howe", date(2026, 4, 5), 24.5),
        ("America/Santiago", date(2026, 4, 4), 25),  # 24:00 falls back to 23:00
        ("America/Havana", date(2026, 3, 8), 23),  # midnight falls in the gap
        ("Asia/Kathmandu", date(2026, 6, 1), 24),
        ("Pacific/Tongatapu", date(2026, 6, 1), 24),
    ],
)
def test_a_local_day_can_be_23_to_25_hours(zone: str, day: date, hours: float) -> None:
    daily = Cap(limit=1, per=timedelta(days=1), window="calendar")
    noon = datetime.combine(day, time(12), tzinfo=ZoneInfo(zone))
    start, end = calendar_period(noon, daily, zone=zone)
    assert end - start == timedelta(hours=hours)
    assert start.astimezone(ZoneInfo(zone)).date() == day


def test_known_day_starts() -> None:
    daily = Cap(limit=1, per=timedelta(days=1), window="calendar")
    noon = datetime(2026, 6, 1, 12, tzinfo=UTC)
    # +05:45: local midnight of 2026-06-01 is 18:15Z the day before.
    assert window_start(noon, daily, zone="Asia/Kathmandu") == datetime(
        2026, 5, 31, 18, 15, tzinfo=UTC
    )
    # +13:00: at 12:00Z it is already 2026-06-02 01:00 in Tonga.
    assert window_start(noon, daily, zone="Pacific/Tongatapu") == datetime(
        2026, 6, 1, 11, tzinfo=UTC
    )
    # Havana skips 00:00-01:00 on 2026-03-08: the day starts at 01:00 CDT (05:00Z).
    havana = datetime(2026, 3, 8, 12, tzinfo=UTC)
    assert window_start(havana, daily, zone="America/Havana") == datetime(2026, 3, 8, 5, tzinfo=UTC)


def test_a_date_that_begins_twice() -> None:
    # St. John's 2008-11-02: 00:00 NDT (02:30Z), then at 00:01 back to 23:01 on Nov 1. The day
    # of Nov 2 began at 02:30Z, so the repeated hour already belongs to it.
    daily = Cap(limit=1, per=timedelta(days=1), window="calendar")
    repeated = datetime(2008, 11, 2, 3, tzinfo=UTC)  # reads 23:30 Nov 1 for the second time
    assert calendar_period(repeated, daily, zone="America/St_Johns") == (
        datetime(2008, 11, 2, 2, 30, tzinfo=UTC),
        datetime(2008, 11, 3, 3, 30, tzinfo=UTC),
    )


def test_iso_week_and_multi_day_periods() -> None:
    wednesday = datetime(2026, 11, 25, 15, tzinfo=UTC)
    weekly = Cap(limit=3, per=timedelta(days=7), window="calendar")
    start, end = calendar_period(wednesday, weekly, zone="Europe/Berlin")
    assert start == datetime(2026, 11, 22, 23, tzinfo=UTC)  # Monday 00:00 CET
    assert end == datetime(2026, 11, 29, 23, tzinfo=UTC)
    # 2026-11-25 is day 20782 after the epoch (even): a 2-day period starts that day; the
    # Thursday after belongs to it too.
    assert (date(2026, 11, 25) - EPOCH).days == 20782
    two_days = Cap(limit=3, per=timedelta(days=2), window="calendar")
    assert window_start(wednesday, two_days, zone="UTC") == datetime(2026, 11, 25, tzinfo=UTC)
    thursday = wednesday + timedelta(days=1)
    assert calendar_period(thursday, two_days, zone="UTC") == (
        datetime(2026, 11, 25, tzinfo=UTC),
        datetime(2026, 11, 27, tzinfo=UTC),
    )


def test_calendar_needs_whole_days() -> None:
    half_day = Cap(limit=1, per=timedelta(hours=12), window="calendar")
    with pytest.raises(ValueError, match="whole number of days"):
        window_start(datetime(2026, 6, 1, tzinfo=UTC), half_day, zone="UTC")


def test_rolling_next_free_at_known_answer() -> None:
    now = datetime(2026, 6, 1, 12, tzinfo=UTC)
    cap = Cap(channel="push", limit=2, per=timedelta(hours=4))
    sent = [now - timedelta(hours=5), now - timedelta(hours=3), now - timedelta(hours=1)]
    assert count_in_window(now, cap, zone="UTC", sent_at=sent) == 2
    assert next_free_at(now, cap, zone="UTC", sent_at=sent) == now + timedelta(hours=1)
    assert next_free_at(now, cap, zone="UTC", sent_at=sent[:2]) == now
    # Exactly `per` old no longer counts.
    assert next_free_at(now, cap, zone="UTC", sent_at=[now - timedelta(hours=4)] * 5) == now
    # A send time from a clock running ahead counts as now.
    ahead = [now + timedelta(seconds=2)] * 2
    assert next_free_at(now, cap, zone="UTC", sent_at=ahead) == now + timedelta(hours=4)


def test_calendar_next_free_at_is_next_local_midnight() -> None:
    zone = "America/New_York"
    now = datetime(2026, 3, 8, 20, tzinfo=UTC)  # 16:00 EDT on the 23-hour day
    cap = Cap(limit=1, per=timedelta(days=1), window="calendar")
    sent = [datetime(2026, 3, 8, 6, tzinfo=UTC)]  # 01:00 EST the same day
    assert next_free_at(now, cap, zone=zone, sent_at=sent) == datetime(2026, 3, 9, 4, tzinfo=UTC)
    assert next_free_at(now, cap, zone=zone, sent_at=[datetime(2026, 3, 8, 4, tzinfo=UTC)]) == now


def test_applicable_caps() -> None:
    any_day = Cap(channel="any", limit=3, per=timedelta(days=1), window="calendar")
    push = Cap(channel="push", limit=1, per=timedelta(hours=4))
    sms_cart = Cap(channel="sms", limit=1, per=timedelta(days=1), journey="abandoned_cart")
    caps = [any_day, push, sms_cart]

    def cart(channel: str) -> list[Cap]:
        return applicable_caps(caps, channel=channel, journey="abandoned_cart", transactional=False)

    assert cart("push") == [any_day, push]
    assert cart("sms") == [any_day, sms_cart]
    assert applicable_caps(caps, channel="sms", journey="winback", transactional=False) == [any_day]
    assert applicable_caps(caps, channel="sms", journey=None, transactional=False) == [any_day]
    assert cart("webpush") == [any_day]
    assert applicable_caps(caps, channel="sms", journey="abandoned_cart", transactional=True) == []
