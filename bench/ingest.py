"""HTTP ingestion throughput through the real API, on Postgres.

    python -m bench.ingest [--events N] [--batch B] [--concurrency C] [--users U] [--route]

The API runs in a child process (uvicorn on a socket bound to 127.0.0.1 port 0 by this
process), so the load generator (httpx, this process) does not share an interpreter with
the server. B = 1 posts `/v1/track`, B > 1 posts `/v1/batch` with B events per request.
Prints events/s accepted (answered 200) and stored (rows in `events`), and request latency
percentiles in milliseconds.

`--route` also runs the router (inside the API process, woken by each accepted request),
a Temporal dev server and a worker with the trivial journey `t_keyed` (hold 0): every event
starts one run. It prints how long events waited between acceptance and routing
(`events.routed_at - received_at`, seconds) and the routing rate.

Everything lives in a Postgres schema of its own (`bench_<pid>_<hex>`), dropped at the end
(the helpers are in `bench._common`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
from sqlalchemy import text
from temporalio.client import Client

from bench._common import (
    POSTGRES_URL,
    REPO,
    TEST_TEMPLATES,
    bench_schema,
    bench_settings,
    console_providers,
    count_core_warnings,
    describe,
    print_core_warnings,
    scalar,
    stop_process,
    temporal_server,
    wait_for,
)
from engine.app.journeys import template_store
from engine.app.worker import build_worker
from engine.config.nudge_toml import NudgeConfig
from engine.context import Context
from engine.store.keys import create_key
from engine.temporal.client import connect

# -- the API in a child process ----------------------------------------------------------


async def _serve(fd: int, schema: str, temporal: str | None, task_queue: str) -> None:
    """Child process: serve the API on the inherited listening socket `fd` until SIGTERM."""
    import uvicorn

    from tests.journeys_keyed import TKeyed
    from triggers.api.app import create_app
    from triggers.router import Router

    settings = bench_settings(
        schema, temporal_address=temporal or "127.0.0.1:7233", task_queue=task_queue
    )
    context = await Context.open(settings, config=NudgeConfig())
    client: list[Client] = []

    async def temporal_client() -> Client:
        if not client:
            client.append(await connect(settings))
        return client[0]

    router = None
    if temporal is not None:
        router = Router(
            sessionmaker=context.sessions,
            client=temporal_client,
            journeys={"t_keyed": TKeyed},
            config=context.config,
            task_queue=task_queue,
            poll_interval=0.1,
        )
    app = create_app(
        context, temporal=temporal_client, router=router, run_router=router is not None
    )
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    try:
        await server.serve(sockets=[socket.socket(fileno=fd)])
    finally:
        await context.close()


@contextlib.asynccontextmanager
async def api_process(
    schema: str, *, temporal: str | None = None, task_queue: str = "bench"
) -> AsyncIterator[str]:
    """Run the API in a child process; yields its base URL. SIGTERM (then SIGKILL after
    10 s) on exit."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    port = sock.getsockname()[1]
    args = ["--serve-fd", str(sock.fileno()), "--schema", schema, "--task-queue", task_queue]
    if temporal is not None:
        args += ["--temporal", temporal]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.ingest", *args, cwd=REPO, pass_fds=(sock.fileno(),)
    )
    sock.close()  # the child holds its own copy
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base) as http:
            # The socket already listens, so this waits for the app rather than failing.
            (await http.get("/healthz", timeout=60)).raise_for_status()
        yield base
    finally:
        await stop_process(proc)


# -- the load ----------------------------------------------------------------------------


def _event(i: int, users: int, route: bool) -> dict[str, Any]:
    user = f"bench-{i % users}"
    if route:  # one t_keyed run per event
        return {
            "type": "track",
            "userId": user,
            "event": "Cart Touched",
            "properties": {"cart_id": f"c{i}"},
        }
    return {"type": "track", "userId": user, "event": "Bench Event", "properties": {"i": i}}


async def load(
    base: str, key: str, *, events: int, batch: int, concurrency: int, users: int, route: bool
) -> tuple[float, list[float], int]:
    """Post `events` events, `batch` per request, from `concurrency` connections.
    Returns (wall seconds, latencies in seconds of answered requests, events answered 200);
    prints failed requests by kind."""
    bodies = [
        [_event(i, users, route) for i in range(start, min(start + batch, events))]
        for start in range(0, events, batch)
    ]
    queue = iter(bodies)
    latencies: list[float] = []
    accepted = 0
    failures: Counter[str] = Counter()

    async def worker(http: httpx.AsyncClient) -> None:
        nonlocal accepted
        for body in queue:  # a shared iterator: each body is taken once
            started = time.perf_counter()
            try:
                if batch == 1:
                    response = await http.post("/v1/track", json=body[0])
                else:
                    response = await http.post("/v1/batch", json={"batch": body})
            except httpx.TransportError as exc:  # counted, not fatal: the run goes on
                failures[type(exc).__name__] += 1
                continue
            latencies.append(time.perf_counter() - started)
            if response.status_code == 200:
                accepted += len(body)
            else:
                failures[f"HTTP {response.status_code}"] += 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, auth=(key, ""), limits=limits, timeout=60) as http:
        await http.post("/v1/track", json=_event(0, 1, False) | {"userId": "warmup"})
        started = time.perf_counter()
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))
        wall = time.perf_counter() - started
    for kind, n in failures.most_common():
        print(f"  FAILED requests: {n} x {kind}")
    return wall, latencies, accepted


