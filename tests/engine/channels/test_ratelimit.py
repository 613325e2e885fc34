"""engine.channels.ratelimit, the one token bucket: the schedule it makes (property tests on
a fake clock), that `acquire` sleeps exactly what the schedule says (a recorded sleep), and
real waiting. Real time only gives lower bounds (a bucket may never let callers go faster
than its rate); how much longer a loaded machine takes is never asserted."""

from __future__ import annotations

import asyncio
import threading
import time
import types

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.channels import ratelimit
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


def test_a_priority_caller_overtakes_the_queue_and_the_queue_pays_for_it() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10, 1, clock=clock)
    queued = [bucket.reserve()[0] for _ in range(21)]  # a marketing burst: 2 s of debt
    assert queued[-1] == pytest.approx(2.0)
    # An OTP does not wait behind that debt; priority callers queue among themselves only.
    assert [bucket.reserve(priority=True)[0] for _ in range(3)] == pytest.approx([0, 0.1, 0.2])
    # Their tokens still count: the next ordinary caller waits for them too.
    assert bucket.reserve()[0] == pytest.approx(2.4)
    clock.now = 1.0  # the priority line moves with time as well
    assert bucket.reserve(priority=True)[0] == 0.0


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


class RecordedSleep:
    """Stands in for `asyncio.sleep` inside the rate limiter: notes each delay, waits none."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def sleep(self, delay: float) -> None:
        self.delays.append(delay)


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> RecordedSleep:
    recorded = RecordedSleep()
    fake = types.SimpleNamespace(sleep=recorded.sleep, CancelledError=asyncio.CancelledError)
    monkeypatch.setattr(ratelimit, "asyncio", fake)
    return recorded


async def test_acquire_sleeps_what_the_schedule_says_in_call_order(slept: RecordedSleep) -> None:
    clock = FakeClock()  # frozen: every caller queues behind the ones before
    bucket = TokenBucket(40, burst=10, clock=clock)
    for _ in range(25):
        await bucket.acquire()
    # The burst goes at once (no sleep at all), then one caller every 1/40 s, in order.
    assert slept.delays == pytest.approx([(k + 1) / 40 for k in range(15)])
    clock.now = 100.0  # long idle: the bucket is full again
    await bucket.acquire(10)
    assert len(slept.delays) == 15


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
    assert done == list(range(n))  # deadlines 1/rate apart: woken first come, first served
    assert took >= (n - 1) / rate * 0.95  # never faster than the rate (timer resolution aside)


async def test_cancelled_tail_gives_its_tokens_back() -> None:
    clock = FakeClock()  # frozen: only the bookkeeping decides the waits
    bucket = TokenBucket(1, 1, clock=clock)
    await bucket.acquire()
    waiter = asyncio.create_task(bucket.acquire())
    await asyncio.sleep(0)  # the waiter takes its tokens and sleeps
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
        thread.join(timeout=120)
        assert not thread.is_alive()
    took = time.monotonic() - began
    # 30 tokens from a bucket of 1 at 100/s, whichever loop took them: at least 0.29 s.
    assert took >= 29 / 100 * 0.95


def test_registry_shares_one_bucket_per_connection() -> None:
    limiters = RateLimiters()
    smsc = limiters.get("sms:127.0.0.1:2775:nudge", 50)
    assert limiters.get("sms:127.0.0.1:2775:nudge", 50) is smsc
    assert limiters.get("push:apns", 500) is not smsc
    assert limiters.names() == ["push:apns", "sms:127.0.0.1:2775:nudge"]
    again = limiters.get("sms:127.0.0.1:2775:nudge", 20, burst=5)
    assert again is smsc and (smsc.rate, smsc.burst) == (20, 5)
