"""Engagement with a message: a click on one of its tracked links, an open an app reports.

Each is recorded once per message (the message belongs to one user), and the first one
becomes an event through the outbox (`Message Clicked`, `Message Opened`), which the
router delivers to the user's runs like any other: journeys `wait_for` it or use it as a
goal. Repeats and bot clicks are only counted. Keyword-only functions that never commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from engine.store import outbox
from engine.store.models import Link, Message
from engine.store.rows import for_update, lock

CLICKED = "Message Clicked"
OPENED = "Message Opened"


@dataclass(frozen=True)
class Click:
    """Where a click goes, and whether it was the message's first human click."""

    url: str
    first: bool
    message_id: str
    journey: str | None


def event_properties(message: Message) -> dict[str, Any]:
    """What a click or open event says about its message (no address, no text)."""
    return {
        "message_id": message.id,
        "journey": message.journey,
        "step": message.step,
        "template": message.template,
        "channel": str(message.channel),
        "variant": message.variant,
    }


async def click(session: AsyncSession, *, code: str, bot: bool, at: datetime) -> Click | None:
    """Record a click on the link `code`: None if Nudge made no such link (so `/c/` is no
    open redirect). A human's first click on any of the message's links stamps the message
    and emits `Message Clicked`; later clicks and `bot` clicks (previewers, crawlers) are
    counted on the link only."""
    link = (
        await session.scalars(for_update(session, select(Link).where(Link.code == code)))
    ).first()
    if link is None:
        return None
    if bot:
        link.bot_clicks += 1
        journey = await session.scalar(select(Message.journey).where(Message.id == link.message_id))
        return Click(url=link.url, first=False, message_id=link.message_id, journey=journey)
    link.clicks += 1
    if link.clicked_at is None:
        link.clicked_at = at
    message = await lock(session, Message, link.message_id)
    first = message is not None and message.clicked_at is None
    if message is not None and first:
        message.clicked_at = at
        await outbox.add_event(
            session,
            user_id=message.user_id,
            name=CLICKED,
            message_id=f"click:{message.id}",
            properties={**event_properties(message), "link": code},
            source="click",
            timestamp=at,
            received_at=at,
        )
    journey = message.journey if message is not None else None
    return Click(url=link.url, first=first, message_id=link.message_id, journey=journey)


async def opened(
    session: AsyncSession, *, message_id: str, at: datetime
) -> tuple[Message | None, bool]:
    """Record that the app showed the message: the first report stamps it and emits
    `Message Opened` (True); repeats change nothing (False). None for an unknown message."""
    message = await lock(session, Message, message_id)
    if message is None or message.opened_at is not None:
        return message, False
    message.opened_at = at
    await outbox.add_event(
        session,
        user_id=message.user_id,
        name=OPENED,
        message_id=f"open:{message.id}",
        properties=event_properties(message),
        source="open",
        timestamp=at,
        received_at=at,
    )
    return message, True


__all__ = ["CLICKED", "OPENED", "Click", "click", "event_properties", "opened"]
