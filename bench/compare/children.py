"""The child processes of `bench.compare`: a worker and an API server, each bare or Nudge.

    python -m bench.compare.children worker --kind bare|nudge --target HOST:PORT --schema S
    python -m bench.compare.children api --kind bare|nudge --fd N --schema S [--target T] [--router]
    python -m bench.compare.children router --kind nudge --target HOST:PORT --schema S

Each settles its heap as Nudge's processes do (`engine.app.heap.settle`, bare and Nudge
alike), prints `READY` on stdout once it serves and runs until SIGTERM; then it prints the
Temporal SDK's warnings by kind (the parent keeps those lines). The API serves on the
listening socket `--fd` it inherited, so the parent knows the port before it starts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import Sequence

from bench._common import (
    READY,
    TEST_TEMPLATES,
    bench_settings,
    console_providers,
    count_core_warnings,
)
from bench.compare.nudge import TASK_QUEUE
from engine.app.heap import settle

# The worker tuning `engine.app.worker.build_worker` uses; the bare worker gets the same.
MAX_CACHED_WORKFLOWS = 1000
WORKFLOW_TASK_POLLS = 10
STICKY_RATIO = 0.5


def _ready() -> None:
    settle()
    print(READY, flush=True)


async def _until_sigterm() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()


async def bare_worker(target: str) -> None:
    """`BareJourney` and its activity, default converter and sandbox."""
    from temporalio.client import Client
    from temporalio.worker import Worker

    from bench.compare.bare_journey import BareJourney, stamp

    client = await Client.connect(target)
    async with Worker(
        client,
        task_queue=TASK_QUEUE,
        workflows=[BareJourney],
        activities=[stamp],
        max_cached_workflows=MAX_CACHED_WORKFLOWS,
        max_concurrent_workflow_task_polls=WORKFLOW_TASK_POLLS,
        nonsticky_to_sticky_poll_ratio=STICKY_RATIO,
    ):
        _ready()
        await _until_sigterm()


async def nudge_worker(target: str, schema: str) -> None:
    """`engine.app.worker.build_worker` with the test journeys and console providers."""
    from engine.app.journeys import template_store
    from engine.app.worker import build_worker
    from engine.config.nudge_toml import NudgeConfig
    from engine.context import Context
    from engine.temporal.client import connect
    from tests.journeys import TEST_JOURNEYS

    settings = bench_settings(schema, temporal_address=target, task_queue=TASK_QUEUE)
    async with Context.opened(settings, config=NudgeConfig()) as context:
        client = await connect(settings)
        providers = console_providers()
        await providers.start()
        try:
            async with build_worker(
                client,
                context,
                providers=providers,
                journeys=TEST_JOURNEYS,
                templates=template_store(TEST_TEMPLATES),
            ):
                _ready()
                await _until_sigterm()
        finally:
            await providers.close()


async def nudge_api(fd: int, schema: str, target: str | None, router: bool) -> None:
    """The real API (`engine.app.api.api_app`) under uvicorn; with `router`, an event
    router beside it on a database pool of its own, woken by every accepted request
    (what `nudge api` runs)."""
    import uvicorn

    from engine.app.api import api_app
    from engine.app.router import build_router
    from engine.app.temporal import TemporalConnection
    from engine.config.nudge_toml import NudgeConfig
    from engine.context import Context
    from tests.journeys import TEST_JOURNEYS

    settings = bench_settings(
        schema, temporal_address=target or "127.0.0.1:7233", task_queue=TASK_QUEUE
    )
    temporal = TemporalConnection(settings)
    async with contextlib.AsyncExitStack() as stack:
        context = await stack.enter_async_context(Context.opened(settings, config=NudgeConfig()))
        routing = None
        if router:
            own = await stack.enter_async_context(Context.opened(settings, config=NudgeConfig()))
            routing = build_router(own, temporal.get, journeys=TEST_JOURNEYS)
        app = api_app(context, temporal, router=routing)
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
        _ready()
        await server.serve(sockets=[socket.socket(fileno=fd)])


async def nudge_router(schema: str, target: str) -> None:
    """A router of its own (what `nudge router` runs), for the API child without one: woken
    by the events trigger's NOTIFY, polling every `router_poll_interval` besides."""
    from engine.app.router import build_router
    from engine.app.temporal import TemporalConnection
    from engine.config.nudge_toml import NudgeConfig
    from engine.context import Context
    from tests.journeys import TEST_JOURNEYS

    settings = bench_settings(schema, temporal_address=target, task_queue=TASK_QUEUE)
    temporal = TemporalConnection(settings)
    async with Context.opened(settings, config=NudgeConfig()) as context:
        routing = asyncio.create_task(
            build_router(context, temporal.get, journeys=TEST_JOURNEYS).run()
        )
        _ready()
        await _until_sigterm()
        routing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await routing


async def bare_api(fd: int, schema: str) -> None:
    import uvicorn

    from bench.compare.bare import bare_ingest_app, bare_pool

    async with bare_pool(schema) as pool:
        server = uvicorn.Server(
            uvicorn.Config(bare_ingest_app(pool), log_level="warning", access_log=False)
        )
        _ready()
        await server.serve(sockets=[socket.socket(fileno=fd)])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.compare.children")
    parser.add_argument("role", choices=["worker", "api", "router"])
    parser.add_argument("--kind", choices=["bare", "nudge"], required=True)
    parser.add_argument("--schema", default="")
    parser.add_argument("--target", default=None)
    parser.add_argument("--fd", type=int, default=-1)
    parser.add_argument("--router", action="store_true")
    args = parser.parse_args(argv)
    warnings = count_core_warnings()
    if args.role == "router":
        assert args.kind == "nudge" and args.target, "a router is Nudge's, and needs --target"
        asyncio.run(nudge_router(args.schema, args.target))
    elif args.role == "worker":
        assert args.target, "a worker needs --target"
        if args.kind == "bare":
            asyncio.run(bare_worker(args.target))
        else:
            asyncio.run(nudge_worker(args.target, args.schema))
    elif args.kind == "bare":
        asyncio.run(bare_api(args.fd, args.schema))
    else:
        asyncio.run(nudge_api(args.fd, args.schema, args.target, args.router))
    for kind, n in warnings.most_common(5):
        print(f"{args.kind} {args.role}: Temporal SDK warnings x{n}: {kind}")
    sys.stdout.flush()
    # Skip interpreter teardown: a process that used the SDK's Rust bridge may abort in it
    # (sdk-python #300) once the worker has shut down cleanly.
    os._exit(0)


if __name__ == "__main__":
    main()
