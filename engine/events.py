"""Accepting events: stored before the API answers, deduplicated by `messageId`."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from engine import ids
from engine.db.models import Event
from engine.db.upsert import insert_ignore
from engine.metrics import EVENTS_ACCEPTED
from engine.users import apply_profile, ensure_user, now
from schemas.events import IdentifyCall, TrackCall

Call = TrackCall | IdentifyCall


@dataclass
class Accepted:
    """What `accept` did: stored message ids, and how many were repeats."""

    message_ids: list[str] = field(default_factory=list)
    duplicates: int = 0
    stored: int = 0


async def accept(session: AsyncSession, calls: list[Call]) -> Accepted:
    """Store every call as an event row (the router's outbox). A repeated `messageId` is
    accepted and ignored. `identify` traits update the profile, once per message id.

    A bad trait raises `engine.users.ProfileError`; the caller then rolls back, so nothing
    of the call is stored. The caller commits.
    """
    accepted = Accepted()
    received = now()
    for call in calls:
        message_id = call.message_id or ids.new_message_id()
        accepted.message_ids.append(message_id)
        user = await ensure_user(session, external_id=call.user_id, anonymous_id=call.anonymous_id)
        if isinstance(call, IdentifyCall):
            name, properties = "Identify", dict(call.traits)
        else:
            name, properties = call.event, dict(call.properties)
        inserted = await insert_ignore(
            session,
            Event,
            {
                "message_id": message_id,
                "user_id": user.id,
                "type": call.type,
                "name": name,
                "properties": properties,
                "context": dict(call.context),
                "timestamp": call.timestamp or received,
                "received_at": received,
                "route_attempts": 0,
            },
            conflict=["message_id"],
        )
        if inserted:
            if isinstance(call, IdentifyCall):  # once per message id: a repeat changes nothing
                apply_profile(user, call.traits)
            accepted.stored += 1
            EVENTS_ACCEPTED.labels(call.type).inc()
        else:
            accepted.duplicates += 1
    return accepted
