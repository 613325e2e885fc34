"""worker-cpu: CPU seconds the worker process spends per journey run, end to end.

The worker is a child process; its CPU time (user + system, all threads) comes from
`/proc/<pid>/stat`, read just before the first run is started and once the last one has
ended. bare: `BareJourney` with its one activity, started by signal-with-start from this
process. nudge: `t_keyed` (hold 0: one console push, plus its bookkeeping local activity),
its triggers stored with `accept` beforehand and routed by a router in this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time

from temporalio.client import Client

from bench._common import (
    PEOPLE,
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
from engine.context import Context
from triggers.router import CONCURRENCY

IDLE_SECONDS = 2.0  # the worker's idle CPU is read over this long before the runs
WARM_UP = CONCURRENCY
"""Runs done on both sides, all at once, before the CPU is read, not counted: a fresh
worker's first runs pay once for what every later run finds made (each pool connection's
prepared statements, the first sandboxed import of each module), and over 60 runs that
swung the ratio from 1.1 to 2.6 between pairs."""
RUNS_LIMIT = 600.0  # seconds a sample may take before it is given up


async def bare_side(runs: int) -> Values:
    async with temporal_server() as server, worker_child("bare", server) as worker:
        client = await Client.connect(server.target)
        idle = await _idle_rate(worker.pid)
        limit = asyncio.Semaphore(CONCURRENCY)

        async def run(name: str) -> object:
            async with limit:
                handle = await bare.start_run(
                    client, f"bare/cpu/{name}", message_id=name, task_queue=nudge.TASK_QUEUE
                )
            return await handle.result()

        warm = (run(f"warm-{i}") for i in range(WARM_UP))
        await asyncio.wait_for(asyncio.gather(*warm), RUNS_LIMIT)
        before, server_before = cpu_seconds(worker.pid), cpu_seconds(server.pid)
        started = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(run(f"cpu-{i}") for i in range(runs))), RUNS_LIMIT)
        wall = time.perf_counter() - started
        return _values(
            runs,
            wall,
            idle,
            cpu_seconds(worker.pid) - before,
            cpu_seconds(server.pid) - server_before,
        )


async def nudge_side(context: Context, names: list[str], warm: list[str]) -> Values:
    await truncate(context, keep=PEOPLE)
    runs = len(names)
    schema = context.settings.database_schema or ""
    async with temporal_server() as server, worker_child("nudge", server, schema) as worker:
        idle = await _idle_rate(worker.pid)
        router = nudge.router(context, server)

        async def ended(count: int) -> bool:
            sql = "SELECT count(*) FROM journey_runs WHERE status <> 'open'"
            return int(await scalar(context, sql)) >= count

        await nudge.accept_all(context, [nudge.touch(name, "c1") for name in warm])
        await router.route_pending()
        await wait_for(
            functools.partial(ended, len(warm)), what="warm-up runs", limit=RUNS_LIMIT, every=0.2
        )
        await nudge.accept_all(context, [nudge.touch(name, "c1") for name in names])
        before, server_before = cpu_seconds(worker.pid), cpu_seconds(server.pid)
        started = time.perf_counter()
        routing = asyncio.create_task(router.run())
        try:
            await wait_for(
                functools.partial(ended, len(warm) + runs), what="runs", limit=RUNS_LIMIT, every=0.2
            )
        finally:
            routing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await routing
        wall = time.perf_counter() - started
        values = _values(
            runs,
            wall,
            idle,
            cpu_seconds(worker.pid) - before,
            cpu_seconds(server.pid) - server_before,
        )
    sent = "SELECT count(*) FROM messages WHERE status = 'sent'"
    values["sent"] = float(await scalar(context, sent)) - len(warm)
    return values


async def _idle_rate(pid: int) -> float:
    """The worker's CPU use while idle, in CPU seconds per second."""
    before = cpu_seconds(pid)
    await asyncio.sleep(IDLE_SECONDS)
    return (cpu_seconds(pid) - before) / IDLE_SECONDS


def _values(runs: int, wall: float, idle: float, worker: float, server: float) -> Values:
    return {
        "worker CPU/run": worker / runs * 1000,
        "runs/s": runs / wall,
        "idle share": idle * wall / worker * 100 if worker else float("nan"),
        "server CPU/run": server / runs * 1000,
    }


async def worker_cpu(pairs: int, *, runs: int) -> Result:
    result = Result(
        name="worker-cpu",
        method=(
            f"{runs} runs, each for its own id, all started at once ({CONCURRENCY} calls in"
            f" flight), after {WARM_UP} warm-up runs done the same way and not counted (a fresh"
            " worker's first runs prepare its pool's statements and make its first sandboxed"
            " imports); the worker is a child process (the tuning of build_worker on both"
            " sides) on a fresh dev server; its CPU (utime+stime of /proc/<pid>/stat) from"
            " just before the first start to the last run's end, divided by the runs. bare:"
            " signal-with-start of a workflow running one activity. nudge: t_keyed (hold 0,"
            " console push to the user's device) from 'Cart Touched' events routed by a"
            " router in this process. Ratio nudge/bare."
        ),
        measures=[
            Measure("worker CPU/run", "ms of worker CPU per run", False, 2.0),
            Measure("runs/s", "runs ended per second", True),
            Measure("idle share", "% of that CPU the idle worker would spend anyway", False),
            Measure("server CPU/run", "ms of dev server CPU per run", False),
            Measure("sent", "messages sent (nudge)", True),
        ],
    )
    async with bench_context() as context:
        names = [f"cpu-{i}" for i in range(runs)]
        warm = [f"cpu-warm-{i}" for i in range(WARM_UP)]
        await nudge.users_with_devices(context, [*names, *warm])
        return await run_pairs(
            result, pairs, lambda i: bare_side(runs), lambda i: nudge_side(context, names, warm)
        )
