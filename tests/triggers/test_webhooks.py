"""Webhooks out: signed (Standard Webhooks), retried by Temporal while the receiver is down,
each event delivered under one id however often it was tried."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from temporalio.client import Client

from engine.app.router import build_dispatcher
from engine.config.nudge_toml import NudgeConfig
from engine.store import webhooks
from tests.harness import Stack, eventually, sent
from tests.journeys import TEST_JOURNEYS
from tests.peers.webhooks import WebhookReceiver

KINDS = ["message.sent", "journey.entered", "journey.completed", "consent.changed"]


@contextlib.asynccontextmanager
async def stack_with_webhooks(
    url: str, client: Client, task_queue: str, receiver: WebhookReceiver
) -> AsyncIterator[Stack]:
    config = NudgeConfig.model_validate(
        {
            "webhooks": [
                {
                    "name": "crm",
                    "url": receiver.url,
                    "events": KINDS,
                    "secret_env": "TEST_WEBHOOK_SECRET",
                    "max_retry_interval": "2s",
                }
            ]
        }
    )
    async with Stack(
        database_url=url,
        client=client,
        task_queue=task_queue,
        journeys=TEST_JOURNEYS,
        config=config,
    ) as s:

        async def temporal() -> Client:
            return client

        dispatching = asyncio.create_task(build_dispatcher(s.context, temporal).run())
        try:
            yield s
        finally:
            dispatching.cancel()
            await asyncio.gather(dispatching, return_exceptions=True)


async def _deliveries(s: Stack) -> list[tuple[str, int, str]]:
    async with s.context.sessions() as db:
        rows = await webhooks.deliveries(db, limit=500)
    return [(event.kind, delivery.attempts, delivery.status) for delivery, event in rows]


async def test_a_receiver_that_was_down_gets_every_event_once_signed(
    postgres_url: str,
    temporal_client: Client,
    task_queue: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with WebhookReceiver() as receiver:
        monkeypatch.setenv("TEST_WEBHOOK_SECRET", receiver.secret)
        await receiver.down()
        async with stack_with_webhooks(postgres_url, temporal_client, task_queue, receiver) as s:
            await s.device("wes")  # consent.changed: registering a device opts in to push
            await s.track("wes", "Cart Touched", {"cart_id": "c1"})
            await eventually(lambda: sent(s, "wes", 1))
            await s.wait_closed("wes")

            seen: list[tuple[str, int, str]] = []

            async def tried_while_down() -> list[tuple[str, int, str]] | None:
                seen[:] = found = await _deliveries(s)
                kinds = {kind for kind, _, _ in found}
                retried = all(attempts >= 2 for _, attempts, _ in found)
                return found if kinds == set(KINDS) and retried else None

            try:
                await eventually(tried_while_down, timeout=180)
            except AssertionError as missed:
                async with s.context.sessions() as db:
                    events = await db.execute(
                        text("SELECT kind, dispatched_at FROM webhook_events")
                    )
                    written = [tuple(row) for row in events]
                raise AssertionError(f"{missed}; deliveries {seen}; events {written}") from None
            await receiver.up()
            await receiver.wait_for_ids(4, within=180)

            async def all_delivered() -> list[tuple[str, int, str]] | None:
                found = await _deliveries(s)
                return found if all(status == "delivered" for _, _, status in found) else None

            found = await eventually(all_delivered, timeout=180)
    bodies = {d.body["type"]: d.body for d in receiver.accepted()}
    assert set(bodies) == set(KINDS)
    assert not receiver.rejections  # every delivery carried a valid signature
    assert not receiver.duplicates()
    assert len(receiver.unique_ids()) == len(found) == 4
    sent_event = bodies["message.sent"]["data"]
    assert sent_event["user_id"] == "wes" and sent_event["journey"] == "t_keyed"
    assert "body" not in sent_event and "token" not in str(sent_event)
