"""Token bucket: the schedule it makes (property tests on a fake clock) and real waiting."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.channels.ratelimit import RateLimiters, TokenBucket

EPS = 1e-6


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@settings(max_examples=300, deadline=None)
@given(
    rate=st.floats(0.5, 1000),
    burst_factor=st.floats(0.1, 5),
    arrivals=st.lists(
        st.tuples(st.floats(0, 2), st.floats(0, 1)), min_size=1, max_size=30
    ),  # (seconds since the previous caller, share of the burst it takes)
)
def test_schedule_is_fifo_within_rate_and_never_idle(
    rate: float, burst_factor: float, arrivals: list[tuple[float, float]]
) -> None:
    burst = max(1.0, rate * burst_factor)
    clock = FakeClock()
    bucket = TokenBucket(rate, burst, clock=clock)
    starts, takes, arrived = [], [], []
    for gap, share in arrivals:
        clock.now += gap
        tokens = share * burst
        delay, _ = bucket.reserve(tokens)
        arrived.append(clock.now)
        starts.append(clock.now + delay)
        takes.append(tokens)
    slack = EPS * (1 + burst + rate * starts[-1])
    for j, start in enumerate(starts):
        assert start >= arrived[j]
        if j:
            assert start >= starts[j - 1] - slack  # first come, first served
        # Within any run of callers, what they take fits the bucket plus its refill ...
        used = 0.0
        tight = start <= arrived[j] + slack
        for i in range(j, -1, -1):
            used += takes[i]
            allowed = burst + rate * (start - starts[i])
            assert used <= allowed + slack
            tight = tight or used >= allowed - slack
        # ... and a caller waits only as long as some such run forces it to.
        assert tight or sum(takes[: j + 1]) >= burst + rate * start - slack


def test_bucket_starts_full_then_refills() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10, 5, clock=clock)
    assert [bucket.reserve()[0] for _ in range(5)] == [0.0] * 5
    assert bucket.reserve()[0] == pytest.approx(0.1)
    assert bucket.reserve(2)[0] == pytest.approx(0.3)
    clock.now = 10.0  # long idle: full again, no more
    assert bucket.reserve(5)[0] == 0.0
    assert bucket.reserve(1)[0] == pytest.approx(0.1)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        TokenBucket(0)
    with pytest.raises(ValueError):
        TokenBucket(10, 0)
    bucket = TokenBucket(10, 2)
    with pytest.raises(ValueError):
        bucket.reserve(3)
    with pytest.raises(ValueError):
        bucket.reserve(-1)
    assert TokenBucket(0.2).burst == 1.0  # a slow bucket still holds one whole token
    assert TokenBucket(50).burst == 50.0


async def test_a_burst_queues_at_the_rate_in_order() -> None:
    rate, n = 100.0, 61
    bucket = TokenBucket(rate, burst=1)
    done: list[int] = []

    async def send(i: int) -> None:
        await bucket.acquire()
        done.append(i)

    began = time.monotonic()
    await asyncio.gather(*(send(i) for i in range(n)))
    took = time.monotonic() - began
    assert done == list(range(n))
    assert (n - 1) / rate * 0.95 <= took <= (n - 1) / rate + 0.3


async def test_burst_goes_at_once_then_rate() -> None:
    bucket = TokenBucket(40, burst=10)
    began = time.monotonic()
    await asyncio.gather(*(bucket.acquire() for _ in range(10)))
    assert time.monotonic() - began < 0.05
    await asyncio.gather(*(bucket.acquire() for _ in range(10)))
    assert 0.24 <= time.monotonic() - began <= 0.5


async def test_cancelled_tail_gives_its_tokens_back() -> None:
    clock = FakeClock()  # frozen: only the bookkeeping decides the waits
    bucket = TokenBucket(1, 1, clock=clock)
    await bucket.acquire()
    waiter = asyncio.create_task(bucket.acquire())
    await asyncio.sleep(0.01)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert bucket.reserve()[0] == pytest.approx(1.0)  # not 2.0: the refund came back


async def test_cancelled_middle_keeps_the_queue_order() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1, 1, clock=clock)
    await bucket.acquire()
    middle = asyncio.create_task(bucket.acquire())  # due at 1.0
    await asyncio.sleep(0)
    assert bucket.reserve()[0] == pytest.approx(2.0)  # a later caller, due at 2.0
    middle.cancel()
    with pytest.raises(asyncio.CancelledError):
        await middle
    assert bucket.reserve()[0] == pytest.approx(3.0)  # no overtaking the one at 2.0


def test_shared_across_threads_and_loops() -> None:
    bucket = TokenBucket(100, burst=1)

    def worker() -> None:
        async def run() -> None:
            for _ in range(15):
                await bucket.acquire()

        asyncio.run(run())

    began = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=5)
    took = time.monotonic() - began
    assert 29 / 100 * 0.95 <= took <= 29 / 100 + 0.3


def test_registry_shares_one_bucket_per_connection() -> None:
    limiters = RateLimiters()
    smsc = limiters.get("sms:127.0.0.1:2775:nudge", 50)
    assert limiters.get("sms:127.0.0.1:2775:nudge", 50) is smsc
    assert limiters.get("push:apns", 500) is not smsc
    assert limiters.names() == ["push:apns", "sms:127.0.0.1:2775:nudge"]
    again = limiters.get("sms:127.0.0.1:2775:nudge", 20, burst=5)
    assert again is smsc and (smsc.rate, smsc.burst) == (20, 5)
