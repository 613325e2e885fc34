"""RFC 9457 problem details: every API error has a stable `type` and names the field."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from engine.observability.metrics import EVENTS_REJECTED
from engine.store.users import ProfileError
from schemas.api import FieldError
from schemas.api import Problem as ProblemDocument

PROBLEM_JSON = "application/problem+json"
TRACKING_PATHS = frozenset(
    {
        "/v1/track",
        "/v1/identify",
        "/v1/page",
        "/v1/screen",
        "/v1/group",
        "/v1/alias",
        "/v1/batch",
        "/v1/import",
    }
)
COMPONENTS = "#/components/schemas/"
_MEANINGS = {
    400: "A parameter is not valid",
    401: "No valid API key",
    403: "The key's scope does not allow this route",
    404: "No such resource",
    413: "The request body is too large",
    415: "The body's Content-Encoding is not supported",
    422: "The body or a parameter is not valid",
    429: "Too many requests: wait `Retry-After` seconds",
    503: "A dependency (database, Temporal) cannot be reached: retry after `Retry-After`",
}


class Problem(Exception):
    """Raise to answer with a problem document."""

    def __init__(
        self,
        status: int,
        slug: str,
        title: str,
        detail: str | None = None,
        *,
        errors: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(title)
        self.status, self.slug, self.title = status, slug, title
        self.detail, self.errors, self.headers = detail, errors, headers


def problem_response(problem: Problem, instance: str | None = None) -> JSONResponse:
    body = ProblemDocument(
        type=f"urn:nudge:problem:{problem.slug}",
        title=problem.title,
        status=problem.status,
        detail=problem.detail or None,
        instance=instance or None,
        errors=problem.errors,
        code=problem.slug,
        message=problem.detail or problem.title,
    )
    return JSONResponse(
        body.model_dump(mode="json", exclude_none=True),
        status_code=problem.status,
        media_type=PROBLEM_JSON,
        headers=problem.headers,
    )


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """A route's `responses=`: the problem document it can answer with, for each status."""
    return {
        status: {
            "description": _MEANINGS[status],
            "content": {PROBLEM_JSON: {"schema": {"$ref": COMPONENTS + "Problem"}}},
        }
        for status in statuses
    }


def field_errors(errors: Any, *, prefix: tuple[Any, ...] = ()) -> list[FieldError]:
    """Pydantic errors as `{"field": "batch[2].event", "message": ...}` items."""
    out = []
    for err in errors:
        loc = [p for p in (*prefix, *err.get("loc", ())) if p != "body"]
        field = ""
        for part in loc:
            field += f"[{part}]" if isinstance(part, int) else (f".{part}" if field else str(part))
        out.append(FieldError(field=field or "body", message=err.get("msg", "invalid")))
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
        fields = ", ".join(e.field for e in errors)
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
                errors=[FieldError(field=exc.field, message=str(exc))],
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

    _document_problems(app)


def _document_problems(app: FastAPI) -> None:
    """Add the problem schemas to `/openapi.json` (`problem_responses` refers to them), and
    take out the 422 body FastAPI declares by itself on every route with parameters: this app
    never sends it (`_invalid` answers with a problem document), and a route that can
    answer 422 declares it."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = build()
        fastapi_422 = {"$ref": COMPONENTS + "HTTPValidationError"}
        for operations in document["paths"].values():
            for operation in operations.values():
                declared = operation["responses"].get("422", {}).get("content", {})
                if declared.get("application/json", {}).get("schema") == fastapi_422:
                    del operation["responses"]["422"]
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        problem = ProblemDocument.model_json_schema(
            ref_template=COMPONENTS + "{model}", mode="serialization"
        )
        schemas.update(problem.pop("$defs", {}))
        schemas["Problem"] = problem
        return document

    app.openapi = openapi  # type: ignore[method-assign]
