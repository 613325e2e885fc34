"""RFC 9457 problem details: every API error has a stable `type` and names the field."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from engine.observability.metrics import EVENTS_REJECTED
from engine.store.users import ProfileError

PROBLEM_JSON = "application/problem+json"
TRACKING_PATHS = frozenset({"/v1/track", "/v1/identify", "/v1/batch"})


class Problem(Exception):
    """Raise to answer with a problem document."""

    def __init__(
        self,
        status: int,
        slug: str,
        title: str,
        detail: str | None = None,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(title)
        self.status, self.slug, self.title = status, slug, title
        self.detail, self.errors, self.headers = detail, errors, headers


def problem_response(problem: Problem, instance: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"urn:nudge:problem:{problem.slug}",
        "title": problem.title,
        "status": problem.status,
    }
    if problem.detail:
        body["detail"] = problem.detail
    if instance:
        body["instance"] = instance
    if problem.errors is not None:
        body["errors"] = problem.errors
    return JSONResponse(
        body, status_code=problem.status, media_type=PROBLEM_JSON, headers=problem.headers
    )


def field_errors(errors: Any, *, prefix: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    """Pydantic errors as `{"field": "batch[2].event", "message": ...}` items."""
    out = []
    for err in errors:
        loc = [p for p in (*prefix, *err.get("loc", ())) if p != "body"]
        field = ""
        for part in loc:
            field += f"[{part}]" if isinstance(part, int) else (f".{part}" if field else str(part))
        out.append({"field": field or "body", "message": err.get("msg", "invalid")})
    return out


def install(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        if request.url.path in TRACKING_PATHS:
            EVENTS_REJECTED.labels(exc.slug).inc()
        return problem_response(exc, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        if request.url.path in TRACKING_PATHS:
            EVENTS_REJECTED.labels("invalid").inc()
        errors = field_errors(exc.errors())
        fields = ", ".join(e["field"] for e in errors)
        return problem_response(
            Problem(
                422, "invalid-body", "The request is not valid", f"check: {fields}", errors=errors
            ),
            request.url.path,
        )

    @app.exception_handler(ProfileError)
    async def _profile(request: Request, exc: ProfileError) -> JSONResponse:
        return problem_response(
            Problem(
                422,
                "invalid-profile",
                "A profile field is not valid",
                str(exc),
                errors=[{"field": exc.field, "message": str(exc)}],
            ),
            request.url.path,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        slug = {404: "not-found", 405: "method-not-allowed", 401: "unauthorized"}.get(
            exc.status_code, "http-error"
        )
        return problem_response(
            Problem(exc.status_code, slug, str(exc.detail), headers=getattr(exc, "headers", None)),
            request.url.path,
        )