async def run(args: argparse.Namespace) -> None:
    events = args.events or (300 if args.route else 5000)
    task_queue = f"bench-{uuid.uuid4().hex[:8]}"
    print(
        f"ingest: {events} events, batch {args.batch}, concurrency {args.concurrency}, "
        f"{args.users} users, route={args.route}, Postgres {POSTGRES_URL.split('@')[-1]}"
    )
    async with contextlib.AsyncExitStack() as stack:
        schema = await stack.enter_async_context(bench_schema())
        context = await Context.open(
            bench_settings(schema, task_queue=task_queue), config=NudgeConfig()
        )
        stack.push_async_callback(context.close)
        async with context.sessions() as db:
            key = await create_key(db, name="bench")
            await db.commit()
        temporal = None
        warnings = count_core_warnings()
        if args.route:
            from tests.journeys_keyed import TKeyed

            env = await stack.enter_async_context(temporal_server())
            temporal = env.target
            providers = console_providers()
            await providers.start()
            stack.push_async_callback(providers.close)
            await stack.enter_async_context(
                build_worker(
                    env.client,
                    context,
                    providers=providers,
                    task_queue=task_queue,
                    journeys={"t_keyed": TKeyed},
                    templates=template_store(TEST_TEMPLATES),
                )
            )
        base = await stack.enter_async_context(
            api_process(schema, temporal=temporal, task_queue=task_queue)
        )
        started = time.perf_counter()
        wall, latencies, accepted = await load(
            base,
            key,
            events=events,
            batch=args.batch,
            concurrency=args.concurrency,
            users=args.users,
            route=args.route,
        )
        stored = int(
            await scalar(
                context,
                "SELECT count(*) FROM events e JOIN users u"
                " ON u.id = e.user_id WHERE u.external_id LIKE 'bench-%'",
            )
        )
        print(f"  wall {wall:.2f} s for {len(latencies)} requests")
        print(
            f"  accepted {accepted}/{events} events = {accepted / wall:.0f} events/s; "
            f"{len(latencies) / wall:.0f} requests/s"
        )
        print(f"  stored   {stored} rows (= {stored / wall:.0f} events/s)")
        print(f"  request latency: {describe(latencies)}")
        if args.route:
            await report_routing(context, events, started)
            print_core_warnings(warnings)


async def report_routing(context: Context, events: int, started: float) -> None:
    """Wait until the router has routed everything; print accepted → routed lag."""

    async def drained() -> bool:
        return (
            int(await scalar(context, "SELECT count(*) FROM events WHERE routed_at IS NULL")) == 0
        )

    await wait_for(drained, what="routing")
    async with context.sessions() as db:
        rows = (
            await db.execute(
                text("SELECT received_at, routed_at FROM events WHERE name = 'Cart Touched'")
            )
        ).all()
    lags = [(routed - received).total_seconds() for received, routed in rows]
    span = (max(r[1] for r in rows) - min(r[0] for r in rows)).total_seconds()
    print(
        f"  routed {len(rows)} events in {span:.2f} s = {len(rows) / span:.0f} events/s "
        f"(first accepted → last routed)"
    )
    print(f"  accepted → routed: {describe(lags, scale=1.0, unit='s')}")

    async def finished() -> bool:
        # Let the journeys end before tearing down, so shutdown cuts nothing mid-flight.
        closed = "SELECT count(*) FROM journey_runs WHERE status <> 'open'"
        return int(await scalar(context, closed)) >= events

    done = await wait_for(finished, what="journeys")
    print(f"  all {events} journeys ended {done - started:.1f} s after the first request")
    async with context.sessions() as db:
        counts = (
            await db.execute(
                text(
                    "SELECT count(*), count(DISTINCT workflow_id),"
                    " count(*) FILTER (WHERE status = 'sent') FROM messages"
                )
            )
        ).one()
    # Retried deliveries must not duplicate: one message row per run.
    print(
        f"  messages: {counts[0]} rows for {counts[1]} runs ({counts[2]} sent: these users have"
        " no device, so each send is suppressed as no_address)"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ingest",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--events", type=int, default=None, help="events to post (default 5000; 300 with --route)"
    )
    parser.add_argument("--batch", type=int, default=1, help="events per request (1 = /v1/track)")
    parser.add_argument("--concurrency", type=int, default=16, help="connections in flight")
    parser.add_argument("--users", type=int, default=1000, help="distinct userIds")
    parser.add_argument("--route", action="store_true", help="also measure the router")
    parser.add_argument("--serve-fd", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--schema", help=argparse.SUPPRESS)
    parser.add_argument("--temporal", help=argparse.SUPPRESS)
    parser.add_argument("--task-queue", default="bench", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_fd is not None:
        asyncio.run(_serve(args.serve_fd, args.schema, args.temporal, args.task_queue))
        return
    if not 1 <= args.batch <= 1000 or args.concurrency < 1 or args.users < 1:
        parser.error("need 1 <= --batch <= 1000, --concurrency >= 1, --users >= 1")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
