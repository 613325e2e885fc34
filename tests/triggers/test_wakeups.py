"""A router in one process routes events stored by another at once (Postgres NOTIFY from the
`events` trigger), not at its next poll, and listens again after losing its connection."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from engine.config.nudge_toml import NudgeConfig
from engine.store.models import Event
from engine.store.outbox import accept
from engine.store.session import make_engine, make_sessionmaker
from engine.store.wakeups import EventListener
from schemas.events import TrackCall
from tests.conftest import split_url
from tests.journeys import TEST_JOURNEYS
from tests.kit import eventually
from triggers.router import Router

NEVER = 3600.0  # the router's poll: only a wake-up routes within the test


@contextlib.asynccontextmanager
async def engine_on(url: str) -> AsyncIterator[AsyncEngine]:
    base, schema = split_url(url)
    engine = make_engine(base, schema=schema)
    try:
        yield engine
    finally:
        await engine.dispose()


async def store(engine: AsyncEngine, message_id: str) -> None:
    """What another process's API does: store an event (no journey reacts to it) and commit."""
    async with make_sessionmaker(engine)() as db:
        call = TrackCall.model_validate(
            {"type": "track", "userId": "waker", "event": "Page Viewed", "messageId": message_id}
        )
        await accept(db, [call])
        await db.commit()


async def routed(engine: AsyncEngine, message_id: str) -> bool:
    async with make_sessionmaker(engine)() as db:
        stamp = await db.scalar(select(Event.routed_at).where(Event.message_id == message_id))
    return stamp is not None


async def test_a_router_routes_what_another_process_stored_without_waiting_for_its_poll(
    postgres_url: str, temporal_client: Client, task_queue: str
) -> None:
    async with engine_on(postgres_url) as mine, engine_on(postgres_url) as theirs:

        async def temporal() -> Client:
            return temporal_client

        router = Router(
            sessionmaker=make_sessionmaker(mine),
            client=temporal,
            journeys=TEST_JOURNEYS,
            config=NudgeConfig(),
            task_queue=task_queue,
            poll_interval=NEVER,
        )
        router.listener = EventListener(mine, router.wake, retry=0.1)
        task = asyncio.create_task(router.run())
        try:

            async def listening() -> int | None:
                return router.listener.backend_pid if router.listener else None

            first = await eventually(listening)
            await store(theirs, "wake-1")
            await eventually(lambda: routed(theirs, "wake-1"))

            # The server ends the listening connection (a restart, a failover): the router
            # listens again on a new one and routes what was stored meanwhile.
            async with theirs.connect() as admin:
                await admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
            await store(theirs, "wake-2")

            async def again() -> bool:
                pid = await listening()
                return pid is not None and pid != first

            await eventually(again)
            await eventually(lambda: routed(theirs, "wake-2"))
            await store(theirs, "wake-3")
            await eventually(lambda: routed(theirs, "wake-3"))
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
