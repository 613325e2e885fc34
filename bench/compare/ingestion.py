"""batch-ingest (bare vs Nudge) and steady-ingest (Nudge only): `/v1/batch` over HTTP to
an API in a child process, on one Postgres schema emptied before every sample."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import httpx
from sqlalchemy import text

from bench._common import (
    bench_context,
    cpu_seconds,
    describe,
    percentiles,
    scalar,
    temporal_server,
    truncate,
    wait_for,
)
from bench.compare import nudge, routing
from bench.compare.processes import api_child
from bench.compare.report import Measure, Result, Values, run_pairs
from engine.context import Context
from engine.store.keys import create_key

DRAIN_LIMIT = 120.0  # seconds steady-ingest waits for the backlog to drain


def tracked(prefix: str, count: int, *, users: int | None = None) -> list[dict[str, Any]]:
    """`count` "Cart Touched" calls with message ids; over `users` users (default: each
    its own)."""
    return [
        nudge.touch(f"{prefix}-{i % users if users else i}", f"c{i}", message_id=f"{prefix}-m{i}")
        for i in range(count)
    ]


async def post_batches(
    base: str, key: str, batches: Sequence[list[dict[str, Any]]], *, concurrency: int
) -> tuple[float, int, list[float], Counter[str]]:
    """Post each batch to `/v1/batch` from `concurrency` connections (closed loop).
    Returns (wall seconds, events answered 200, request seconds, failures by kind)."""
    queue = iter(batches)
    latencies: list[float] = []
    failures: Counter[str] = Counter()
    accepted = 0

    async def connection(http: httpx.AsyncClient) -> None:
        nonlocal accepted
        for batch in queue:  # shared: each batch is taken once
            begun = time.perf_counter()
            try:
                response = await http.post("/v1/batch", json={"batch": batch})
            except httpx.TransportError as exc:
                failures[type(exc).__name__] += 1
                continue
            latencies.append(time.perf_counter() - begun)
            if response.status_code == 200:
                accepted += len(batch)
            else:
                failures[f"HTTP {response.status_code}"] += 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, auth=(key, ""), limits=limits, timeout=60) as http:
        started = time.perf_counter()
        await asyncio.gather(*(connection(http) for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return wall, accepted, latencies, failures


async def _ingest_sample(
    context: Context, key: str, kind: str, *, events: int, batch: int, users: int, conc: int
) -> Values:
    await truncate(context)
    bodies = tracked(f"{kind}", events, users=users)
    batches = [bodies[i : i + batch] for i in range(0, events, batch)]
    schema = context.settings.database_schema or ""
    async with api_child(kind, schema) as (base, api):
        before = cpu_seconds(api.pid)
        wall, accepted, latencies, failures = await post_batches(
            base, key, batches, concurrency=conc
        )
        api_cpu = cpu_seconds(api.pid) - before
    stored = int(await scalar(context, "SELECT count(*) FROM events"))
    for what, n in failures.items():
        print(f"  [batch-ingest] {kind}: FAILED requests {n} x {what}")
    p50, _, p99 = percentiles(latencies)
    return {
        "accepted/s": accepted / wall,
        "stored": float(stored),
        "request p50": p50 * 1000,
        "request p99": p99 * 1000,
        "API CPU": api_cpu / len(batches) * 1000,
    }


async def batch_ingest(
    pairs: int, *, events: int, batch: int = 100, users: int = 1000, concurrency: int = 4
) -> Result:
    result = Result(
        name="batch-ingest",
        method=(
            f"{events} 'Cart Touched' events over {users} users, POST /v1/batch of {batch}"
            f" from {concurrency} keep-alive connections (closed loop), to uvicorn in a child"
            " process. bare: FastAPI + asyncpg, one transaction per request: upsert the"
            " users (INSERT ... SELECT FROM unnest ON CONFLICT DO NOTHING), insert the"
            " events (INSERT ... SELECT FROM unnest JOIN users), no validation or auth."
            " nudge: engine.app.api.api_app, no router. Same migrated tables, emptied"
            " before each sample. Ratio nudge/bare of accepted events/s."
        ),
        measures=[
            Measure("accepted/s", "events/s answered 200", True, 0.5),
            Measure("stored", "rows in events", True),
            Measure("request p50", "ms", False),
            Measure("request p99", "ms", False),
            Measure("API CPU", "ms of the API process's CPU per request", False),
        ],
    )
    async with bench_context() as context:
        async with context.sessions() as db:
            key = await create_key(db, name="bench")
            await db.commit()

        def side(kind: str) -> Any:
            return lambda i: _ingest_sample(
                context, key, kind, events=events, batch=batch, users=users, conc=concurrency
            )

        return await run_pairs(result, pairs, side("bare"), side("nudge"))


def stream(prefix: str, count: int, *, triggers: float, users: int) -> list[dict[str, Any]]:
    """`count` calls with message ids: a share `triggers` of them "Cart Touched" (each a new
    cart, so a new `t_keyed` run: a signal-with-start), spread evenly, the rest "Page
    Viewed" (a journey trigger, exit, goal or wait of none of the test journeys: routed
    without a Temporal call), over `users` users in turn."""
    every = round(1 / triggers) if triggers > 0 else 0
    calls = []
    for i in range(count):
        user = f"{prefix}-{i % users}"
        if every and i % every == 0:
            calls.append(nudge.touch(user, f"c{i}", message_id=f"{prefix}-m{i}"))
        else:
            calls.append(
                {
                    "type": "track",
                    "userId": user,
                    "event": "Page Viewed",
                    "properties": {"path": f"/p/{i % 50}"},
                    "messageId": f"{prefix}-m{i}",
                }
            )
    return calls


async def steady_ingest(*, rate: float, batch: int, seconds: float, triggers: float) -> Result:
    """Nudge only: `rate` events/s in `/v1/batch` requests of `batch`, open loop, for
    `seconds`, with the router inside the API process (woken by every request), and the
    outbox's backlog sampled every second; then the time until it drains. A share
    `triggers` of the events start a run (1: every one, the router's worst case); the
    rest are events no run listens to. Bare signal-with-start's rate on a fresh dev server
    is measured first, the same moment's ceiling for the runs the stream starts."""
    total = int(rate * seconds)
    users = total if triggers >= 1 else max(1, total // 20)
    mix = (
        "'Cart Touched' events, each its own user and cart (each starts a t_keyed run: one"
        " signal-with-start per event, the router's worst case)"
        if triggers >= 1
        else f"events over {users} users: {triggers:.0%} 'Cart Touched' (each a new cart:"
        " a new t_keyed run, one signal-with-start), spread evenly, the rest 'Page Viewed'"
        " (no journey triggers on, exits on, or listens to it: routed without a Temporal"
        " call), as a product's stream of mostly page and screen events would be"
    )
    result = Result(
        name="steady-ingest" if triggers >= 1 else f"steady-ingest ({triggers:.0%} triggers)",
        method=(
            f"Nudge only, once. {rate:g} events/s as POST /v1/batch of {batch} (one request"
            f" every {batch / rate:.2f} s, open loop) for {seconds:g} s = {total} {mix},"
            " to the API in a child process with the router inside it (own pool, woken by"
            " every request, poll interval 0.5 s); a fresh dev server, no worker. The"
            " backlog (SELECT count(*) FROM events WHERE routed_at IS NULL) is sampled every"
            " second from this process. Before it, bare signal-with-start's rate on a fresh"
            " dev server (route-burst's bare side, 500 starts): the ceiling of the runs a"
            " stream can start here. Target: the backlog stays under 1,000 and drains."
        ),
    )
    ceiling = (await routing.bare_route(500, prefix="ceiling"))["routed/s"]
    async with bench_context() as context, temporal_server() as server:
        async with context.sessions() as db:
            key = await create_key(db, name="bench")
            await db.commit()
        bodies = stream("steady", total, triggers=triggers, users=users)
        batches = [bodies[i : i + batch] for i in range(0, total, batch)]
        schema = context.settings.database_schema or ""
        backlog: list[tuple[float, int]] = []

        async def unrouted() -> int:
            sql = "SELECT count(*) FROM events WHERE routed_at IS NULL"
            return int(await scalar(context, sql))

        async def sample(started: float) -> None:
            while True:
                backlog.append((time.perf_counter() - started, await unrouted()))
                await asyncio.sleep(1.0)

        async with api_child("nudge", schema, target=server.target, router=True) as (base, api):
            here, there = cpu_seconds(api.pid), cpu_seconds(server.pid)
            limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
            async with httpx.AsyncClient(
                base_url=base, auth=(key, ""), limits=limits, timeout=60
            ) as http:
                started = time.perf_counter()
                sampler = asyncio.create_task(sample(started))
                answers = await _open_loop(http, batches, every=batch / rate, started=started)
                loaded = time.perf_counter()
                try:
                    drained: float | None = await wait_for(
                        lambda: _is_zero(unrouted), what="drain", limit=DRAIN_LIMIT, every=0.2
                    )
                except TimeoutError:
                    drained = None
                sampler.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sampler
            api_cpu, server_cpu = cpu_seconds(api.pid) - here, cpu_seconds(server.pid) - there
        lags = await _lags(context)
    accepted = sum(n for ok, n, _ in answers if ok)
    failed = len([a for a in answers if not a[0]])
    latencies = [t for _, _, t in answers]
    peak_at, peak = max(backlog, key=lambda s: s[1]) if backlog else (0.0, 0)
    at_end = next(
        (n for t, n in backlog if t >= loaded - started), backlog[-1][1] if backlog else 0
    )
    result.lines += [
        f"bare signal-with-start, just before: {ceiling:.1f}/s; this stream starts"
        f" {rate * triggers:.1f} runs/s",
        f"offered {total} events in {len(batches)} requests over {seconds:g} s;"
        f" accepted {accepted} ({accepted / (loaded - started):.1f} events/s over"
        f" {loaded - started:.1f} s), {failed} requests failed;"
        f" request {describe(latencies)}",
        f"backlog (unrouted events, sampled every 1 s): max {peak} at {peak_at:.0f} s;"
        f" {at_end} when the last request was answered",
        (
            f"drained {drained - loaded:.1f} s after the last request was answered"
            if drained is not None
            else f"NOT drained {DRAIN_LIMIT:.0f} s after the load"
        ),
        f"accepted -> routed (routed_at - received_at): {describe(lags, scale=1.0, unit='s')}",
        f"CPU per event: API+router process {api_cpu / total * 1000:.1f} ms, dev server"
        f" {server_cpu / total * 1000:.1f} ms",
        "target (backlog < 1000 and drains): "
        + ("meets target" if peak < 1000 and drained is not None else "MISSES target"),
    ]
    return result


async def _is_zero(count: Any) -> bool:
    return int(await count()) == 0


async def _open_loop(
    http: httpx.AsyncClient,
    batches: Sequence[list[dict[str, Any]]],
    *,
    every: float,
    started: float,
) -> list[tuple[bool, int, float]]:
    """Post batch k at `started + k * every` whether or not earlier ones were answered;
    returns (answered 200, events, seconds) per request."""

    async def post(k: int, body: list[dict[str, Any]]) -> tuple[bool, int, float]:
        await asyncio.sleep(max(0.0, started + k * every - time.perf_counter()))
        begun = time.perf_counter()
        try:
            response = await http.post("/v1/batch", json={"batch": body})
        except httpx.TransportError:
            return False, len(body), time.perf_counter() - begun
        return response.status_code == 200, len(body), time.perf_counter() - begun

    return list(await asyncio.gather(*(post(k, b) for k, b in enumerate(batches))))


async def _lags(context: Context) -> list[float]:
    async with context.sessions() as db:
        rows = (
            await db.execute(
                text("SELECT received_at, routed_at FROM events WHERE routed_at IS NOT NULL")
            )
        ).all()
    return [(routed - received).total_seconds() for received, routed in rows]
