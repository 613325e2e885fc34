"""Tracked links and opens on the whole product: a short link in an SMS is clicked over
HTTP, the click becomes `Message Clicked`, which ends the run's `wait_for` and is its goal;
the funnel shows it. Repeats and bots are counted apart; unknown codes are 404 problems."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select
from temporalio.client import Client

from engine.config.settings import Settings
from engine.store.models import Event, Link
from tests.journeys import TClick
from tests.kit import Stack, eventually

TARGET = "https://shop.example/cart?id=42"
BASE = Settings().link_base_url


@pytest.fixture
async def stack(postgres_url: str, temporal_client: Client, task_queue: str) -> Any:
    async with Stack(
        database_url=postgres_url,
        client=temporal_client,
        task_queue=task_queue,
        journeys={"t_click": TClick},
    ) as s:
        yield s


async def _texted(stack: Stack, user: str) -> tuple[str, str]:
    """Start the user's run; (message id, short link) of the SMS it sent."""
    await stack.profile(user, phone="+14155550100")
    await stack.consent(user, "sms", "subscribed")
    await stack.track(user, "Click Start")
    await stack.wait_step(user, "wait:Message Clicked")
    [message] = [m for m in await stack.messages(user) if m["status"] == "sent"]
    [sms] = [m for m in stack.console.sent if m.message_id == message["id"]]
    assert sms.content.sms is not None
    link = next(word for word in sms.content.sms.split() if word.startswith(BASE))
    return message["id"], link


async def test_a_click_ends_the_wait_and_converts(stack: Stack) -> None:
    message_id, link = await _texted(stack, "cleo")
    assert len(link) == len(BASE) + len("/c/") + 10  # short: SMS parts count it
    path = urlsplit(link).path
    # A link previewer first: redirected, counted apart, no event.
    preview = await stack.http.get(path, headers={"user-agent": "Slackbot-LinkExpanding 1.0"})
    assert (preview.status_code, preview.headers["location"]) == (302, TARGET)
    clicked = await stack.http.get(path, headers={"user-agent": "curl/8.5.0"})
    assert (clicked.status_code, clicked.headers["location"]) == (302, TARGET)
    again = await stack.http.get(path, headers={"user-agent": "Mozilla/5.0 (iPhone)"})
    assert again.status_code == 302
    [run] = await stack.wait_closed("cleo")
    assert run["outcome"] == "clicked" and run["converted_at"] is not None
    assert run["conversion_message_id"] == message_id
    async with stack.context.sessions() as db:
        row = await db.scalar(select(Link).where(Link.code == path.rsplit("/", 1)[1]))
        events = list(await db.scalars(select(Event).where(Event.name == "Message Clicked")))
    assert row is not None and (row.clicks, row.bot_clicks) == (2, 1)
    [event] = events  # once per message
    assert event.properties["message_id"] == message_id
    assert (event.properties["journey"], event.properties["step"]) == ("t_click", "link_sms")
    detail = await stack.call("GET", f"/v1/messages/{message_id}")
    assert detail["clicked_at"] is not None
    stats = await stack.call("GET", "/v1/journeys/t_click/stats")
    [step] = stats["steps"]
    assert (step["step"], step["sent"], step["clicked"]) == ("link_sms", 1, 1)
    assert (stats["finished"], stats["converted"]) == ({"clicked": 1}, 1)


async def test_unknown_links_are_404_and_opens_are_recorded_once(stack: Stack) -> None:
    for path in ("/c/notacode00", "/c/..%2Fevil", "/c/" + "x" * 40):
        missing = await stack.http.get(path)
        assert missing.status_code == 404, path
        assert missing.headers["content-type"] == "application/problem+json"
        assert "location" not in missing.headers
    message_id, _ = await _texted(stack, "dan")
    first = await stack.call("POST", f"/v1/messages/{message_id}/opened")
    assert first == {"message_id": message_id, "first": True}
    batch = await stack.call("POST", "/v1/messages/opened", {"message_ids": [message_id, "m_0"]})
    assert batch == {"items": [{"message_id": message_id, "first": False}], "unknown": ["m_0"]}
    assert (await stack.http.post("/v1/messages/m_0/opened")).status_code == 404

    async def opened() -> list[Event] | None:
        async with stack.context.sessions() as db:
            found = list(await db.scalars(select(Event).where(Event.name == "Message Opened")))
        return found or None

    [event] = await eventually(opened)
    assert event.properties["message_id"] == message_id
    stats = await stack.call("GET", "/v1/journeys/t_click/stats")
    assert stats["steps"][0]["opened"] == 1
