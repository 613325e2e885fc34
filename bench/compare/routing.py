"""route-burst, route-backlog, route-open-runs: trigger events into Temporal, no worker.

No worker runs on either side while routing is timed (route-open-runs parks its open runs
with one beforehand): routing ends when Temporal has accepted the
signal-with-start, so a worker would only compete for the two cores. Every sample gets a
fresh dev server (accumulated state slows it) and, on the Nudge side, emptied tables.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from bench._common import (
    DevServer,
    bench_context,
    cpu_seconds,
    scalar,
    temporal_server,
    truncate,
    wait_for,
)
from bench.compare import bare_journey as bare
from bench.compare import nudge
from bench.compare.processes import worker_child
from bench.compare.report import Measure, Result, Values, run_pairs
from engine.config.nudge_toml import NudgeConfig
from engine.context import Context
from triggers.router import BATCH, CONCURRENCY

ROUTE_LIMIT = 600.0  # seconds: give up routing a sample after this long

RATE = Measure("routed/s", "events/s", higher_is_better=True, target=0.8)
BARE_HERE = Measure(
    "bare on this server", "signal-with-starts/s right after, same server (bare)", True
)
DETAILS = [
    Measure("bench CPU", "ms/event (router or bare client, this process)", False),
    Measure("server CPU", "ms/event (dev server)", False),
]


async def bare_route(count: int, *, prefix: str) -> Values:
    """`count` signal-with-starts of a new `BareJourney` each, `BATCH` at a time with at
    most `CONCURRENCY` in flight, as the router groups its calls; a fresh dev server."""
    async with temporal_server() as server:
        return await bare_route_on(server, count, prefix=prefix)


async def bare_route_on(server: DevServer, count: int, *, prefix: str) -> Values:
    """`bare_route` on a server the caller holds (route-open-runs: the loaded one)."""
    client = await Client.connect(server.target)  # the default converter: bare
    limit = asyncio.Semaphore(CONCURRENCY)

    async def start(i: int) -> None:
        event = {
            "message_id": f"{prefix}-{i}",
            "name": "Cart Touched",
            "properties": {"cart_id": f"c{i}"},
            "timestamp": datetime.now(UTC).isoformat(),
        }
        async with limit:
            await client.start_workflow(
                bare.WORKFLOW,
                bare.BareEntry(event=event),
                id=f"bare/{prefix}/{i}",
                task_queue=nudge.TASK_QUEUE,
                start_signal=bare.EVENT_SIGNAL,
                start_signal_args=[event],
            )

    return await _timed(server, count, _in_batches(start, count))


async def _in_batches(start: Callable[[int], Awaitable[None]], count: int) -> None:
    for first in range(0, count, BATCH):
        await asyncio.gather(*(start(i) for i in range(first, min(first + BATCH, count))))


async def nudge_route(
    context: Context, server: DevServer, count: int, *, expect_routed: int | None = None
) -> Values:
    """Time `Router.route_pending()` until `count` events are routed (the events are in
    the outbox already)."""

    async def drain() -> None:
        router = nudge.router(context, server)
        routed = 0
        deadline = time.perf_counter() + ROUTE_LIMIT
        while routed < count and time.perf_counter() < deadline:
            routed += await router.route_pending()
            if routed < count:
                await asyncio.sleep(0.05)  # an event waits for a retry: let it come due
        if routed < count:
            raise TimeoutError(f"routed {routed} of {count} in {ROUTE_LIMIT:.0f}s")

    values = await _timed(server, count, drain())
    left = int(await scalar(context, "SELECT count(*) FROM events WHERE routed_at IS NULL"))
    values["left unrouted"] = float(left)
    return values


async def _timed(server: DevServer, count: int, work: Awaitable[None]) -> Values:
    here, there = time.process_time(), cpu_seconds(server.pid)
    started = time.perf_counter()
    await work
    wall = time.perf_counter() - started
    return {
        "routed/s": count / wall,
        "bench CPU": (time.process_time() - here) / count * 1000,
        "server CPU": (cpu_seconds(server.pid) - there) / count * 1000,
    }


async def _idle_share(server: DevServer, seconds: float = 3.0) -> float:
    """The share of a core the dev server spends while nobody calls it."""
    before, started = cpu_seconds(server.pid), time.perf_counter()
    await asyncio.sleep(seconds)
    return (cpu_seconds(server.pid) - before) / (time.perf_counter() - started)


async def route_fresh(context: Context, count: int, *, prefix: str) -> Values:
    """Nudge: empty tables, `count` "Cart Touched" events (each its own user and cart) in
    the outbox via `accept`, a fresh dev server, then the timed routing."""
    async with temporal_server() as server:
        return await nudge_route_fresh(context, server, count, prefix=prefix)


async def nudge_route_fresh(
    context: Context, server: DevServer, count: int, *, prefix: str
) -> Values:
    """`route_fresh` on a server the caller holds."""
    await truncate(context)
    await nudge.accept_all(context, [nudge.touch(f"{prefix}-{i}", f"c{i}") for i in range(count)])
    return await nudge_route(context, server, count)


async def route_burst(pairs: int, count: int, *, name: str, target: float = 0.8) -> Result:
    result = Result(
        name=name,
        method=(
            f"{count} trigger events, each its own user and cart. bare: {count}"
            f" signal-with-starts of an empty workflow, {BATCH} per batch, {CONCURRENCY} in"
            " flight (triggers/router.py BATCH, CONCURRENCY). nudge: the events stored with"
            " engine.store.outbox.accept, then Router.route_pending() timed until all are"
            " routed. No worker on either side; a fresh dev server per sample. Ratio"
            " nudge/bare of routed/s."
        ),
        measures=[RATE, *DETAILS],
    )
    async with bench_context() as context:
        return await run_pairs(
            result,
            pairs,
            lambda i: bare_route(count, prefix=f"b{i}"),
            lambda i: route_fresh(context, count, prefix=f"n{i}"),
        )


OPEN_PER_USER = 2  # one t_order and one t_sequence run each
# The open runs are parked as a fleet's are: each has run its first workflow task and waits
# (t_order on a 30-day sleep, t_sequence on a "Ping" for up to 30 days).
PARKED = NudgeConfig(journeys={"t_order": {"pause": "30d"}, "t_sequence": {"wait": "30d"}})
PARK_LIMIT = 1800.0  # seconds the worker may take over the open runs' first tasks
IDLE_CPU = 0.05  # share of a core under which the parking worker counts as done


async def park(context: Context, server: DevServer) -> None:
    """Let a worker take every workflow task waiting on the journeys' queue, as a fleet's
    workers would have: done when the queue holds none and the worker has gone idle."""
    request = DescribeTaskQueueRequest(
        namespace=server.client.namespace,
        task_queue=TaskQueue(name=nudge.TASK_QUEUE),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        report_stats=True,
    )
    schema = context.settings.database_schema or ""
    async with worker_child("nudge", server, schema) as worker:

        async def drained() -> bool:
            queue = await server.client.workflow_service.describe_task_queue(request)
            if queue.stats.approximate_backlog_count:
                return False
            before = cpu_seconds(worker.pid)
            await asyncio.sleep(1.0)
            return cpu_seconds(worker.pid) - before < IDLE_CPU

        await wait_for(drained, what="parking the open runs", limit=PARK_LIMIT, every=1.0)


async def route_open_runs(pairs: int, count: int, open_runs: int) -> Result:
    """Nudge against itself: a burst for users with no runs (fresh tables and server)
    versus a burst for users who each have open runs, with `open_runs` open in all."""
    pool = max(open_runs // OPEN_PER_USER, count * pairs)
    result = Result(
        name="route-open-runs",
        method=(
            f"Nudge only. first: route-burst's Nudge side ({count} events, fresh tables and"
            f" server). second: {open_runs} open runs over {pool} users (one t_order, keyed,"
            " and one t_sequence run each; neither listens to 'Cart Touched' nor to the"
            " other's trigger), made once by storing their triggers with accept and routing"
            " them, then parked: a worker runs each one's first workflow task (t_order then"
            " sleeps 30 days, t_sequence waits 30 days for a 'Ping') and is stopped once the"
            " queue is empty and it idles; each sample then routes"
            f" {count} 'Cart Touched' events for {count} of those users not used before, the"
            " server and tables kept (so they hold the earlier samples' runs too). Ratio"
            " with/without open runs of routed/s. After each sample, on the same server:"
            f" {count} bare signal-with-starts (route-burst's bare side), to tell the"
            " server's slowdown from the router's."
        ),
        measures=[RATE, *DETAILS, BARE_HERE],
        sides=("no open runs", f"{open_runs} open"),
    )
    async with (
        bench_context() as empty,
        bench_context(config=PARKED) as loaded,
        temporal_server() as server,
    ):
        started = time.perf_counter()
        # Event j goes to user j % pool: a router batch spans many users, as a stream would.
        await nudge.accept_all(
            loaded,
            [nudge.opener(f"open-{j % pool}", j // pool) for j in range(open_runs)],
        )
        stored = time.perf_counter()
        made = await nudge_route(loaded, server, open_runs)
        routed = time.perf_counter()
        await park(loaded, server)
        parked = time.perf_counter()
        held = int(await scalar(loaded, "SELECT count(*) FROM journey_runs WHERE status = 'open'"))
        idle = await _idle_share(server)
        result.lines.append(
            f"setup: {open_runs} events stored in {stored - started:.0f} s, routed at"
            f" {made['routed/s']:.0f}/s ({routed - stored:.0f} s), parked by a worker in"
            f" {parked - routed:.0f} s; {held} runs open; the dev server then idles at"
            f" {idle:.0%} of a core"
        )
        print(f"  [route-open-runs] {result.lines[-1]}", flush=True)

        async def with_open(i: int) -> Values:
            users = range(i * count, (i + 1) * count)
            await nudge.accept_all(loaded, [nudge.touch(f"open-{u}", f"c-{i}-{u}") for u in users])
            values = await nudge_route(loaded, server, count)
            bare_side = await bare_route_on(server, count, prefix=f"open-bare{i}")
            return {**values, BARE_HERE.key: bare_side["routed/s"]}

        async def fresh(i: int) -> Values:
            async with temporal_server() as other:
                values = await nudge_route_fresh(empty, other, count, prefix=f"n{i}")
                bare_side = await bare_route_on(other, count, prefix=f"bare{i}")
            return {**values, BARE_HERE.key: bare_side["routed/s"]}

        return await run_pairs(
            result,
            pairs,
            fresh,
            with_open,
        )
