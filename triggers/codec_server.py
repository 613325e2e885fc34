"""Temporal's remote codec endpoint, so the Web UI and CLI can show encrypted payloads.

The UI (browser) calls `POST {endpoint}/decode` (and `/encode`) with a JSON body
`{"payloads": [{"metadata": {...base64...}, "data": "base64"}]}`, i.e. the proto-JSON form
of `temporal.api.common.v1.Payloads`, an `X-Namespace` header and, when the UI is configured
to pass it, `Authorization`. The answer has the same shape. Because the browser calls us
cross-origin, CORS must allow the UI's origin with those headers and credentials.

Anyone who can reach this endpoint can decrypt payloads: protect it with a bearer token
(`NUDGE_CODEC_TOKEN`) and expose it only where the UI's users are.
"""

from __future__ import annotations

import hmac

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads
from temporalio.converter import PayloadCodec

from schemas.api import HealthOut, Problem

PROBLEM_UNAUTHORIZED = "urn:nudge:problem:unauthorized"
PROBLEM_BAD_PAYLOADS = "urn:nudge:problem:invalid-payloads"
PROBLEM_CODEC_FAILED = "urn:nudge:problem:codec-failed"
_PROBLEM_JSON = "application/problem+json"


def _problem(status: int, type_: str, title: str, detail: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    body = Problem(type=type_, title=title, status=status, detail=detail)
    return JSONResponse(
        body.model_dump(mode="json", exclude_none=True),
        status_code=status,
        media_type=_PROBLEM_JSON,
        headers=headers,
    )


def create_codec_app(codec: PayloadCodec, *, token: str | None, cors_origins: list[str]) -> FastAPI:
    """A small ASGI app with `POST /encode`, `POST /decode` and `GET /healthz`.

    `token`: when set, `/encode` and `/decode` require `Authorization: Bearer <token>`
    (compared in constant time) and answer 401 problem+json otherwise. `cors_origins`: the
    Temporal UI origins allowed to call from a browser (e.g. "http://localhost:8080").
    Mount it under the API, e.g. `api.mount("/codec", create_codec_app(...))`.
    """
    app = FastAPI(title="Nudge codec server", docs_url=None, redoc_url=None, openapi_url=None)
    # Preflight (OPTIONS) requests carry no Authorization header, so CORS is answered by the
    # middleware before any token check.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=cors_origins,
        allow_credentials=True,
        allow_methods=["POST", "OPTIONS"],
        allow_headers=["X-Namespace", "Authorization", "Content-Type"],
    )
    expected = f"Bearer {token}".encode() if token else None

    def authorized(request: Request) -> bool:
        if expected is None:
            return True
        given = request.headers.get("authorization", "").encode()
        return hmac.compare_digest(given, expected)

    async def transform(request: Request, *, encode: bool) -> Response:
        if not authorized(request):
            return _problem(
                401, PROBLEM_UNAUTHORIZED, "Unauthorized", "a valid bearer token is required"
            )
        body = await request.body()
        payloads = Payloads()
        try:
            json_format.Parse(body, payloads)
        except (json_format.ParseError, UnicodeDecodeError) as exc:
            return _problem(
                400,
                PROBLEM_BAD_PAYLOADS,
                "Invalid payloads",
                f"body must be {{'payloads': [...]}} in proto-JSON form: {exc}",
            )
        try:
            if encode:
                result = await codec.encode(payloads.payloads)
            else:
                result = await codec.decode(payloads.payloads)
        except Exception as exc:
            # Codec errors name key ids at most, never key material or payload content.
            return _problem(422, PROBLEM_CODEC_FAILED, "Codec failed", str(exc))
        out = json_format.MessageToJson(Payloads(payloads=result), indent=None)
        return Response(out, media_type="application/json")

    @app.post("/encode")
    async def encode(request: Request) -> Response:
        return await transform(request, encode=True)

    @app.post("/decode")
    async def decode(request: Request) -> Response:
        return await transform(request, encode=False)

    @app.get("/healthz")
    async def healthz() -> HealthOut:
        return HealthOut()

    return app
