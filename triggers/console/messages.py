"""Messages: search by status, journey, template, channel and time, a page at a time; one
message with its attempts; and a template previewed for a user (push card, SMS bubble).

Like the API, the console shows no message body and no address: the preview renders the
template afresh for the user asked for.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.ext.asyncio import AsyncSession

from engine.channels.sms.encoding import TooLong, encode_sms
from engine.delivery.templates import TemplateError
from engine.store import messages, users
from engine.store.messages import MessageFilter
from engine.store.models import Message, User
from schemas.common import Channel, MessageStatus
from triggers.console.views import db, deps, is_fragment, render

router = APIRouter()
PAGE = 50


class BadFilter(ValueError):
    """A search field the console cannot use; the page says which."""


def _cursor(message: Message) -> str:
    raw = f"{message.created_at.isoformat()}|{message.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _after(cursor: str) -> tuple[datetime, str]:
    try:
        stamp, _, message_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        parsed = datetime.fromisoformat(stamp)
    except (ValueError, UnicodeDecodeError):
        raise BadFilter("the page link is not valid: search again") from None
    if parsed.tzinfo is None or not message_id:
        raise BadFilter("the page link is not valid: search again")
    return parsed, message_id


def _time(value: str, field: str) -> datetime | None:
    """A `datetime-local` value (UTC) or an ISO date-time; empty means unbounded."""
    if not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise BadFilter(f"{field}: give a date and time like 2026-12-01T08:00") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _choice(enum: type[MessageStatus] | type[Channel], value: str, field: str) -> Any:
    if not value:
        return None
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(member.value for member in enum)
        raise BadFilter(f"{field}: one of {allowed}") from None


@router.get("/messages", response_class=HTMLResponse)
async def messages_page(
    request: Request,
    status: str = Query(default="", max_length=40),
    journey: str = Query(default="", max_length=100),
    template: str = Query(default="", max_length=200),
    channel: str = Query(default="", max_length=20),
    since: str = Query(default="", max_length=40),
    until: str = Query(default="", max_length=40),
    user: str = Query(default="", max_length=320),
    cursor: str = Query(default="", max_length=400),
    page: str = Query(default="", max_length=10),
    session: AsyncSession = Depends(db),
) -> HTMLResponse:
    """`page=rows` (from htmx's "older messages") answers the next rows only."""
    form = {
        "status": status,
        "journey": journey,
        "template": template,
        "channel": channel,
        "since": since,
        "until": until,
        "user": user,
    }
    base = {
        "form": form,
        "statuses": [s.value for s in MessageStatus],
        "channels": [c.value for c in Channel],
        "journeys": sorted(deps(request).journeys),
    }
    try:
        where = MessageFilter(
            status=_choice(MessageStatus, status, "status"),
            journey=journey or None,
            template=template or None,
            channel=_choice(Channel, channel, "channel"),
            since=_time(since, "since"),
            until=_time(until, "until"),
        )
        after = _after(cursor) if cursor else None
    except BadFilter as exc:
        return render(
            request, "messages.html", {**base, "error": str(exc), "rows": []}, status_code=400
        )
    uid = None
    if user:
        found = await users.find_user(session, external_id=user)
        if found is None:
            chosen = "_messages_rows.html" if is_fragment(request) else "messages.html"
            return render(request, chosen, {**base, "rows": [], "next": None, "error": None})
        uid = found.id
    listed = await messages.list_messages(
        session, user_id=uid, after=after, limit=PAGE + 1, where=where
    )
    owners: dict[str, str | None] = {}
    rows = []
    for message in listed[:PAGE]:
        if message.user_id not in owners:
            owner = await session.get(User, message.user_id)
            owners[message.user_id] = owner.external_id if owner else None
        rows.append((message, owners[message.user_id]))
    query = {key: value for key, value in form.items() if value}
    next_cursor = _cursor(listed[PAGE - 1]) if len(listed) > PAGE else None
    context = {**base, "rows": rows, "next": next_cursor, "query": query, "error": None}
    if is_fragment(request):
        return render(
            request, "_message_page.html" if page == "rows" else "_messages_rows.html", context
        )
    return render(request, "messages.html", context)


@router.get("/messages/{message_id}", response_class=HTMLResponse)
async def message_page(
    request: Request, message_id: str, session: AsyncSession = Depends(db)
) -> HTMLResponse:
    message = await session.get(Message, message_id)
    if message is None:
        return render(request, "error.html", {"message": "no such message"}, status_code=404)
    owner = await session.get(User, message.user_id)
    link = (
        deps(request).run_link(message.workflow_id, None)
        if message.workflow_id and message.journey
        else None
    )
    return render(
        request,
        "message.html",
        {
            "message": message,
            "owner": owner.external_id if owner else None,
            "attempts": await messages.attempts(session, message_id=message_id),
            "run_link": link,
        },
    )


@router.get("/preview", response_class=HTMLResponse)
async def preview_page(
    request: Request,
    template: str = Query(default="", max_length=300),
    user: str = Query(default="", max_length=320),
    session: AsyncSession = Depends(db),
) -> HTMLResponse:
    """`template` is JOURNEY/TEMPLATE; rendered for `user` as a send would render it."""
    console = deps(request)
    context: dict[str, Any] = {"template": template, "user": user, "error": None}
    context["choices"] = [
        f"{journey}/{name}"
        for journey in sorted(console.journeys)
        for name in console.templates.names(journey)
    ]
    if not template or not user:
        return render(request, "preview.html", context)
    journey, _, name = template.partition("/")
    found = await users.find_user(session, external_id=user)
    if not name:
        context["error"] = "choose the template as JOURNEY/TEMPLATE"
    elif found is None:
        context["error"] = f"no user {user!r}"
    if context["error"]:
        return render(request, "preview.html", context, status_code=400)
    assert found is not None
    try:
        content = console.templates.render(
            journey,
            name,
            locale=found.locale,
            context={
                "user": users.profile_context(found),
                "event": {"name": "preview", "properties": {}},
                "settings": {},
                "variant": None,
            },
        )
    except TemplateError as exc:
        context["error"] = f"render_failed: {exc}"
        return render(request, "preview.html", context, status_code=422)
    context["content"] = content
    context["locale"] = found.locale or "default"
    if content.sms:
        limit = console.context.config.channels.sms.max_parts
        try:
            encoded = encode_sms(content.sms, max_parts=limit, reference=0)
            context["sms"] = {"encoding": encoded.encoding, "parts": encoded.part_count}
        except TooLong:
            context["sms"] = {"encoding": f"too long (over {limit} parts)", "parts": None}
    return render(request, "preview.html", context)
