"""engine.policy.consent: what the current consent state allows at send time. Pure."""

from __future__ import annotations

import pytest

from engine.policy.consent import allows, topic_for
from schemas.common import MARKETING, TRANSACTIONAL, ConsentState


def test_a_send_is_checked_against_its_topic() -> None:
    assert topic_for(transactional=False) == MARKETING
    assert topic_for(transactional=True) == TRANSACTIONAL


@pytest.mark.parametrize(
    ("state", "marketing", "transactional"),
    [
        (ConsentState.SUBSCRIBED, True, True),
        (ConsentState.UNKNOWN, False, True),
        (ConsentState.PENDING, False, True),
        (ConsentState.UNSUBSCRIBED, False, False),
    ],
)
def test_marketing_needs_an_opt_in_transactional_only_no_opt_out(
    state: ConsentState, marketing: bool, transactional: bool
) -> None:
    assert allows(state, transactional=False) is marketing
    assert allows(state, transactional=True) is transactional


def test_every_state_is_decided() -> None:
    # A new state must be placed in the table above: the rule may not fall through.
    assert set(ConsentState) == {
        ConsentState.SUBSCRIBED,
        ConsentState.UNKNOWN,
        ConsentState.PENDING,
        ConsentState.UNSUBSCRIBED,
    }
