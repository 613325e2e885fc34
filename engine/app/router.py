"""The outboxes' wiring: the event router and the webhook dispatcher, in `nudge router` (their
own process) or inside `nudge api`."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable

from temporalio.client import Client

from engine.app.heap import settle
from engine.app.journeys import check_overrides, shipped_journeys
from engine.app.temporal import TemporalConnection
from engine.config.settings import Settings, require_encryption
from engine.context import Context
from engine.journey import Journeys
from engine.store.data_keys import StoreUserKeys
from triggers.router import Router
from triggers.webhooks import WebhookDispatcher

__all__ = ["Router", "build_dispatcher", "build_router", "run_router"]


def build_router(
    context: Context,
    client: Callable[[], Awaitable[Client]],
    *,
    journeys: Journeys | None = None,
    task_queue: str | None = None,
    poll_interval: float | None = None,
) -> Router:
    """A router for `journeys` (default: the shipped ones) on the context's database."""
    settings = context.settings
    return Router(
        sessionmaker=context.sessions,
        client=client,
        journeys=journeys if journeys is not None else shipped_journeys(),
        config=context.config,
        task_queue=task_queue or settings.task_queue,
        poll_interval=settings.router_poll_interval if poll_interval is None else poll_interval,
        version=settings.build_id,
    )


def build_dispatcher(
    context: Context, client: Callable[[], Awaitable[Client]]
) -> WebhookDispatcher:
    """The webhook dispatcher on the context's database (idle without `[[webhooks]]`)."""
    return WebhookDispatcher(
        sessionmaker=context.sessions,
        client=client,
        config=context.config,
        task_queue=context.settings.task_queue,
        poll_interval=context.settings.router_poll_interval,
    )


async def run_router(settings: Settings) -> None:
    """`nudge router`: route the outbox into Temporal until SIGTERM/SIGINT. Run as many as
    you like on one Postgres: they share the backlog and keep each user's order."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with Context.opened(settings) as context:
        require_encryption(settings)
        check_overrides(context.config, settings)
        temporal = TemporalConnection(settings, user_keys=StoreUserKeys(context.sessions)).get
        tasks = [
            asyncio.create_task(build_router(context, temporal).run()),
            asyncio.create_task(build_dispatcher(context, temporal).run()),
        ]
        settle()
        await stop.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
