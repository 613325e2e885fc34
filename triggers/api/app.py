"""The API application: tracking, users, messages, health, metrics."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Collection

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi_offline import FastAPIOffline
from temporalio.client import Client

from engine.context import Context
from engine.segments import Segments
from engine.store.data_keys import StoreUserKeys
from engine.temporal.codec import codec_from_secret
from schemas.api import HealthOut, ReadyOut
from triggers.api import analytics, broadcasts, engagement, messages, problems, sms, tracking, users
from triggers.api import segments as segment_routes
from triggers.api.auth import Access
from triggers.api.bodies import BodyLimits
from triggers.api.deps import ApiState, readiness, state
from triggers.api.problems import problem_responses
from triggers.codec_server import create_codec_app
from triggers.router import Router


def create_app(
    context: Context,
    *,
    temporal: Callable[[], Awaitable[Client]],
    router: Router | None = None,
    run_router: bool = True,
    segments: Segments | None = None,
    journeys: Collection[str] | None = None,
) -> FastAPI:
    """Build the API. With `run_router`, the router drains the outbox while the app runs.

    `segments`: those the API answers for (default: declared in code so far, and the
    config's); `journeys`: those broadcasts may enter (default: the router's).
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(router.run()) if (router and run_router) else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    # `/docs` and `/redoc` from Swagger UI and ReDoc files shipped in `fastapi-offline`: no CDN.
    app = FastAPIOffline(
        title="Nudge",
        version="0.1.0",
        description="Event-driven user journeys over SMS and push.",
        lifespan=lifespan,
    )
    app.state.nudge = ApiState(
        context=context,
        router=router,
        temporal=temporal,
        segments=segments if segments is not None else Segments.of(context.config.segments),
        journeys=frozenset(journeys if journeys is not None else (router.specs if router else ())),
    )
    problems.install(app)

    # Body limits on the bytes that arrive (chunked or not) and on what gzip inflates to.
    app.add_middleware(BodyLimits)
    app.state.access = Access(context.config.api)

    # Every route states the scope it needs (`triggers.api.auth.require`).
    # The batch of opens comes before `/v1/messages/{message_id}`, which would shadow it.
    for routes in (
        tracking.router,
        users.router,
        engagement.opens,
        messages.router,
        analytics.router,
        segment_routes.router,
        broadcasts.router,
    ):
        app.include_router(routes, responses=problem_responses(401, 403, 429))
    # Provider webhooks: signed by the provider (HMAC), not by an API key.
    app.include_router(sms.router)

    # Tracked links are public: whoever got the message clicks them.
    app.include_router(engagement.clicks, responses=problem_responses(404))

    codec = codec_from_secret(
        context.settings.encryption_keys, user_keys=StoreUserKeys(context.sessions)
    )
    token = context.settings.codec_token
    if codec is not None and (token is not None or context.settings.codec_allow_anonymous):
        # The remote codec endpoint for the Temporal Web UI (`/codec/decode`, `/codec/encode`).
        app.mount(
            "/codec",
            create_codec_app(
                codec,
                token=token.get_secret_value() if token else None,
                cors_origins=context.settings.cors_origins(),
            ),
        )

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> HealthOut:
        """Liveness: the process answers (it checks no dependency; see `/readyz`)."""
        return HealthOut()

    @app.get(
        "/readyz",
        tags=["ops"],
        response_model=ReadyOut,
        responses={503: {"description": "A dependency does not answer", "model": ReadyOut}},
    )
    async def readyz(request: Request) -> JSONResponse:
        """Readiness: the database and Temporal answer within a couple of seconds."""
        checks = await readiness(state(request))
        ready = all(check.ok for check in checks.values())
        body = ReadyOut(status="ready" if ready else "unavailable", checks=checks)
        return JSONResponse(body.model_dump(mode="json"), status_code=200 if ready else 503)

    @app.get("/metrics", tags=["ops"], include_in_schema=False)
    async def metrics() -> Response:
        from engine.observability.metrics import metrics_response

        body, content_type = metrics_response()
        return Response(body, media_type=content_type)

    return app
