"""Local dates and times in a person's zone (engine/localtime.py): pure functions, with
property tests across zones and DST changes."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from engine.localtime import at_local, date_due, local_instant, parse_date

ZONES = ["Australia/Sydney", "America/New_York", "Europe/Paris", "Asia/Kolkata", "UTC"]
AFTER = datetime(2027, 1, 1, tzinfo=UTC)


@given(
    zone=st.sampled_from(ZONES),
    day=st.dates(min_value=date(2027, 1, 1), max_value=date(2029, 12, 31)),
    at=st.times().map(lambda t: t.replace(second=0, microsecond=0)),
)
def test_at_local_reads_the_wall_time_or_the_end_of_a_gap(zone: str, day: date, at: time) -> None:
    instant = at_local(day, at, zone)
    local = instant.astimezone(ZoneInfo(zone))
    assert local.date() == day
    if local.time() != at:  # only in a spring-forward gap: the first instant after it
        assert local.time() > at and local.time().minute == 0


def test_the_day_before_at_nine_in_sydney_across_spring_forward() -> None:
    # Sydney moves 02:00 -> 03:00 on 3 Oct 2027; the appointment is on the 4th at 14:30.
    starts_at = datetime(2027, 10, 4, 14, 30, tzinfo=ZoneInfo("Australia/Sydney"))
    due = date_due(
        starts_at,
        at=time(9),
        offset=-timedelta(days=1),
        anniversary=False,
        zone="Australia/Sydney",
        after=AFTER,
    )
    assert due == datetime(2027, 10, 2, 22, 0, tzinfo=UTC)  # +11:00, not the +10:00 of the 2nd
    assert date_due(
        starts_at,
        at=None,
        offset=-timedelta(hours=2),
        anniversary=False,
        zone="Australia/Sydney",
        after=AFTER,
    ) == starts_at - timedelta(hours=2)
    assert (
        date_due(
            starts_at,
            at=time(9),
            offset=timedelta(0),
            anniversary=False,
            zone="Australia/Sydney",
            after=starts_at,
        )
        is None
    )  # already past


def test_anniversaries_recur_yearly_and_29_february_falls_on_the_28th() -> None:
    birthday = parse_date("1992-02-29")
    assert birthday == date(1992, 2, 29)
    first = date_due(
        birthday,
        at=time(9),
        offset=timedelta(0),
        anniversary=True,
        zone="Europe/Paris",
        after=AFTER,
    )
    assert first == datetime(2027, 2, 28, 8, 0, tzinfo=UTC)
    then = date_due(
        birthday,
        at=time(9),
        offset=timedelta(0),
        anniversary=True,
        zone="Europe/Paris",
        after=first,
    )
    assert then == datetime(2028, 2, 29, 8, 0, tzinfo=UTC)


def test_local_instant_forms() -> None:
    paris = "Europe/Paris"
    assert local_instant(date(2027, 3, 28), time(2, 30), paris) == datetime(
        2027, 3, 28, 1, 0, tzinfo=UTC
    )  # in the gap: 03:00 CEST
    assert local_instant(datetime(2027, 7, 1, 9, 0), None, paris) == datetime(
        2027, 7, 1, 7, 0, tzinfo=UTC
    )  # naive: a wall time in the zone
    aware = datetime(2027, 7, 1, 9, 0, tzinfo=UTC)
    assert local_instant(aware, None, paris) == aware
    assert parse_date("2027-03-04T14:00:00+11:00") == datetime(2027, 3, 4, 3, 0, tzinfo=UTC)
    assert parse_date("not a date") is None and parse_date(17) is None
