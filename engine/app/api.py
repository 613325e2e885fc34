"""`nudge api`: the HTTP API, and (unless `NUDGE_API_ROUTER=false`) an event router beside it."""

from __future__ import annotations

import asyncio
import contextlib

import uvicorn
from fastapi import FastAPI

from engine.app.heap import settle
from engine.app.journeys import check_overrides, shipped_journeys, template_store
from engine.app.router import build_dispatcher, build_router
from engine.app.segments import known_segments
from engine.app.temporal import TemporalConnection
from engine.config.settings import Settings, require_encryption
from engine.context import Context
from engine.delivery.templates import TemplateStore
from engine.journey import Journeys
from engine.store.data_keys import StoreUserKeys
from triggers.api.app import create_app
from triggers.console.app import create_console
from triggers.console.views import ConsoleDeps
from triggers.router import Router


def api_app(
    context: Context, temporal: TemporalConnection, *, router: Router | None = None
) -> FastAPI:
    """The API on `context`, with the web console at `/ui`; with a `router`, it runs while
    the app runs and is woken whenever the API stores events."""
    journeys = shipped_journeys()
    app = create_app(
        context,
        temporal=temporal.get,
        router=router,
        run_router=router is not None,
        segments=known_segments(context.config),
        journeys=journeys,
    )
    mount_console(app, context, journeys=journeys)
    return app


def mount_console(
    app: FastAPI,
    context: Context,
    *,
    journeys: Journeys | None = None,
    templates: TemplateStore | None = None,
) -> None:
    """Serve the web console at `/ui` on the API `app` (the shipped journeys and templates
    unless given)."""
    settings = context.settings
    deps = ConsoleDeps(
        context=context,
        journeys=journeys if journeys is not None else shipped_journeys(),
        templates=templates or template_store(),
        temporal_ui=settings.temporal_ui_url,
        namespace=settings.temporal_namespace,
        access=app.state.access,
    )
    secret = settings.console_secret.get_secret_value() if settings.console_secret else None
    app.mount("/ui", create_console(deps, secret=secret))


async def serve_api(settings: Settings) -> None:
    """Serve until uvicorn stops. The router gets a database pool of its own, so a burst of
    ingestion never starves routing (and vice versa); `nudge router` runs it on its own."""
    async with contextlib.AsyncExitStack() as stack:
        context = await stack.enter_async_context(Context.opened(settings))
        require_encryption(settings)
        check_overrides(context.config, settings)
        temporal = TemporalConnection(settings, user_keys=StoreUserKeys(context.sessions))
        router = None
        if settings.api_router:
            routing = await stack.enter_async_context(Context.opened(settings))
            router = build_router(routing, temporal.get)
            dispatching = asyncio.create_task(build_dispatcher(routing, temporal.get).run())
            stack.callback(dispatching.cancel)
        app = api_app(context, temporal, router=router)
        server = uvicorn.Server(
            uvicorn.Config(app, host=settings.api_host, port=settings.api_port, log_config=None)
        )
        settle()
        await server.serve()
