"""The Temporal connection of a long-running process: one SDK runtime, a lazy client."""

from __future__ import annotations

import asyncio

from temporalio.client import Client
from temporalio.runtime import Runtime
from temporalio.service import RPCError

from engine.config.settings import Settings
from engine.observability.metrics import temporal_runtime_with_prometheus
from engine.temporal.client import connect
from engine.temporal.codec import UserKeys

_RUNTIME: Runtime | None = None


def sdk_runtime(settings: Settings) -> Runtime:
    """The process's Temporal runtime; exports SDK metrics when `temporal_metrics_bind` is set."""
    global _RUNTIME
    if _RUNTIME is None:
        _RUNTIME = temporal_runtime_with_prometheus(settings.temporal_metrics_bind)
    return _RUNTIME


class TemporalConnection:
    """Connects on first use and keeps the client; a failed attempt is retried next call,
    so the API keeps accepting events while Temporal is down. `user_keys`: per-user payload
    keys (crypto-shredding), when the process has the database."""

    def __init__(self, settings: Settings, *, user_keys: UserKeys | None = None) -> None:
        self._settings = settings
        self._user_keys = user_keys
        self._client: Client | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> Client:
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                try:
                    self._client = await connect(
                        self._settings,
                        runtime=sdk_runtime(self._settings),
                        user_keys=self._user_keys,
                    )
                except RPCError as exc:
                    raise RuntimeError(f"Temporal unreachable: {exc.message}") from exc
            return self._client
