"""Rate limits per provider connection (an SMSC's TPS, APNs, FCM): bursts queue, never fail.

`TokenBucket` is a reservation-based token bucket: a caller takes its tokens at once (the
balance may go below zero, which is a queue of debt) and sleeps exactly until the refill has
paid for them. So there is one `asyncio.sleep` per waiting caller and no polling, and callers
are served in the order they called `acquire` (FIFO): a later caller always finds the debt of
the earlier ones in front of it.

A `priority` caller (a transactional SMS: an OTP) does not queue behind that debt: it waits
only for the priority callers before it, spaced at the bucket's rate among themselves. Its
tokens still count, as debt the queue behind it pays off, so the long-run rate holds and a
second carries at most the priority sends beyond it.

The arithmetic runs under a `threading.Lock` and waiting is a plain `asyncio.sleep`, so one
bucket may be shared by coroutines on any event loop and any thread of the worker process
(Temporal runs async activities on the worker loop; sync ones in threads would need their own
blocking wait, which this module does not offer).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

__all__ = ["RateLimiters", "TokenBucket"]


def _checked(rate: float, burst: float | None) -> tuple[float, float]:
    """(rate, burst) as floats; `burst` defaults to one second's worth, at least 1 token."""
    if not rate > 0:
        raise ValueError("rate must be positive")
    size = max(1.0, rate) if burst is None else burst
    if not size > 0:
        raise ValueError("burst must be positive")
    return float(rate), float(size)


class TokenBucket:
    """At most `burst` tokens at once, refilled at `rate` tokens per second.

    `burst` defaults to `max(1, rate)` (one second's worth). `clock` returns seconds on a
    monotonic scale (tests may pass their own); it must match the clock `asyncio.sleep`
    measures, which `time.monotonic` does.
    """

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self.rate, self.burst = _checked(rate, burst)
        self._tokens = self.burst  # starts full
        self._updated = clock()
        self._last_ticket = 0  # the most recent reservation, to refund only the queue's tail
        self._priority_free = 0.0  # when the next priority caller may go (clock time)

    def configure(self, rate: float, burst: float | None = None) -> None:
        """Change the refill rate (tokens/s) and size; tokens already held or owed stay."""
        rate, burst = _checked(rate, burst)
        with self._lock:
            self._refill(self._clock())  # what accrued so far accrued at the old rate
            self.rate, self.burst = rate, burst
            self._tokens = min(self._tokens, burst)

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self._updated)
        self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        self._updated = max(self._updated, now)

    def reserve(self, tokens: float = 1.0, *, priority: bool = False) -> tuple[float, int]:
        """Take `tokens` now; return (seconds to wait before using them, ticket).

        The pure scheduling step of `acquire`, exposed for tests and for callers that wait in
        their own way. Raises `ValueError` for negative `tokens` or more than `burst`.
        """
        if tokens < 0:
            raise ValueError("tokens must not be negative")
        with self._lock:
            if tokens > self.burst:
                raise ValueError(f"cannot take {tokens} tokens from a bucket of {self.burst}")
            now = self._clock()
            self._refill(now)
            self._last_ticket += 1
            if priority:
                start = max(now, self._priority_free)
                self._priority_free = start + tokens / self.rate
                self._tokens -= tokens
                return start - now, self._last_ticket
            self._tokens -= tokens
            return max(0.0, -self._tokens / self.rate), self._last_ticket

    def _refund(self, tokens: float, ticket: int) -> None:
        with self._lock:
            # Only the last reservation can give its tokens back: an earlier one's tokens are
            # already counted in the wait times of those queued behind it, and handing them to
            # a newcomer would let it overtake them.
            if ticket == self._last_ticket:
                self._tokens += tokens

    async def acquire(self, tokens: float = 1.0, *, priority: bool = False) -> None:
        """Wait (FIFO, without polling) until `tokens` are available, then take them;
        `priority`: ahead of every queued caller that is not (see the module's docstring).

        No timeout of its own: wrap in `asyncio.timeout` to bound the wait. A caller cancelled
        while waiting gives its tokens back when no one queued behind it.
        """
        delay, ticket = self.reserve(tokens, priority=priority)
        if delay <= 0:
            return
        try:
            await asyncio.sleep(delay)
        except asyncio.CancelledError:
            self._refund(tokens, ticket)
            raise


class RateLimiters:
    """One `TokenBucket` per provider connection, shared by every run in a worker process.

    Keys name a connection: "sms:<host>:<port>:<system_id>", "push:apns", "push:fcm",
    "push:webpush". Safe to call from any thread.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[str, TokenBucket] = {}

    def get(self, name: str, rate: float, burst: float | None = None) -> TokenBucket:
        """The bucket for `name`, created at `rate` tokens/s on first use.

        A later call with another rate or burst reconfigures the shared bucket (the latest
        configuration wins), so a changed setting takes effect without a restart.
        """
        with self._lock:
            bucket = self._buckets.get(name)
            if bucket is None:
                bucket = self._buckets[name] = TokenBucket(rate, burst)
            elif (bucket.rate, bucket.burst) != _checked(rate, burst):
                bucket.configure(rate, burst)
            return bucket

    def names(self) -> list[str]:
        """The connection names seen so far (for metrics)."""
        with self._lock:
            return sorted(self._buckets)


limiters = RateLimiters()
"""The process-wide registry a worker uses."""
