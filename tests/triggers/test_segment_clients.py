"""The official Segment-protocol clients, unmodified, against the real API over HTTP: every
call of a mixed batch (identify, track, page, screen, group, alias) is stored, none lost,
and the track starts its journey."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import uvicorn
from sqlalchemy import select
from temporalio.client import Client

from engine.app.journeys import shipped_journeys
from engine.store.keys import create_key
from engine.store.models import Event, JourneyRun, User
from schemas.common import KeyScope
from tests.clients.official import (
    SendReport,
    mixed_calls,
    send_analytics_node,
    send_rudder_python,
    send_segment_python,
)
from tests.harness import Stack, eventually


@contextlib.asynccontextmanager
async def served(s: Stack) -> AsyncIterator[str]:
    """The stack's API on a real socket (127.0.0.1, a free port); its base URL."""
    server = uvicorn.Server(
        uvicorn.Config(s.app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    )
    serving = asyncio.create_task(server.serve())
    await eventually(lambda: _started(server), timeout=120)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving


async def _started(server: uvicorn.Server) -> bool:
    return bool(server.started)


Sender = Callable[..., Awaitable[SendReport]]
CLIENTS: dict[str, tuple[Sender, dict[str, bool]]] = {
    "segment-python": (send_segment_python, {}),
    "segment-python-gzip": (send_segment_python, {"gzip": True}),
    "rudder-python": (send_rudder_python, {}),
    "analytics-node": (send_analytics_node, {}),
}


@pytest.mark.parametrize("client", list(CLIENTS))
async def test_an_official_client_loses_nothing(
    client: str, postgres_url: str, temporal_client: Client, task_queue: str
) -> None:
    send, options = CLIENTS[client]
    user = f"ada-{client}"
    async with Stack(
        database_url=postgres_url,
        client=temporal_client,
        task_queue=task_queue,
        journeys=shipped_journeys(),
    ) as s:
        async with s.context.sessions() as db:
            source_key = await create_key(db, name="app", scope=KeyScope.SOURCE)
            await db.commit()
        async with served(s) as base_url:
            report = await send(base_url, source_key, user_id=user, **options)
        report.raise_for_errors()
        wanted = {call.message_id for call in mixed_calls(user_id=user)}
        assert set(report.message_ids) == wanted

        async def stored() -> set[str] | None:
            async with s.context.sessions() as db:
                found = set(
                    await db.scalars(select(Event.message_id).where(Event.message_id.in_(wanted)))
                )
            return found if found == wanted else None

        await eventually(stored, timeout=120)

        async def cart_run() -> JourneyRun | None:
            async with s.context.sessions() as db:
                return (
                    await db.scalars(
                        select(JourneyRun).where(JourneyRun.journey == "abandoned_cart")
                    )
                ).first()

        run = await eventually(cart_run, timeout=120)
        async with s.context.sessions() as db:
            profile = await db.get(User, run.user_id)
            names = dict(
                (
                    await db.execute(
                        select(Event.type, Event.name).where(Event.user_id == run.user_id)
                    )
                ).all()
            )
        assert profile is not None and profile.external_id == user
        assert profile.email == f"{user}@example.com"  # identify traits (rudder: context.traits)
        assert profile.timezone == "Europe/Berlin" and profile.locale == "de-DE"  # from context
        assert profile.attributes["group_id"] == f"org-{user}"
        assert names["page"] == "Page Viewed" and names["screen"] == "Screen Viewed"
