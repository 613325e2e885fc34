"""The web console, mounted at `/ui` by the API: journeys, users, messages, previews.

Everything it serves is in this package (templates, htmx, the style sheet), so the wheel
carries it and nothing loads from a CDN. Pages need a console session (`auth`); answers
carry a strict Content-Security-Policy (scripts and styles from this origin only).
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable

from fastapi import Depends, FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.middleware.sessions import SessionMiddleware

from triggers.console import auth, journeys, messages, users
from triggers.console.auth import CsrfRejected
from triggers.console.views import HERE, ConsoleDeps, LoginRequired, render, viewer

SESSION_HOURS = 8
"""How long a console session lasts without signing in again."""

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def create_console(deps: ConsoleDeps, *, secret: str | None, https_only: bool = False) -> FastAPI:
    """The console app (mount it at `/ui`). `secret` signs session cookies; None makes one
    for this process (sessions then end when it restarts and do not cross replicas)."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    app.state.console = deps

    async def signed_in(request: Request) -> None:
        request.state.viewer = await viewer(request)

    pages = [Depends(signed_in)]
    app.include_router(auth.router)
    for routes in (journeys.router, users.router, messages.router):
        app.include_router(routes, dependencies=pages)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.get("/", include_in_schema=False)
    async def home() -> Response:
        return RedirectResponse("/ui/journeys", status_code=303)

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired) -> Response:
        target = "/ui/login?" + _next(request)
        if request.headers.get("hx-request") == "true":
            return Response(status_code=401, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)

    @app.exception_handler(CsrfRejected)
    async def csrf_rejected(request: Request, exc: CsrfRejected) -> Response:
        message = "the form had expired or did not come from this console: try again"
        return render(request, "error.html", {"message": message}, status_code=403)

    @app.middleware("http")
    async def headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            if name == "Cache-Control" and request.url.path.startswith("/ui/static/"):
                continue
            response.headers.setdefault(name, value)
        return response

    # Added last, so it runs first: every handler above sees `request.session`.
    app.add_middleware(
        SessionMiddleware,
        secret_key=secret or secrets.token_urlsafe(32),
        session_cookie="nudge_console",
        max_age=SESSION_HOURS * 3600,
        path="/ui",
        same_site="strict",
        https_only=https_only,
    )
    return app


def _next(request: Request) -> str:
    from urllib.parse import urlencode

    path = request.url.path
    if request.url.query:
        path += "?" + request.url.query
    return urlencode({"next": path})
