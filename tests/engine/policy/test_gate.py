"""engine.policy.gate: the send decision as pure functions. The order (holdout, address,
consent, quiet hours, then caps), the reason each rule gives, and where a deferral lands.
The database side (facts loaded and the slot reserved in one transaction) is
tests/engine/delivery/test_gate.py."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.config.nudge_toml import Cap, QuietHours
from engine.policy import consent
from engine.policy.caps import next_free_at, over_cap
from engine.policy.gate import Defer, SendFacts, Suppress, before_caps, over_caps
from engine.policy.quiet_hours import quiet_until
from schemas.common import ConsentState
from tests.engine.policy.strategies import zone_and_instant

NIGHT = QuietHours(start=time(21, 0), end=time(8, 0))
NOON = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
MIDNIGHT = datetime(2026, 6, 1, 0, 30, tzinfo=UTC)


def facts(**overrides: object) -> SendFacts:
    values: dict[str, object] = {
        "now": NOON,
        "zone": "UTC",
        "channel": "push",
        "transactional": False,
        "holdout": False,
        "reachable": True,
        "consent": ConsentState.SUBSCRIBED,
    }
    values.update(overrides)
    return SendFacts(**values)  # type: ignore[arg-type]


def test_a_reachable_subscribed_user_by_day_passes() -> None:
    assert before_caps(facts(), NIGHT, rand=0.5) is None


@pytest.mark.parametrize(
    ("overrides", "verdict"),
    [
        ({"holdout": True, "reachable": False, "now": MIDNIGHT}, Suppress("holdout")),
        ({"reachable": False, "consent": ConsentState.UNSUBSCRIBED}, Suppress("no_address")),
        ({"consent": ConsentState.UNKNOWN, "now": MIDNIGHT}, Suppress("no_consent")),
        ({"consent": ConsentState.PENDING}, Suppress("no_consent")),
        ({"now": MIDNIGHT}, Defer(datetime(2026, 6, 1, 8, 0, tzinfo=UTC), "quiet_hours")),
    ],
)
def test_the_first_rule_that_holds_a_message_back_decides(
    overrides: dict[str, object], verdict: Suppress | Defer
) -> None:
    assert before_caps(facts(**overrides), NIGHT, rand=0.0) == verdict


def test_quiet_hours_drop_instead_of_defer() -> None:
    drop = NIGHT.model_copy(update={"action": "drop"})
    assert before_caps(facts(now=MIDNIGHT), drop, rand=0.0) == Suppress("quiet_hours_dropped")


def test_quiet_hours_are_read_in_the_users_zone() -> None:
    # 12:00 UTC is 21:00 in Tokyo: quiet there until 08:00 local, 23:00 UTC.
    verdict = before_caps(facts(zone="Asia/Tokyo"), NIGHT, rand=0.0)
    assert verdict == Defer(datetime(2026, 6, 1, 23, 0, tzinfo=UTC), "quiet_hours")


def test_transactional_sends_need_only_no_opt_out_and_skip_quiet_hours() -> None:
    night_unknown = facts(transactional=True, now=MIDNIGHT, consent=ConsentState.UNKNOWN)
    assert before_caps(night_unknown, NIGHT, rand=0.0) is None
    opted_out = facts(transactional=True, consent=ConsentState.UNSUBSCRIBED)
    assert before_caps(opted_out, NIGHT, rand=0.0) == Suppress("no_consent")
    strict = NIGHT.model_copy(update={"apply_to_transactional": True})
    assert isinstance(before_caps(night_unknown, strict, rand=0.0), Defer)


@settings(max_examples=200, deadline=None)
@given(
    where=zone_and_instant(),
    channel=st.sampled_from(["push", "sms", "webpush"]),
    transactional=st.booleans(),
    holdout=st.booleans(),
    reachable=st.booleans(),
    state=st.sampled_from(list(ConsentState)),
    action=st.sampled_from(["defer", "drop"]),
    jitter=st.integers(0, 3600).map(lambda s: timedelta(seconds=s)),
    rand=st.floats(0, 1, exclude_max=True),
)
def test_the_decision_follows_the_order_of_the_rules(
    where: tuple[str, datetime],
    channel: str,
    transactional: bool,
    holdout: bool,
    reachable: bool,
    state: ConsentState,
    action: str,
    jitter: timedelta,
    rand: float,
) -> None:
    zone, now = where
    quiet = NIGHT.model_copy(update={"action": action, "release_jitter": jitter})
    send = facts(
        now=now,
        zone=zone,
        channel=channel,
        transactional=transactional,
        holdout=holdout,
        reachable=reachable,
        consent=state,
    )
    verdict = before_caps(send, quiet, rand=rand)
    end = quiet_until(now, zone=zone, quiet=quiet, channel=channel, transactional=transactional)
    if holdout:
        assert verdict == Suppress("holdout")
    elif not reachable:
        assert verdict == Suppress("no_address")
    elif not consent.allows(state, transactional=transactional):
        assert verdict == Suppress("no_consent")
    elif end is None:
        assert verdict is None
    elif action == "drop":
        assert verdict == Suppress("quiet_hours_dropped")
    else:
        assert isinstance(verdict, Defer) and verdict.reason == "quiet_hours"
        assert end <= verdict.until < end + max(jitter, timedelta(microseconds=1))


# -- caps -----------------------------------------------------------------------------------


def hours_ago(*hours: float) -> list[datetime]:
    return [NOON - timedelta(hours=h) for h in hours]


def test_no_cap_or_room_under_every_cap_passes() -> None:
    assert over_caps(NOON, [], zone="UTC", deferrals=0) is None
    cap = Cap(channel="push", limit=2, per=timedelta(hours=4))
    assert over_caps(NOON, [(cap, hours_ago(1))], zone="UTC", deferrals=0) is None


def test_a_full_cap_suppresses_capped_by_default() -> None:
    cap = Cap(channel="push", limit=1, per=timedelta(hours=4))
    verdict = over_caps(NOON, [(cap, hours_ago(1))], zone="UTC", deferrals=0)
    assert verdict == Suppress("capped")


def test_a_deferring_cap_waits_for_its_next_free_slot_a_few_times() -> None:
    cap = Cap(channel="push", limit=1, per=timedelta(hours=4), on_capped="defer")
    sent = hours_ago(1)
    free = NOON + timedelta(hours=3)
    assert over_caps(NOON, [(cap, sent)], zone="UTC", deferrals=0) == Defer(free, "capped")
    assert over_caps(NOON, [(cap, sent)], zone="UTC", deferrals=2) == Defer(free, "capped")
    assert over_caps(NOON, [(cap, sent)], zone="UTC", deferrals=3) == Suppress("capped")


def test_a_zero_limit_never_frees_a_slot() -> None:
    cap = Cap(channel="any", limit=0, per=timedelta(days=1), on_capped="defer")
    assert over_caps(NOON, [(cap, [])], zone="UTC", deferrals=0) == Suppress("capped")


def test_the_first_full_cap_decides() -> None:
    skip = Cap(channel="push", limit=1, per=timedelta(hours=1))
    defer = Cap(channel="any", limit=1, per=timedelta(hours=6), on_capped="defer")
    sent = hours_ago(0.5)
    assert over_caps(NOON, [(skip, sent), (defer, sent)], zone="UTC", deferrals=0) == Suppress(
        "capped"
    )
    verdict = over_caps(NOON, [(defer, sent), (skip, sent)], zone="UTC", deferrals=0)
    assert verdict == Defer(NOON + timedelta(hours=5, minutes=30), "capped")


caps = st.builds(
    Cap,
    channel=st.just("any"),
    limit=st.integers(0, 3),
    per=st.integers(1, 48).map(lambda h: timedelta(hours=h)),
    window=st.sampled_from(["rolling", "calendar"]),
    on_capped=st.sampled_from(["skip", "defer"]),
    max_deferrals=st.integers(0, 3),
).filter(lambda cap: cap.window == "rolling" or cap.per % timedelta(days=1) == timedelta(0))


@settings(max_examples=200, deadline=None)
@given(
    where=zone_and_instant(),
    windows=st.lists(
        st.tuples(caps, st.lists(st.integers(0, 72 * 60), max_size=5)), min_size=1, max_size=3
    ),
    deferrals=st.integers(0, 4),
)
def test_caps_decide_by_the_first_full_window(
    where: tuple[str, datetime], windows: list[tuple[Cap, list[int]]], deferrals: int
) -> None:
    zone, now = where
    pairs = [(cap, [now - timedelta(minutes=m) for m in ago]) for cap, ago in windows]
    verdict = over_caps(now, pairs, zone=zone, deferrals=deferrals)
    full = [(cap, sent) for cap, sent in pairs if over_cap(now, cap, zone=zone, sent_at=sent)]
    if not full:
        assert verdict is None
        return
    cap, sent = full[0]
    free = next_free_at(now, cap, zone=zone, sent_at=sent)
    if cap.on_capped == "defer" and deferrals < cap.max_deferrals and free is not None:
        assert verdict == Defer(free, "capped")
        assert free > now
        assert not over_cap(free, cap, zone=zone, sent_at=sent)  # there is room by then
    else:
        assert verdict == Suppress("capped")
