"""Messages: what was sent (or held back), with the reason and every attempt."""

from __future__ import annotations

import base64
from datetime import datetime

from fastapi import APIRouter, Depends, Query
from sqlalchemy.ext.asyncio import AsyncSession

from engine.store import messages
from engine.store.models import Message, User
from engine.store.users import find_user
from schemas.api import FieldError, MessageAttemptOut, MessageDetailOut, MessageOut, Page
from schemas.common import KeyScope
from triggers.api.auth import require
from triggers.api.deps import session
from triggers.api.problems import Problem, problem_responses

router = APIRouter(
    prefix="/v1/messages", tags=["messages"], dependencies=[Depends(require(KeyScope.READ))]
)


def _cursor(message: Message) -> str:
    raw = f"{message.created_at.isoformat()}|{message.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _parse_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        stamp, _, message_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        parsed = datetime.fromisoformat(stamp)
        if parsed.tzinfo is None or not message_id:
            raise ValueError("cursor without zone or id")
        return parsed, message_id
    except (ValueError, UnicodeDecodeError):
        raise Problem(
            400,
            "invalid-cursor",
            "The cursor is not valid",
            errors=[FieldError(field="cursor", message="use the `next` value as given")],
        ) from None


async def _owner(db: AsyncSession, message: Message, known: dict[str, str | None]) -> str | None:
    """The product's id of the message's user (the row holds Nudge's), looked up once."""
    if message.user_id not in known:
        user = await db.get(User, message.user_id)
        known[message.user_id] = user.external_id if user else None
    return known[message.user_id]


@router.get("", responses=problem_responses(400, 422))
async def list_messages(
    user_id: str | None = None,
    cursor: str | None = None,
    limit: int = Query(default=50, ge=1, le=500),
    db: AsyncSession = Depends(session),
) -> Page[MessageOut]:
    """Messages newest first; `user_id` is the product's user id."""
    uid = None
    if user_id is not None:
        user = await find_user(db, external_id=user_id)
        if user is None:
            return Page[MessageOut](items=[])
        uid = user.id
    rows = await messages.list_messages(
        db, user_id=uid, after=_parse_cursor(cursor) if cursor else None, limit=limit + 1
    )
    known: dict[str, str | None] = {}
    items = [MessageOut.of(m, user_id=await _owner(db, m, known)) for m in rows[:limit]]
    return Page[MessageOut](
        items=items, next=_cursor(rows[limit - 1]) if len(rows) > limit else None
    )


@router.get("/{message_id}", responses=problem_responses(404))
async def get_message(message_id: str, db: AsyncSession = Depends(session)) -> MessageDetailOut:
    """A message with every provider call made for it."""
    message = await db.get(Message, message_id)
    if message is None:
        raise Problem(404, "message-not-found", "No such message")
    attempts = await messages.attempts(db, message_id=message_id)
    return MessageDetailOut.of(
        message,
        user_id=await _owner(db, message, {}),
        attempt_log=[MessageAttemptOut.model_validate(a) for a in attempts],
    )
