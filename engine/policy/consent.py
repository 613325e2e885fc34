"""Consent: an append-only log per user, channel and topic; current state is derived.

A log entry with topic `all` speaks for every topic of the channel (an SMS STOP, a START),
so the current state of (channel, topic) is the newest entry for that topic or for `all`.
Marketing sends need `subscribed`; transactional sends need that the channel and the
`transactional` topic are not `unsubscribed`.
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from engine.db.models import Consent, Event
from engine.users import now

ALL_TOPICS = "all"
MARKETING = "marketing"
TRANSACTIONAL = "transactional"


class ConsentState(StrEnum):
    UNKNOWN = "unknown"
    PENDING = "pending"
    SUBSCRIBED = "subscribed"
    UNSUBSCRIBED = "unsubscribed"


class ConsentSource(StrEnum):
    API = "api"
    SMS_KEYWORD = "sms_keyword"
    FORM = "form"
    IMPORT = "import"
    DEVICE = "device"


async def record(
    session: AsyncSession,
    *,
    user_id: str,
    channel: str,
    topic: str,
    state: ConsentState,
    source: ConsentSource,
    evidence: str | None = None,
    actor: str | None = None,
) -> Consent:
    """Append one entry to the log (never updates or deletes). The caller commits."""
    entry = Consent(
        user_id=user_id,
        channel=channel,
        topic=topic,
        state=state.value,
        source=source.value,
        evidence=evidence,
        actor=actor,
        created_at=now(),
    )
    session.add(entry)
    await session.flush()
    return entry


async def current(session: AsyncSession, *, user_id: str, channel: str, topic: str) -> ConsentState:
    """The state of (channel, topic) now: the newest entry for the topic or for `all`."""
    newest = await session.scalar(
        select(Consent.state)
        .where(
            Consent.user_id == user_id,
            Consent.channel == channel,
            Consent.topic.in_([topic, ALL_TOPICS]),
        )
        .order_by(Consent.id.desc())
        .limit(1)
    )
    return ConsentState(newest) if newest else ConsentState.UNKNOWN


async def allows(session: AsyncSession, *, user_id: str, channel: str, transactional: bool) -> bool:
    """Whether the consent log allows a send now."""
    if transactional:
        state = await current(session, user_id=user_id, channel=channel, topic=TRANSACTIONAL)
        return state is not ConsentState.UNSUBSCRIBED
    state = await current(session, user_id=user_id, channel=channel, topic=MARKETING)
    return state is ConsentState.SUBSCRIBED


OPT_IN_REQUESTED = "SMS Opt-In Requested"


async def opt_in_requested(session: AsyncSession, *, user_id: str, topic: str, source: str) -> None:
    """Store the event that starts the SMS double opt-in journey (the outbox routes it)."""
    stamp = now()
    session.add(
        Event(
            message_id=f"opt-in:{user_id}:{stamp.isoformat()}",
            user_id=user_id,
            type="track",
            name=OPT_IN_REQUESTED,
            properties={"topic": topic, "source": source},
            context={"source": "consent"},
            timestamp=stamp,
            received_at=stamp,
            route_attempts=0,
        )
    )
    await session.flush()


async def log(session: AsyncSession, *, user_id: str, channel: str | None = None) -> list[Consent]:
    query = select(Consent).where(Consent.user_id == user_id)
    if channel is not None:
        query = query.where(Consent.channel == channel)
    return list(await session.scalars(query.order_by(Consent.id)))


async def states(session: AsyncSession, *, user_id: str, channel: str) -> dict[str, ConsentState]:
    """Current state per topic that has ever been set on `channel` (plus marketing)."""
    topics = set(
        await session.scalars(
            select(Consent.topic).where(Consent.user_id == user_id, Consent.channel == channel)
        )
    )
    topics |= {MARKETING, TRANSACTIONAL}
    topics.discard(ALL_TOPICS)
    return {
        topic: await current(session, user_id=user_id, channel=channel, topic=topic)
        for topic in sorted(topics)
    }
