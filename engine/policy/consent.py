"""The consent rule at send time: what the consent log (`engine.store.consent`) allows.

A marketing send is checked against the channel's `marketing` topic and needs an explicit
`subscribed`; a transactional send is checked against the `transactional` topic and only
needs it not to be `unsubscribed` (an SMS STOP, topic `all`, stops those too).
"""

from __future__ import annotations

from schemas.common import MARKETING, TRANSACTIONAL, ConsentState


def topic_for(*, transactional: bool) -> str:
    """The consent topic a send is checked against."""
    return TRANSACTIONAL if transactional else MARKETING


def allows(state: ConsentState, *, transactional: bool) -> bool:
    """Whether a send may go out, given the current state of `topic_for(transactional)`."""
    if transactional:
        return state is not ConsentState.UNSUBSCRIBED
    return state is ConsentState.SUBSCRIBED
