"""latency: trigger → send at fixed rates (open loop), with a worker in a child process.

bare: this process signal-with-starts a new `BareJourney` per event; the run executes one
activity, which returns the wall-clock time it started; latency = that - the time the
call was made. nudge: this process POSTs `/v1/track` ("Cart Touched", one user with an
iOS device per event) to the API in a child process with its router inside; the worker
(another child) runs `t_keyed` (hold 0: one push through the console provider); latency =
`messages.sent_at` - the time the request was made. Both clocks are this machine's wall
clock (`time.time()`, `datetime.now(UTC)`).
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from math import nan
from typing import Any, cast

import httpx
from sqlalchemy import text
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError

from bench._common import (
    PEOPLE,
    Child,
    bench_context,
    percentiles,
    scalar,
    temporal_server,
    truncate,
    wait_for,
)
from bench.compare import bare_journey as bare
from bench.compare import nudge
from bench.compare.processes import api_child, router_child, worker_child
from bench.compare.report import Measure, Result, Sample, Values, run_pairs
from engine.context import Context
from engine.store.keys import create_key

WARM_UP = 5
"""Events sent one at a time, and done, before the timed ones on both sides: every child is
fresh (new pools, caches, sandboxes), and the first sends measure that, not a steady rate."""
WARM_UP_LIMIT = 60.0  # seconds the warm-up may take


async def open_loop(rate: float, seconds: float, send: Callable[[int], Awaitable[None]]) -> int:
    """Call `send(i)` at `start + i / rate` for `seconds`, not waiting for earlier calls
    (open loop); returns how many were made."""
    count = int(rate * seconds)
    started = time.perf_counter()

    async def one(i: int) -> None:
        await asyncio.sleep(max(0.0, started + i / rate - time.perf_counter()))
        await send(i)

    await asyncio.gather(*(one(i) for i in range(count)))
    return count


def _stats(latencies: Sequence[float], late: int) -> Values:
    """Percentiles in ms over every event (late ones at their lower bound)."""
    p50, _, p99 = percentiles(latencies)
    return {
        "p50": p50 * 1000,
        "p99": p99 * 1000,
        "max": max(latencies, default=nan) * 1000,
        "late": float(late),
    }


async def bare_sample(rate: float, seconds: float, grace: float) -> Values:
    """A fresh dev server and bare worker; `rate` signal-with-starts a second."""
    async with temporal_server() as server, worker_child("bare", server):
        client = await Client.connect(server.target)
        sent: dict[int, float] = {}
        handles: dict[int, WorkflowHandle[Any, Any]] = {}

        async def send(i: int) -> None:
            sent[i] = time.time()
            # A start that fails runs nothing: it is counted as late below.
            with contextlib.suppress(RPCError):
                handles[i] = await bare.start_run(
                    client, f"bare/lat/{i}", message_id=f"lat-{i}", task_queue=nudge.TASK_QUEUE
                )

        for i in range(WARM_UP):
            warm = await bare.start_run(
                client, f"bare/lat/warm-{i}", message_id=f"warm-{i}", task_queue=nudge.TASK_QUEUE
            )
            await asyncio.wait_for(warm.result(), WARM_UP_LIMIT)
        await open_loop(rate, seconds, send)
        waiting = {i: asyncio.ensure_future(h.result()) for i, h in handles.items()}
        if waiting:
            await asyncio.wait(waiting.values(), timeout=grace)
        ended = time.time()
        latencies, late = [], 0
        for i, at in sent.items():
            task = waiting.get(i)
            if task is not None and task.done() and task.exception() is None:
                latencies.append(float(task.result()) - at)
            else:
                if task is not None:
                    task.cancel()
                latencies.append(ended - at)
                late += 1
        return _stats(latencies, late)


async def nudge_sample(
    context: Context,
    key: str,
    users: Sequence[str],
    rate: float,
    seconds: float,
    grace: float,
    *,
    apart: bool = False,
) -> Values:
    """Emptied event, run and message tables (the users and devices stay), a fresh dev
    server, the worker and API children; `rate` `/v1/track` requests a second. `apart`:
    the router in a child of its own, the API without one (`NUDGE_API_ROUTER=false`)."""
    await truncate(context, keep=PEOPLE)
    schema = context.settings.database_schema or ""
    async with temporal_server() as server, contextlib.AsyncExitStack() as stack:
        # The children start at once: each takes seconds to import and connect.
        api = stack.enter_async_context(
            api_child("nudge", schema, target=server.target, router=not apart)
        )
        others: list[Awaitable[Child]] = [
            stack.enter_async_context(worker_child("nudge", server, schema))
        ]
        if apart:
            others.append(stack.enter_async_context(router_child(server, schema)))
        started = await asyncio.gather(api, *others)
        base, _ = cast(tuple[str, Child], started[0])
        http = await stack.enter_async_context(
            httpx.AsyncClient(base_url=base, auth=(key, ""), timeout=60)
        )
        await _warm_up(context, http)
        sent: dict[str, float] = {}

        async def send(i: int) -> None:
            sent[users[i]] = time.time()
            # A refused or failed request sends nothing: it is counted as late below.
            with contextlib.suppress(httpx.TransportError):
                await http.post("/v1/track", json=nudge.touch(users[i], f"c{i}"))

        count = await open_loop(rate, seconds, send)

        async def done() -> bool:
            return len(await _sent_at(context)) >= count

        with contextlib.suppress(TimeoutError):
            await wait_for(done, what="sends", limit=grace, every=0.2)
        ended = time.time()
        at = await _sent_at(context)
    latencies = [at[user] - sent[user] if user in at else ended - sent[user] for user in sent]
    values = _stats(latencies, len(sent) - len(at))
    # Where the time went, from the rows' own stamps (medians, ms; sent messages only).
    received = await _stamps(context, "SELECT u.external_id, e.received_at" + _EVENTS)
    values["request->stored"] = _median_ms([received[u] - sent[u] for u in received])
    for stage, spans in (await _stages(context)).items():
        values[stage] = _median_ms(spans)
    return values


async def _warm_up(context: Context, http: httpx.AsyncClient) -> None:
    """`WARM_UP` triggers for the warm-up users, one at a time, each run ended before the
    next; then the event, run and message tables are emptied again for the timed ones."""
    for i in range(WARM_UP):
        (await http.post("/v1/track", json=nudge.touch(f"warm-{i}", "c0"))).raise_for_status()

        async def ended(n: int = i + 1) -> bool:
            sql = "SELECT count(*) FROM journey_runs WHERE status <> 'open'"
            return int(await scalar(context, sql)) >= n

        await wait_for(ended, what="the warm-up run", limit=WARM_UP_LIMIT)
    await truncate(context, keep=PEOPLE)


def _median_ms(seconds: Sequence[float]) -> float:
    return statistics.median(seconds) * 1000 if seconds else nan


_EVENTS = " FROM events e JOIN users u ON u.id = e.user_id"
_SENT = " FROM messages m JOIN users u ON u.id = m.user_id WHERE m.status = 'sent'"

STAGES = ("stored->routed", "routed->gated", "gated->sent")
"""received_at -> routed_at (the router), routed_at -> messages.created_at (Temporal, the
worker, the gate's transaction), created_at -> sent_at (the console send, the attempt)."""


async def _stamps(context: Context, sql: str) -> dict[str, float]:
    """External user id -> a timestamp column (epoch seconds), from `sql`."""
    async with context.sessions() as db:
        rows = (await db.execute(text(sql))).all()
    return {user: at.timestamp() for user, at in rows}


async def _sent_at(context: Context) -> dict[str, float]:
    return await _stamps(context, "SELECT u.external_id, m.sent_at" + _SENT)


async def _stages(context: Context) -> dict[str, list[float]]:
    async with context.sessions() as db:
        rows = (
            await db.execute(
                text(
                    "SELECT e.received_at, e.routed_at, m.created_at, m.sent_at"
                    + _SENT.replace(" WHERE", " JOIN events e ON e.user_id = u.id WHERE")
                )
            )
        ).all()
    found: dict[str, list[float]] = {stage: [] for stage in STAGES}
    for received, routed, created, sent in rows:
        spans = ((received, routed), (routed, created), (created, sent))
        for stage, (a, b) in zip(STAGES, spans, strict=True):
            found[stage].append((b - a).total_seconds())
    return found


async def latency(
    pairs: int, *, rates: Sequence[float], seconds: float, grace: float, apart: bool = False
) -> list[Result]:
    """One result per rate; each pair is a bare sample and a Nudge sample at that rate.
    A sample waits `grace` seconds after its last event for the runs still going; later
    ones count as late, with (end of the wait - sent) as a lower bound of their latency."""
    results = []
    async with bench_context() as context:
        async with context.sessions() as db:
            key = await create_key(db, name="bench")
            await db.commit()
        users = [f"lat-{i}" for i in range(int(max(rates) * seconds))]
        await nudge.users_with_devices(context, [*users, *(f"warm-{i}" for i in range(WARM_UP))])

        def sides(rate: float) -> tuple[Sample, Sample]:
            return (
                lambda i: bare_sample(rate, seconds, grace),
                lambda i: nudge_sample(context, key, users, rate, seconds, grace, apart=apart),
            )

        for rate in rates:
            result = Result(
                name=f"latency@{rate:g}/s" + (" router apart" if apart else ""),
                method=_method(rate, seconds, grace, apart=apart),
                measures=[
                    Measure("p50", "ms, trigger -> send", False, 1.5),
                    Measure("p99", "ms, trigger -> send", False, 2.0),
                    Measure("max", "ms", False),
                    Measure("late", f"events not done {grace:g} s after the load", False),
                    *(
                        Measure(stage, "ms, median (nudge only)", False)
                        for stage in ("request->stored", *STAGES)
                    ),
                ],
            )
            first, second = sides(rate)
            await run_pairs(result, pairs, first, second)
            results.append(result)
    return results


def _method(rate: float, seconds: float, grace: float, *, apart: bool) -> str:
    where = (
        " to the API child without a router; a router child of its own routes (woken by the"
        " events trigger's NOTIFY, as `nudge router` runs)"
        if apart
        else " to the API child with the router inside (woken by the request, as `nudge api`"
        " runs it)"
    )
    return (
        f"open loop, {rate:g} events/s for {seconds:g} s ({int(rate * seconds)} events), a"
        " fresh dev server and worker child (build_worker's tuning on both sides) per sample,"
        f" after {WARM_UP} warm-up events sent one at a time, each done before the next, and"
        " not counted (fresh pools, caches and sandboxes are what the first sends measure)."
        " bare: signal-with-start of a new workflow per event from this process; latency ="
        " its one activity's start (time.time() in the worker) - the call's time. nudge: POST"
        " /v1/track of 'Cart Touched' for its own user (with an iOS device)"
        + where
        + "; the worker child runs t_keyed (hold 0: one console push); latency ="
        f" messages.sent_at - the request's time. Events not done {grace:g} s after the load"
        " count at (end of that wait - sent), a lower bound: with 'late' > 0 the upper"
        " percentiles are lower bounds. Ratio nudge/bare."
    )
