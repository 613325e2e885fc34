"""The gate decision at the moment of a send, as pure functions over facts the caller loaded.

Order: holdout → address → consent → quiet hours → frequency caps. The first rule that
holds a message back decides: it is suppressed with a reason, or deferred to an instant.
`engine.delivery.gate` loads the facts in one short transaction and reserves the message's
slot in the same transaction when the gate lets it through, so concurrent sends to one user
cannot both pass a cap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from engine.config.nudge_toml import Cap, QuietHours
from engine.policy import consent
from engine.policy.caps import next_free_at, over_cap
from engine.policy.quiet_hours import quiet_until, release_time
from schemas.common import ConsentState


@dataclass(frozen=True)
class Suppress:
    """Not sent, ever, for `reason` (`holdout`, `no_address`, `no_consent`,
    `quiet_hours_dropped`, `capped`, `render_failed`)."""

    reason: str


@dataclass(frozen=True)
class Defer:
    """Held until `until` (UTC), then the gate runs again; `reason` is `quiet_hours` or `capped`."""

    until: datetime
    reason: str


Verdict = Suppress | Defer | None
"""None: nothing holds the message back."""


@dataclass(frozen=True)
class SendFacts:
    """What the gate knows about one send before caps are counted."""

    now: datetime
    zone: str
    channel: str
    transactional: bool
    holdout: bool
    reachable: bool
    """The user exists, is not erased, and has at least one address on the channel."""
    consent: ConsentState
    """The current state of the consent topic the send is checked against."""


def before_caps(facts: SendFacts, quiet: QuietHours, *, rand: float) -> Verdict:
    """Holdout, address, consent and quiet hours. `rand` in [0, 1) spreads quiet-hours
    releases over `quiet.release_jitter`."""
    if facts.holdout:
        return Suppress("holdout")
    if not facts.reachable:
        return Suppress("no_address")
    if not consent.allows(facts.consent, transactional=facts.transactional):
        return Suppress("no_consent")
    end = quiet_until(
        facts.now,
        zone=facts.zone,
        quiet=quiet,
        channel=facts.channel,
        transactional=facts.transactional,
    )
    if end is None:
        return None
    if quiet.action == "drop":
        return Suppress("quiet_hours_dropped")
    return Defer(release_time(end, jitter=quiet.release_jitter, rand=rand), "quiet_hours")


def over_caps(
    now: datetime,
    caps: Sequence[tuple[Cap, Sequence[datetime]]],
    *,
    zone: str,
    deferrals: int,
) -> Verdict:
    """The first cap whose window is full: deferred to the next free slot when the cap says
    `defer` (at most `max_deferrals` times), otherwise suppressed `capped`.

    `caps` pairs each applicable cap with the send times its window counts (see
    `engine.policy.caps`: a message counts from its `sent_at`, or from its reservation while
    it is still being sent).
    """
    for cap, sent_at in caps:
        if not over_cap(now, cap, zone=zone, sent_at=sent_at):
            continue
        if cap.on_capped == "defer" and deferrals < cap.max_deferrals:
            free = next_free_at(now, cap, zone=zone, sent_at=sent_at)
            if free is not None:
                return Defer(free, "capped")
        return Suppress("capped")
    return None
