"""The webhook dispatcher: drains `webhook_events` into one Temporal workflow per (endpoint,
event), the way the router drains events. An event is marked dispatched only once every
start succeeded; if Temporal is unreachable the batch stays and is retried. Starting twice
is harmless: the workflow id is the delivery's."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from engine.clock import now
from engine.config.nudge_toml import NudgeConfig
from engine.store import webhooks
from engine.system.webhooks import workflow_id
from schemas.webhooks import WebhookDispatch

log = logging.getLogger(__name__)

BATCH = 200
CONCURRENCY = 16


class WebhookDispatcher:
    """`run` loops until cancelled; `dispatch_pending` does one pass (tests call it)."""

    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        client: Callable[[], Awaitable[Client]],
        config: NudgeConfig,
        task_queue: str,
        poll_interval: float = 0.5,
    ) -> None:
        self._sessions = sessionmaker
        self._client = client
        self._config = config
        self._task_queue = task_queue
        self._poll = poll_interval
        self._limit = asyncio.Semaphore(CONCURRENCY)

    async def run(self) -> None:
        if not self._config.webhooks:
            return  # nothing subscribes: nothing is ever enqueued
        backoff = self._poll
        while True:
            try:
                done = await self.dispatch_pending()
                backoff = self._poll
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("webhook dispatch paused: %s; retrying in %.1fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if done < BATCH:
                with contextlib.suppress(TimeoutError):
                    await asyncio.sleep(self._poll)

    async def dispatch_pending(self) -> int:
        """Dispatch one batch; returns how many events it took."""
        client = await self._client()
        async with self._sessions() as session, session.begin():
            events = await webhooks.claim(session, limit=BATCH)
            if not events:
                return 0
            starts = [
                WebhookDispatch(
                    endpoint=hook.name,
                    event_id=event.id,
                    timeout=hook.timeout,
                    give_up_after=hook.give_up_after,
                    max_retry_interval=hook.max_retry_interval,
                )
                for event in events
                for hook in self._config.webhooks_for(event.kind)
            ]
            stamp = now()
            await webhooks.add_deliveries(
                session, pairs=[(s.endpoint, s.event_id) for s in starts], at=stamp
            )
            await session.flush()
            await asyncio.gather(*(self._start(client, s) for s in starts))
            await webhooks.mark_dispatched(session, event_ids=[e.id for e in events], at=stamp)
        return len(events)

    async def _start(self, client: Client, dispatch: WebhookDispatch) -> None:
        async with self._limit:
            with contextlib.suppress(WorkflowAlreadyStartedError):
                await client.start_workflow(
                    "nudge.webhook",
                    dispatch,
                    id=workflow_id(dispatch.endpoint, dispatch.event_id),
                    task_queue=self._task_queue,
                    id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                )
