"""Wake-ups across processes: storing events sends a Postgres NOTIFY (a trigger on `events`,
migration 0015), and a router listening for it routes them at once, whichever process stored
them (`nudge api`, `nudge worker`'s SMS replies, another router's synthesized events). Polling
stays as the fallback: a lost listening connection only costs latency until it is back.
SQLite has no NOTIFY; its routers poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger(__name__)

EVENTS_CHANNEL = "nudge_events"
"""The channel the `events` trigger notifies; its payload is the schema of the table."""


class EventListener:
    """Calls `wake` when events are stored in this engine's schema, from any process.

    `run` holds one connection of the engine's pool, LISTENing, until cancelled; when the
    connection is lost it connects again after `retry` seconds. It calls `wake` once each
    time it starts listening, for events stored while it was not.
    """

    def __init__(self, engine: AsyncEngine, wake: Callable[[], None], *, retry: float = 5.0):
        self._engine = engine
        self._wake = wake
        self._retry = retry
        self.backend_pid: int | None = None
        """The Postgres backend listening now (None while not listening)."""

    async def run(self) -> None:
        if self._engine.dialect.name != "postgresql":
            return
        while True:
            try:
                await self._listen()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "not listening for new events (%s); polling until back in %.0fs",
                    type(exc).__name__,
                    self._retry,
                )
            finally:
                self.backend_pid = None
            await asyncio.sleep(self._retry)

    async def _listen(self) -> None:
        async with self._engine.connect() as conn:
            raw: Any = (await conn.get_raw_connection()).driver_connection
            schema = await raw.fetchval("SELECT current_schema()")
            lost = asyncio.Event()

            def notified(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
                if payload == schema:
                    self._wake()

            raw.add_termination_listener(lambda _conn: lost.set())
            await raw.add_listener(EVENTS_CHANNEL, notified)
            self.backend_pid = raw.get_server_pid()
            self._wake()
            try:
                await lost.wait()
            finally:
                if raw.is_closed():
                    await conn.invalidate()
                else:
                    with contextlib.suppress(Exception):
                        await raw.remove_listener(EVENTS_CHANNEL, notified)
            log.warning("the connection listening for new events was closed")
