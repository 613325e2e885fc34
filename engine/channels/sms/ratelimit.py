"""The SMSC's TPS limit, counted in message parts (each submit_sm is one).

`PartRateLimiter` is the interface the bridge needs; `TokenBucket` is the in-process
implementation, to be swapped for the shared (cross-worker) limiter when there is one.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class PartRateLimiter(Protocol):
    async def acquire(self, parts: int = 1) -> None:
        """Wait until `parts` more parts may be submitted."""


class TokenBucket:
    """`rate` parts per second, bursts of up to `burst` parts (default: 1/5 s worth, so a
    per-second counter at the SMSC never sees much more than `rate`). Waiters are served in
    arrival order."""

    def __init__(self, rate: float, *, burst: float | None = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.capacity = burst if burst is not None else max(1.0, rate / 5)
        self._tokens = self.capacity
        self._stamp = time.monotonic()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = time.monotonic()
        self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    async def acquire(self, parts: int = 1) -> None:
        async with self._lock:  # FIFO: asyncio.Lock wakes waiters in order
            self._refill()
            need = min(parts, self.capacity)  # a batch larger than a burst goes into debt
            while self._tokens < need:
                await asyncio.sleep((need - self._tokens) / self.rate)
                self._refill()
            self._tokens -= parts
