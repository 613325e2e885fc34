"""The consent log: append-only per user, channel and topic; current state is derived.

A log entry with topic `all` speaks for every topic of the channel (an SMS STOP, a START),
so the current state of (channel, topic) is the newest entry for that topic or for `all`.
What a state allows at send time is the policy's decision (`engine.policy.consent`).
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, ScalarSelect, select
from sqlalchemy.ext.asyncio import AsyncSession

from engine.clock import now
from engine.store import webhooks
from engine.store.models import Consent
from engine.store.outbox import add_event
from schemas.common import (
    ALL_TOPICS,
    MARKETING,
    OPT_IN_REQUESTED,
    TRANSACTIONAL,
    ConsentSource,
    ConsentState,
)

__all__ = [
    "ALL_TOPICS",
    "MARKETING",
    "OPT_IN_REQUESTED",
    "TRANSACTIONAL",
    "ConsentSource",
    "ConsentState",
    "current",
    "log",
    "opt_in_requested",
    "record",
    "state_query",
    "states",
]


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
        state=state,
        source=source,
        evidence=evidence,
        actor=actor,
        created_at=now(),
    )
    session.add(entry)
    await session.flush()
    await webhooks.enqueue(
        session,
        kind="consent.changed",
        payload={
            "channel": channel,
            "topic": topic,
            "state": str(state),
            "source": str(source),
            "actor": actor,
        },
        user_id=user_id,
        at=entry.created_at,
    )
    return entry


def state_query(
    *,
    user_id: str | ColumnElement[str],
    channel: str | ColumnElement[str],
    topic: str | ColumnElement[str],
) -> ScalarSelect[str]:
    """The state of (channel, topic) as a scalar subquery (NULL when never set), so callers
    can read it in the same statement as other facts (values, or `bindparam`s)."""
    return (
        select(Consent.state)
        .where(
            Consent.user_id == user_id,
            Consent.channel == channel,
            Consent.topic.in_([topic, ALL_TOPICS]),
        )
        .order_by(Consent.id.desc())
        .limit(1)
        .scalar_subquery()
    )


async def current(session: AsyncSession, *, user_id: str, channel: str, topic: str) -> ConsentState:
    """The state of (channel, topic) now: the newest entry for the topic or for `all`."""
    newest = await session.scalar(
        select(state_query(user_id=user_id, channel=channel, topic=topic))
    )
    return ConsentState(newest) if newest else ConsentState.UNKNOWN


async def opt_in_requested(session: AsyncSession, *, user_id: str, topic: str, source: str) -> None:
    """Store the event that starts the SMS double opt-in journey (the outbox routes it)."""
    stamp = now()
    await add_event(
        session,
        user_id=user_id,
        name=OPT_IN_REQUESTED,
        message_id=f"opt-in:{user_id}:{stamp.isoformat()}",
        properties={"topic": topic, "source": source},
        source="consent",
        timestamp=stamp,
        received_at=stamp,
    )


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
