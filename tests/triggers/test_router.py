"""The router: several routers at once keep each user's order; a poison event is set aside."""

from __future__ import annotations

import asyncio
import contextlib

from sqlalchemy import select
from temporalio.client import Client

from engine.config.nudge_toml import NudgeConfig
from engine.store.models import Event
from tests.harness import Stack
from tests.journeys import TEST_JOURNEYS
from triggers.router import Router


def stack(url: str, client: Client, queue: str) -> Stack:
    config = NudgeConfig.model_validate({"journeys": {"t_sequence": {"wait": "5s"}}})
    return Stack(
        database_url=url, client=client, task_queue=queue, journeys=TEST_JOURNEYS, config=config
    )


async def test_three_routers_keep_every_users_events_in_order(
    postgres_url: str, temporal_client: Client, task_queue: str
) -> None:
    async with stack(postgres_url, temporal_client, task_queue) as s:

        async def temporal() -> Client:
            return temporal_client

        extra = [
            Router(
                sessionmaker=s.context.sessions,
                client=temporal,
                journeys=TEST_JOURNEYS,
                config=s.config,
                task_queue=task_queue,
                poll_interval=0.05,
            )
            for _ in range(2)
        ]
        tasks = [asyncio.create_task(r.run()) for r in extra]
        try:
            users = [f"multi-{i}" for i in range(12)]
            for user in users:
                await s.device(user)
            await s.call(
                "POST",
                "/v1/batch",
                {
                    "batch": [
                        {"type": "track", "userId": u, "event": e}
                        for u in users
                        for e in ("Seq Start", "Seq Stop")
                    ]
                },
            )
            for user in users:
                runs = await s.wait_closed(user, timeout=120)
                assert runs[0]["status"] == "exited", (user, runs[0])
                assert await s.messages(user) == []
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


async def test_an_event_temporal_refuses_is_set_aside_and_others_flow(
    postgres_url: str, temporal_client: Client, task_queue: str
) -> None:
    async with stack(postgres_url, temporal_client, task_queue) as s:
        await s.device("good")
        # A key this long would make a workflow id Temporal refuses (over 1,000 characters).
        await s.track("poison", "Cart Touched", {"cart_id": "k" * 1200})
        await s.track("good", "Cart Touched", {"cart_id": "c1"})
        runs = await s.wait_closed("good", timeout=120)
        assert runs[0]["outcome"] == "sent:None"
        async with s.context.sessions() as db:
            poison = (
                await db.scalars(
                    select(Event).where(Event.name == "Cart Touched").order_by(Event.id)
                )
            ).first()
        assert poison is not None and poison.routed_at is not None
        assert poison.route_error and "longer than" in poison.route_error
