"""A test peer that serves from its own event loop in a daemon thread.

Why a thread: a peer must keep answering while the code under test blocks its own loop
(a sync CLI call, a worker in another loop, a `time.sleep` in a test). So every peer runs its
server in a private loop, and tests use it through `async with`, `with`, or the explicit
`start()` / `stop()` pair (both async) or `start_sync()` / `stop_sync()`.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future
from types import TracebackType
from typing import Any, Self


class ThreadedPeer:
    """Base class: subclasses implement `_serve()` (bind, return when ready) and `_shutdown()`."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    async def _serve(self) -> None:
        raise NotImplementedError

    async def _shutdown(self) -> None:
        raise NotImplementedError

    def _run(self, coro: Any, timeout: float = 10.0) -> Any:
        assert self._loop is not None
        fut: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return fut.result(timeout)

    def start_sync(self) -> Self:
        """Start the peer's loop thread and its server; returns once it accepts connections."""
        if self._thread is not None:
            return self
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(
            target=loop.run_forever, name=f"{type(self).__name__}-loop", daemon=True
        )
        self._thread.start()
        try:
            self._run(self._serve())
        except BaseException:
            self.stop_sync()
            raise
        return self

    def stop_sync(self) -> None:
        """Stop the server and the loop thread (idempotent)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            self._run(self._shutdown())
        finally:

            async def _cancel_rest() -> None:
                # Handlers still sleeping (slow tokens) are cancelled so the loop can stop.
                tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

            self._run(_cancel_rest())
            loop.call_soon_threadsafe(loop.stop)
            thread.join(5)
            loop.close()
            self._loop = None
            self._thread = None

    async def start(self) -> Self:
        """`start_sync` without blocking the caller's loop."""
        return await asyncio.to_thread(self.start_sync)

    async def stop(self) -> None:
        await asyncio.to_thread(self.stop_sync)

    def __enter__(self) -> Self:
        return self.start_sync()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop_sync()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
