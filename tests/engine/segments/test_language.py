"""engine.segments.language: what parses into what, and errors that say where and why."""

from __future__ import annotations

from datetime import timedelta

import pytest

from engine.config.nudge_toml import ConfigError, parse_config
from engine.segments import Segment, SegmentError, Segments, parse
from engine.segments.language import (
    And,
    Attr,
    Compare,
    ConsentState,
    Count,
    Did,
    EventFilter,
    Member,
    Near,
    Not,
    Or,
    Subscribed,
)


def test_the_issue_examples_parse_into_their_trees() -> None:
    assert parse('plan == "pro" and not did("App Opened", within="14d")') == And(
        (
            Compare(Attr(("plan",)), "==", "pro"),
            Not(Did(EventFilter("App Opened", within=timedelta(days=14)))),
        )
    )
    assert parse(
        'count("Order Completed", where={"currency": "EUR", "gift": true}, within="30d") >= 2'
    ) == Compare(
        Count(
            EventFilter("Order Completed", timedelta(days=30), {"currency": "EUR", "gift": True})
        ),
        ">=",
        2,
    )
    assert parse('subscribed("sms") or consent("push", topic="news") == "pending"') == Or(
        (Subscribed("sms", "marketing"), Compare(ConsentState("push", "news"), "==", "pending"))
    )
    assert parse('country not in ["FR", "BE"] and address.city == "Lyon" and vip') == And(
        (
            Member(Attr(("country",)), ("FR", "BE"), negated=True),
            Compare(Attr(("address", "city")), "==", "Lyon"),
            Attr(("vip",)),
        )
    )


@pytest.mark.parametrize(
    ("text", "line", "column", "reason"),
    [
        ('plan == "pro" and', 1, 15, "ends too soon"),
        ('plan = "pro"', 1, 6, "unexpected '='"),
        ('plan == "pro"\n  and seen("x")', 2, 7, "unknown function seen()"),
        ('did("App Opened", within="two weeks")', 1, 19, "positive duration"),
        ('count("Order Completed") and vip', 1, 1, "need a comparison"),
        ('count("Order Completed") >= "many"', 1, 1, "compares with a number"),
        ('consent("fax") == "subscribed"', 1, 1, "takes a channel first"),
        ('consent("sms") == "maybe"', 1, 1, "one of subscribed"),
        ("age >= true", 1, 1, "needs a number or a string"),
        ('plan == "pro" $', 1, 15, "unexpected character '$'"),
    ],
)
def test_errors_name_the_position_and_the_reason(
    text: str, line: int, column: int, reason: str
) -> None:
    with pytest.raises(SegmentError) as raised:
        parse(text, source="workflows/x.py", line=1)
    error = raised.value
    assert (error.line, error.column) == (line, column), str(error)
    assert reason in error.reason
    assert str(error).startswith(f"workflows/x.py:{line}:{column}: ")


def test_a_bad_segment_in_nudge_toml_is_refused_with_its_line_and_column() -> None:
    text = 'timezone = "UTC"\n\n[segments]\nok = "vip"\nbroken = \'plan == "pro" or\'\n'
    with pytest.raises(ConfigError) as raised:
        parse_config(text, source="nudge.toml")
    message = str(raised.value)
    assert message.startswith("nudge.toml: line 5: segments.broken: ")
    assert "column 15 of the expression: the expression ends too soon" in message
    assert parse_config('[segments]\nok = "vip"\n').segments == {"ok": "vip"}


def test_two_declarations_of_one_name_must_agree() -> None:
    one = Segment("pro", 'plan == "pro"', source="a.py", line=3)
    assert Segments([one, one]).names() == ["pro"]
    with pytest.raises(SegmentError, match=r"also declared at a\.py:3"):
        Segments([one, Segment("pro", 'plan == "team"', source="nudge.toml")])


def test_near_parses_with_its_radius_and_freshness() -> None:
    assert parse("near(52.52, 13.405, km=5)") == Near(52.52, 13.405, 5.0)
    assert parse('near(-17.7, -179.9, km=0.5, within="7d") and vip') == And(
        (Near(-17.7, -179.9, 0.5, timedelta(days=7)), Attr(("vip",)))
    )
    assert parse('not near(0, 0, km=10) or did("App Opened")') == Or(
        (Not(Near(0.0, 0.0, 10.0)), Did(EventFilter("App Opened")))
    )


@pytest.mark.parametrize(
    ("text", "column", "reason"),
    [
        ("near(52.52, 13.405)", 1, "takes a latitude, a longitude and a radius"),
        ("near(52.52, km=5)", 1, "takes a latitude, a longitude and a radius"),
        ("near(91, 13.4, km=5)", 1, "latitude is a number from -90 to 90"),
        ('near("52.5", 13.4, km=5)', 1, "latitude is a number from -90 to 90"),
        ("near(52.5, -180.5, km=5)", 1, "longitude is a number from -180 to 180"),
        ("near(52.5, 13.4, km=0)", 18, "km= takes a positive number"),
        ("near(52.5, 13.4, km=-2)", 18, "km= takes a positive number"),
        ('near(52.5, 13.4, km="5")', 18, "km= takes a positive number"),
        ("near(52.5, 13.4, km=1e400)", 18, "km= takes a positive number"),
        (f"near(52.5, {'9' * 400}, km=5)", 1, "longitude is a number from -180 to 180"),
        ("near(52.5, 13.4, km=5, m=3)", 1, "has no argument 'm'"),
        ('near(52.5, 13.4, km=5, within="soon")', 24, "positive duration"),
        ("near(52.5, 13.4, km=5) >= 2", 1, "can be compared"),
    ],
)
def test_near_refuses_what_is_not_a_place(text: str, column: int, reason: str) -> None:
    with pytest.raises(SegmentError) as raised:
        parse(text)
    assert raised.value.column == column, str(raised.value)
    assert reason in raised.value.reason
