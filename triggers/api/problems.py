"""RFC 9457 problem details: every API error has a stable `type` and names the field."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from engine.observability.metrics import EVENTS_REJECTED
from engine.store.users import ProfileError
from schemas.api import FieldError
from schemas.api import Problem as ProblemDocument
from schemas.fields import STORABLE_MARK, STORABLE_SCHEMAS

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
RETRY_AFTER_SECONDS = 5
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
    400: "A parameter or the body is not valid (e.g. not JSON)",
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


RETRY_LATER_SQLSTATES = ("08", "40", "53", "57P", "58")
"""SQLSTATE classes that mean "not now" rather than "not this data": connection exceptions,
transaction rollbacks (deadlock, serialization), insufficient resources, operator
intervention (a shutdown or crash: `57P01`-`57P03`) and system errors."""


def unreachable(exc: BaseException) -> bool:
    """Whether a database error means "cannot reach the database" (retry later), not "this
    request's data is wrong"."""
    if isinstance(exc, OperationalError | InterfaceError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    ):
        return True
    orig = getattr(exc, "orig", None)
    # SQLAlchemy's asyncpg adapter wraps the driver's error: look at both.
    causes = [c for c in (orig, getattr(orig, "__cause__", None), exc.__cause__) if c is not None]
    for cause in causes:
        if isinstance(cause, OSError | TimeoutError | ConnectionError):
            return True
        if type(cause).__name__ in (
            "CannotConnectNowError",
            "ConnectionDoesNotExistError",
            "ConnectionFailureError",
            "TooManyConnectionsError",
            "InterfaceError",
            "InternalClientError",
        ):
            return True
        state = getattr(cause, "sqlstate", None)
        if isinstance(state, str) and state.startswith(RETRY_LATER_SQLSTATES):
            return True
    return False


def _unavailable(request: Request, what: str) -> JSONResponse:
    """503 with Retry-After: what was accepted before stays accepted; retry this call."""
    log.warning("%s is unreachable; answering 503 on %s", what, request.url.path)
    return problem_response(
        Problem(
            503,
            "unavailable",
            "Service unavailable",
            f"{what} cannot be reached right now; retry shortly",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        ),
        request.url.path,
    )


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

    @app.exception_handler(DBAPIError)
    async def _database(request: Request, exc: DBAPIError) -> JSONResponse:
        if not unreachable(exc):
            # A query the database refused for its data (too long, out of range): the
            # caller's input, not the server's fault.
            cause = (exc.orig.__cause__ if exc.orig is not None else None) or exc.orig
            log.warning(
                "database refused a request on %s: %s (SQLSTATE %s)",
                request.url.path,
                type(cause).__name__,
                getattr(cause, "sqlstate", None) or getattr(exc.orig, "sqlstate", "?"),
            )
            return problem_response(
                Problem(422, "unstorable", "The request holds a value the database cannot store"),
                request.url.path,
            )
        return _unavailable(request, "the database")

    @app.exception_handler(OSError)
    async def _os(request: Request, exc: OSError) -> JSONResponse:
        return _unavailable(request, "a dependency")

    @app.exception_handler(TimeoutError)
    async def _timeout(request: Request, exc: TimeoutError) -> JSONResponse:
        return _unavailable(request, "a dependency")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        slug = {
            400: "bad-request",
            404: "not-found",
            405: "method-not-allowed",
            401: "unauthorized",
        }.get(exc.status_code, "http-error")
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            # Every method the path answers, not only the ones of the route that matched.
            headers["Allow"] = ", ".join(_methods_of(app, request.url.path))
        return problem_response(
            Problem(exc.status_code, slug, str(exc.detail), headers=headers or None),
            request.url.path,
        )

    _document_problems(app)


def _methods_of(app: FastAPI, path: str) -> list[str]:
    methods: set[str] = set()
    for route in app.routes:
        matcher = getattr(route, "path_regex", None)
        if matcher is not None and matcher.match(path):
            methods |= set(getattr(route, "methods", ()) or ())
    return sorted(methods)


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
        schemas.update(STORABLE_SCHEMAS)
        _point_at_storable(document)
        _document_everywhere(document)
        _document_security(app, document)
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def _document_everywhere(document: dict[str, Any]) -> None:
    """Answers any route can give: 400 for a body that is not JSON, 503 while the database
    cannot be reached (on every route that reads it, i.e. all of `/v1`)."""
    for path, operations in document["paths"].items():
        for operation in operations.values():
            responses = operation["responses"]
            needed = []
            if "requestBody" in operation:
                needed.append(400)
            if path.startswith("/v1/"):
                needed.append(503)
            for status, response in problem_responses(*needed).items():
                responses.setdefault(str(status), response)


def _point_at_storable(node: Any) -> None:
    """Free-form JSON fields (`schemas.fields.FreeForm`) refer to the recursive component."""
    if isinstance(node, dict):
        for key, value in list(node.items()):
            if isinstance(value, dict) and value.get(STORABLE_MARK):
                node[key] = {"$ref": COMPONENTS + "StorableObject"}
            else:
                _point_at_storable(value)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            if isinstance(value, dict) and value.get(STORABLE_MARK):
                node[index] = {"$ref": COMPONENTS + "StorableObject"}
            else:
                _point_at_storable(value)


def _document_security(app: FastAPI, document: dict[str, Any]) -> None:
    """Declare how keys are presented (HTTP Basic with the key as username, or Bearer) and,
    on every route that checks one, the scope it needs (`x-nudge-scope`)."""
    document["components"]["securitySchemes"] = {
        "basicKey": {
            "type": "http",
            "scheme": "basic",
            "description": "The API key as the username, empty password (as Segment does).",
        },
        "bearerKey": {"type": "http", "scheme": "bearer", "description": "The API key."},
    }
    for route in app.routes:
        scope = _scope_of(route)
        if scope is None:
            continue
        path = getattr(route, "path_format", None) or getattr(route, "path", "")
        for method in getattr(route, "methods", ()):
            operation = document["paths"].get(path, {}).get(method.lower())
            if operation is not None:
                operation["security"] = [{"basicKey": []}, {"bearerKey": []}]
                operation["x-nudge-scope"] = scope


def _scope_of(route: Any) -> str | None:
    dependant = getattr(route, "dependant", None)
    stack = list(getattr(dependant, "dependencies", []))
    while stack:
        dependency = stack.pop()
        scope = getattr(dependency.call, "nudge_scope", None)
        if scope is not None:
            return str(scope)
        stack.extend(dependency.dependencies)
    return None
