"""Engagement: tracked links (`GET /c/{code}`, public) and opens reported by app SDKs.

A click on a link Nudge made answers 302 to its target; any other code is a 404 problem,
so `/c/` never redirects anywhere Nudge did not put in a message. Link previewers and
crawlers (told apart by User-Agent, with `crawlerdetect`) are counted apart and never
become events. The first human click and the first open of a message become events
(`Message Clicked`, `Message Opened`) that journeys can wait for or use as a goal.
"""

from __future__ import annotations

import re

from crawlerdetect import CrawlerDetect
from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse
from sqlalchemy.ext.asyncio import AsyncSession

from engine.clock import now
from engine.observability.metrics import CLICKS, OPENS, journey_label
from engine.store import engagement
from engine.store.models import Message
from schemas.api import OpenedBatchOut, OpenedIn, OpenedOut
from schemas.common import KeyScope
from triggers.api.auth import require
from triggers.api.deps import session, state
from triggers.api.problems import Problem, problem_responses

clicks = APIRouter(tags=["engagement"])
opens = APIRouter(
    prefix="/v1/messages", tags=["engagement"], dependencies=[Depends(require(KeyScope.SOURCE))]
)

_crawlers = CrawlerDetect()
# crawlerdetect counts command-line HTTP clients as crawlers; a person trying their own
# link with `curl -i` is a click. Previewers (Slack, WhatsApp, iMessage, Facebook) stay bots.
_PEOPLES_TOOLS = re.compile(r"^(curl|wget|httpie)/", re.IGNORECASE)
_CODE = re.compile(r"^[A-Za-z0-9]{1,32}$")


def is_bot(user_agent: str | None) -> bool:
    """A link previewer or crawler, by its User-Agent (an empty one is not)."""
    if not user_agent or _PEOPLES_TOOLS.match(user_agent):
        return False
    return bool(_crawlers.isCrawler(user_agent))


def _wake(request: Request) -> None:
    router = state(request).router
    if router is not None:
        router.wake()


@clicks.get("/c/{code}", include_in_schema=False)
async def click(
    code: str, request: Request, db: AsyncSession = Depends(session)
) -> RedirectResponse:
    """302 to the link's target; 404 for a code Nudge did not make."""
    if not _CODE.match(code):
        raise Problem(404, "link-not-found", "No such link")
    bot = is_bot(request.headers.get("user-agent"))
    found = await engagement.click(db, code=code, bot=bot, at=now())
    await db.commit()
    if found is None:
        raise Problem(404, "link-not-found", "No such link")
    CLICKS.labels(journey_label(found.journey), "bot" if bot else "human").inc()
    if found.first:
        _wake(request)
    # Never cached: each click is counted.
    return RedirectResponse(found.url, status_code=302, headers={"Cache-Control": "no-store"})


@opens.post("/{message_id}/opened", responses=problem_responses(404))
async def opened(
    message_id: str, request: Request, db: AsyncSession = Depends(session)
) -> OpenedOut:
    """The app showed the message (a push opened): the first report emits `Message Opened`."""
    message, first = await _open(db, message_id)
    await db.commit()
    if message is None:
        raise Problem(404, "message-not-found", "No such message")
    if first:
        _wake(request)
    return OpenedOut(message_id=message_id, first=first)


@opens.post("/opened", responses=problem_responses(413, 422))
async def opened_batch(
    body: OpenedIn, request: Request, db: AsyncSession = Depends(session)
) -> OpenedBatchOut:
    """Many opens at once (an SDK flushing its queue); ids Nudge does not know are listed
    in `unknown`, the others recorded."""
    items, unknown = [], []
    for message_id in dict.fromkeys(body.message_ids):
        message, first = await _open(db, message_id)
        if message is None:
            unknown.append(message_id)
        else:
            items.append(OpenedOut(message_id=message_id, first=first))
    await db.commit()
    if any(item.first for item in items):
        _wake(request)
    return OpenedBatchOut(items=items, unknown=unknown)


async def _open(db: AsyncSession, message_id: str) -> tuple[Message | None, bool]:
    message, first = await engagement.opened(db, message_id=message_id, at=now())
    if first and message is not None:
        OPENS.labels(str(message.channel)).inc()
    return message, first
