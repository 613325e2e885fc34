"""The Nudge side's chores, through the product's public pieces: events into the outbox
(`engine.store.outbox.accept`), users with a push device, a router on a dev server."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from temporalio.client import Client

from bench._common import DevServer
from engine.app.router import build_router
from engine.context import Context
from engine.store import devices
from engine.store.outbox import accept
from engine.store.users import ensure_user
from schemas.common import Platform
from schemas.events import TrackCall
from tests.journeys import TEST_JOURNEYS
from triggers.router import Router

TASK_QUEUE = "bench"
ACCEPT_CHUNK = 100  # calls per `accept` transaction, as a `/v1/batch` of 100 would be
SETUP_CONCURRENCY = 4  # transactions at once while setting up (not timed)


def touch(user: str, cart: str, *, message_id: str | None = None) -> dict[str, Any]:
    """A "Cart Touched" track call (Segment JSON): the trigger of `t_keyed`, one run per
    (user, cart)."""
    body: dict[str, Any] = {
        "type": "track",
        "userId": user,
        "event": "Cart Touched",
        "properties": {"cart_id": cart},
    }
    if message_id is not None:
        body["messageId"] = message_id
    return body


def opener(user: str, n: int) -> dict[str, Any]:
    """The trigger of a long-lived run that never hears "Cart Touched" nor the other
    opener: "Order Placed" (`t_order`, keyed by order) when `n` is even, "Seq Start"
    (`t_sequence`) when odd. Without a worker, both stay open."""
    if n % 2 == 0:
        event, properties = "Order Placed", {"order_id": f"o{n}"}
    else:
        event, properties = "Seq Start", {}
    return {"type": "track", "userId": user, "event": event, "properties": properties}


async def accept_all(context: Context, bodies: Sequence[dict[str, Any]]) -> None:
    """Store `bodies` as events with `accept`, `ACCEPT_CHUNK` a transaction, a few
    transactions at once (each user's calls stay in one chunk's order)."""
    calls = [TrackCall.model_validate(body) for body in bodies]
    chunks = [calls[i : i + ACCEPT_CHUNK] for i in range(0, len(calls), ACCEPT_CHUNK)]
    gate = asyncio.Semaphore(SETUP_CONCURRENCY)

    async def store(chunk: list[TrackCall]) -> None:
        async with gate, context.sessions() as db:
            await accept(db, list(chunk))
            await db.commit()

    await asyncio.gather(*(store(chunk) for chunk in chunks))


async def users_with_devices(context: Context, names: Sequence[str]) -> dict[str, str]:
    """Create users `names`, each with one iOS device (which subscribes them to marketing
    push); returns external id -> internal id."""
    gate = asyncio.Semaphore(SETUP_CONCURRENCY)
    found: dict[str, str] = {}

    async def one(name: str) -> None:
        async with gate, context.sessions() as db:
            user = await ensure_user(db, external_id=name)
            await devices.register(db, user=user, platform=Platform.IOS, token=f"tok-{name}")
            await db.commit()
            found[name] = user.id

    await asyncio.gather(*(one(name) for name in names))
    return found


def router(context: Context, server: DevServer) -> Router:
    """A router over the test journeys (`tests.journeys.TEST_JOURNEYS`) on `server`,
    built as `nudge router` builds its own."""

    async def client() -> Client:
        return server.client

    return build_router(context, client, journeys=TEST_JOURNEYS, task_queue=TASK_QUEUE)
