"""Long-running processes: `nudge api`, `nudge worker`, and the pieces `nudge dev` reuses."""

from __future__ import annotations

import asyncio
import logging
import signal

import prometheus_client
import uvicorn
from fastapi import FastAPI
from temporalio.client import Client
from temporalio.runtime import Runtime
from temporalio.service import RPCError

from engine.channels.factory import build_providers
from engine.context import Context
from engine.metrics import REGISTRY, temporal_runtime_with_prometheus
from engine.settings import Settings
from engine.temporal import connect
from engine.worker import build_worker, journey_classes
from triggers.api.app import create_app
from triggers.router import Router

log = logging.getLogger(__name__)


_RUNTIME: Runtime | None = None


def sdk_runtime(settings: Settings) -> Runtime:
    """The process's Temporal runtime; exports SDK metrics when `temporal_metrics_bind` is set."""
    global _RUNTIME
    if _RUNTIME is None:
        _RUNTIME = temporal_runtime_with_prometheus(settings.temporal_metrics_bind)
    return _RUNTIME


class TemporalConnection:
    """Connects on first use and keeps the client; a failed attempt is retried next call,
    so the API keeps accepting events while Temporal is down."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client: Client | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> Client:
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                try:
                    self._client = await connect(
                        self._settings, runtime=sdk_runtime(self._settings)
                    )
                except RPCError as exc:
                    raise RuntimeError(f"Temporal unreachable: {exc.message}") from exc
            return self._client


def api_app(context: Context, temporal: TemporalConnection, *, route: bool = True) -> FastAPI:
    router = Router(
        sessionmaker=context.sessions,
        client=temporal.get,
        journeys=journey_classes(),
        config=context.config,
        task_queue=context.settings.task_queue,
        poll_interval=context.settings.router_poll_interval,
    )
    return create_app(context, temporal=temporal.get, router=router, run_router=route)


async def serve_api(settings: Settings) -> None:
    """`nudge api`: the HTTP API and the event router."""
    async with Context.opened(settings) as context:
        app = api_app(context, TemporalConnection(settings))
        server = uvicorn.Server(
            uvicorn.Config(app, host=settings.api_host, port=settings.api_port, log_config=None)
        )
        await server.serve()


async def run_worker(
    settings: Settings, *, stop: asyncio.Event | None = None, stop_on_signals: bool = False
) -> None:
    """`nudge worker`: journeys and activities, until `stop` is set (or SIGTERM/SIGINT with
    `stop_on_signals`); in-flight activities get to finish before it returns."""
    stop = stop or asyncio.Event()
    if stop_on_signals:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
    async with Context.opened(settings) as context:
        providers = build_providers(context)
        if settings.worker_metrics_bind:
            host, _, port = settings.worker_metrics_bind.rpartition(":")
            prometheus_client.start_http_server(int(port), host or "0.0.0.0", registry=REGISTRY)
        try:
            client = await connect(settings, runtime=sdk_runtime(settings))
            await providers.start()
            async with build_worker(client, context, providers=providers):
                await stop.wait()
        finally:
            await providers.close()
