"""Quiet hours against a wall-clock oracle, across DST changes and odd offsets."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, reject, settings
from hypothesis import strategies as st

from engine.config.nudge_toml import QuietHours, QuietWindow
from engine.policy.quiet_hours import QuietHoursNeverEnd, quiet_until, release_time
from tests.engine.policy.strategies import highest_reading, wall_times, zone_and_instant

CHANNELS = ["sms", "push", "webpush"]
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def in_window(t: datetime, window: QuietWindow, tz: ZoneInfo) -> bool:
    """The oracle: has the clock reached `start` on an allowed day, and not yet `end`?"""
    if window.start == window.end:
        return False
    clock = highest_reading(t, tz)
    for back in (0, 1):
        day = clock.date() - timedelta(days=back)
        if window.days is not None and WEEKDAYS[day.weekday()] not in window.days:
            continue
        start = datetime.combine(day, window.start)
        end_day = day if window.end > window.start else day + timedelta(days=1)
        if start <= clock < datetime.combine(end_day, window.end):
            return True
    return False


def quiet_at(t: datetime, quiet: QuietHours, channel: str, tz: ZoneInfo) -> bool:
    return any(in_window(t, w, tz) for w in quiet.all_windows() if w.channel in ("any", channel))


windows = st.builds(
    QuietWindow,
    start=wall_times,
    end=wall_times,
    channel=st.sampled_from(["any", "sms", "push", "webpush"]),
    days=st.none() | st.lists(st.sampled_from(WEEKDAYS), min_size=1, max_size=7, unique=True),
)
quiet_hours = st.builds(
    QuietHours,
    start=st.none() | wall_times,
    end=st.none() | wall_times,
    windows=st.lists(windows, max_size=3),
)


@settings(max_examples=300, deadline=None)
@given(zone_and_instant(), quiet_hours, st.sampled_from(CHANNELS), st.data())
def test_quiet_until_agrees_with_the_wall_clock(
    where: tuple[str, datetime], quiet: QuietHours, channel: str, data: st.DataObject
) -> None:
    zone, now = where
    tz = ZoneInfo(zone)
    try:
        end = quiet_until(now, zone=zone, quiet=quiet, channel=channel)
    except QuietHoursNeverEnd:
        reject()
    if not quiet_at(now, quiet, channel, tz):
        assert end is None
        return
    assert end is not None
    assert end.utcoffset() == timedelta(0)
    assert end > now
    # The end is a window end: quiet just before it, free at it.
    assert not quiet_at(end, quiet, channel, tz)
    assert quiet_at(end - timedelta(seconds=1), quiet, channel, tz)
    # Quiet all the way, and asking again from inside gives the same end.
    for fraction in data.draw(st.lists(st.floats(0, 1), max_size=4)):
        inside = min(now + (end - now) * fraction, end - timedelta(seconds=1))
        assert quiet_at(inside, quiet, channel, tz)
        assert quiet_until(inside, zone=zone, quiet=quiet, channel=channel) == end


@settings(max_examples=100, deadline=None)
@given(zone_and_instant(), quiet_hours, st.sampled_from(CHANNELS))
def test_transactional_messages_bypass_unless_configured(
    where: tuple[str, datetime], quiet: QuietHours, channel: str
) -> None:
    zone, now = where
    assert quiet_until(now, zone=zone, quiet=quiet, channel=channel, transactional=True) is None
    strict = quiet.model_copy(update={"apply_to_transactional": True})
    try:
        expected = quiet_until(now, zone=zone, quiet=strict, channel=channel)
    except QuietHoursNeverEnd:
        reject()
    got = quiet_until(now, zone=zone, quiet=strict, channel=channel, transactional=True)
    assert got == expected


def at(zone: str, *args: int, fold: int = 0) -> datetime:
    year, month, day, hour, minute = args
    return datetime(year, month, day, hour, minute, tzinfo=ZoneInfo(zone), fold=fold)


NIGHT = QuietHours(start=time(21), end=time(8))


@pytest.mark.parametrize(
    ("now", "zone", "quiet", "expected"),
    [
        # Tokyo 23:30 with 21:00-08:00: 08:00 local the next morning.
        (at("Asia/Tokyo", 2026, 3, 10, 23, 30), "Asia/Tokyo", NIGHT, "2026-03-10T23:00:00"),
        # Early morning is still yesterday's window.
        (at("Asia/Tokyo", 2026, 3, 11, 7, 59), "Asia/Tokyo", NIGHT, "2026-03-10T23:00:00"),
        (at("Asia/Tokyo", 2026, 3, 11, 8, 0), "Asia/Tokyo", NIGHT, None),
        (at("Asia/Tokyo", 2026, 3, 11, 20, 59), "Asia/Tokyo", NIGHT, None),
        # New York, spring forward (02:00 EST -> 03:00 EDT on 2026-03-08): 08:00 EDT is 12:00Z.
        (
            at("America/New_York", 2026, 3, 8, 1, 30),
            "America/New_York",
            NIGHT,
            "2026-03-08T12:00:00",
        ),
        # A window ending in the gap (02:30) ends when the gap does: 03:00 EDT = 07:00Z.
        (
            at("America/New_York", 2026, 3, 8, 1, 30),
            "America/New_York",
            QuietHours(start=time(22), end=time(2, 30)),
            "2026-03-08T07:00:00",
        ),
        # A window starting in the gap starts when the gap ends (03:00 EDT).
        (
            at("America/New_York", 2026, 3, 8, 3, 10),
            "America/New_York",
            QuietHours(start=time(2, 30), end=time(6)),
            "2026-03-08T10:00:00",
        ),
        (
            at("America/New_York", 2026, 3, 8, 1, 59),
            "America/New_York",
            QuietHours(start=time(2, 30), end=time(6)),
            None,
        ),
        # Fall back (2026-11-01, 01:00-02:00 twice): the window ends at the first 01:30 ...
        (
            at("America/New_York", 2026, 11, 1, 1, 10),
            "America/New_York",
            QuietHours(start=time(22), end=time(1, 30)),
            "2026-11-01T05:30:00",
        ),
        # ... so the second 01:10 is past the end.
        (
            at("America/New_York", 2026, 11, 1, 1, 10, fold=1),
            "America/New_York",
            QuietHours(start=time(22), end=time(1, 30)),
            None,
        ),
        # St. John's 2008-11-02: 00:01 fell back to 23:01 on Nov 1. A window starting 00:00 Nov 2
        # began at 02:30Z and holds through the repeated hour, to 06:00 NST (09:30Z).
        (
            at("America/St_Johns", 2008, 11, 1, 23, 30, fold=1),
            "America/St_Johns",
            QuietHours(start=time(0), end=time(6)),
            "2008-11-02T09:30:00",
        ),
        # Berlin, fall back at 03:00 CEST -> 02:00 CET: 08:00 CET is 07:00Z.
        (
            at("Europe/Berlin", 2026, 10, 25, 2, 30, fold=1),
            "Europe/Berlin",
            NIGHT,
            "2026-10-25T07:00:00",
        ),
        # Lord Howe springs forward 30 minutes (02:00 -> 02:30, +10:30 -> +11:00).
        (
            at("Australia/Lord_Howe", 2026, 10, 4, 1, 45),
            "Australia/Lord_Howe",
            QuietHours(start=time(21), end=time(2, 15)),
            "2026-10-03T15:30:00",
        ),
        # +05:45 and +13:00.
        (at("Asia/Kathmandu", 2026, 6, 1, 22, 0), "Asia/Kathmandu", NIGHT, "2026-06-02T02:15:00"),
        (
            at("Pacific/Tongatapu", 2026, 6, 1, 23, 0),
            "Pacific/Tongatapu",
            NIGHT,
            "2026-06-01T19:00:00",
        ),
        (at("Pacific/Apia", 2026, 6, 2, 6, 0), "Pacific/Apia", NIGHT, "2026-06-01T19:00:00"),
    ],
)
def test_known_answers(now: datetime, zone: str, quiet: QuietHours, expected: str | None) -> None:
    got = quiet_until(now, zone=zone, quiet=quiet, channel="sms")
    assert got == (None if expected is None else datetime.fromisoformat(expected + "+00:00"))


def test_days_restrict_the_start_day() -> None:
    # Friday 22:00 to Saturday 09:00, only for windows starting on Friday (2026-11-27 is a Fri).
    quiet = QuietHours(windows=[QuietWindow(start=time(22), end=time(9), days=["fri"])])
    nine_sat = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)  # Europe/London = UTC in winter

    def until(year: int, month: int, day: int, hour: int) -> datetime | None:
        now = datetime(year, month, day, hour, tzinfo=UTC)
        return quiet_until(now, zone="Europe/London", quiet=quiet, channel="push")

    assert until(2026, 11, 28, 1) == nine_sat + timedelta(hours=1)
    assert until(2026, 11, 27, 22) == nine_sat + timedelta(hours=1)
    assert until(2026, 11, 26, 23) is None  # Thursday night
    assert until(2026, 11, 29, 1) is None  # Sunday 01:00


def test_channel_windows_and_chains() -> None:
    quiet = QuietHours(
        windows=[
            QuietWindow(start=time(21), end=time(23), channel="sms"),
            QuietWindow(start=time(23), end=time(7), channel="sms"),  # chains on at 23:00
            QuietWindow(start=time(6), end=time(9), channel="any"),  # overlaps the end
            QuietWindow(start=time(12), end=time(13), channel="push"),
        ]
    )
    day = datetime(2026, 6, 1, tzinfo=UTC)

    def until(hours: int, channel: str) -> datetime | None:
        return quiet_until(day + timedelta(hours=hours), zone="UTC", quiet=quiet, channel=channel)

    assert until(22, "sms") == day + timedelta(hours=33)
    assert until(22, "push") is None
    assert until(30, "push") == day + timedelta(hours=33)
    assert until(12, "sms") is None
    assert until(12, "push") == day + timedelta(hours=13)


def test_no_windows_and_empty_windows() -> None:
    now = datetime(2026, 6, 1, 3, tzinfo=UTC)
    assert quiet_until(now, zone="UTC", quiet=QuietHours(), channel="sms") is None
    same = QuietHours(start=time(3), end=time(3))
    assert quiet_until(now, zone="UTC", quiet=same, channel="sms") is None


def test_quiet_all_week_is_refused() -> None:
    quiet = QuietHours(
        windows=[QuietWindow(start=time(0), end=time(12)), QuietWindow(start=time(12), end=time(0))]
    )
    with pytest.raises(QuietHoursNeverEnd):
        quiet_until(
            datetime(2026, 6, 1, tzinfo=UTC), zone="Europe/Berlin", quiet=quiet, channel="sms"
        )


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        quiet_until(datetime(2026, 6, 1), zone="UTC", quiet=NIGHT, channel="sms")


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 10**6).map(lambda s: datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=s)),
    st.integers(0, 7200 * 10**6).map(lambda us: timedelta(microseconds=us)),
    st.one_of(st.floats(0, 1, exclude_max=True), st.just(1 - 2**-53), st.just(0.0)),
)
def test_release_time_stays_in_the_jitter_range(
    end: datetime, jitter: timedelta, rand: float
) -> None:
    released = release_time(end, jitter=jitter, rand=rand)
    if jitter:
        assert end <= released < end + jitter
    else:
        assert released == end


def test_release_time_spreads_and_checks_input() -> None:
    end = datetime(2026, 6, 1, 8, tzinfo=UTC)
    jitter = timedelta(minutes=15)
    assert release_time(end, jitter=jitter, rand=0.5) == end + timedelta(minutes=7, seconds=30)
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError):
            release_time(end, jitter=jitter, rand=bad)
    with pytest.raises(ValueError):
        release_time(end, jitter=-jitter, rand=0.5)
