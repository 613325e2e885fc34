"""Request bodies as the API reads them: size-limited on the bytes that arrive (chunked or
not) and on what they inflate to (`Content-Encoding: gzip` or `deflate`, as RudderStack's
and Segment's clients send with gzip on).

An ASGI middleware, so the limit holds before any handler parses a byte: a body over the
limit is answered 413 as it streams in, a body that does not inflate 400, both as problem
documents. A route gets the plain (inflated) body and never sees `Content-Encoding`.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from triggers.api.problems import Problem, problem_response

MAX_CALL_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
BATCH_PATHS = frozenset({"/v1/batch", "/v1/import"})
"""Segment's limits: 32 KB a call, 500 KB a batch (so every event fits in Temporal)."""


def limit_for(path: str) -> int:
    """The largest body (inflated) accepted on `path`, in bytes."""
    return MAX_BATCH_BYTES if path in BATCH_PATHS else MAX_CALL_BYTES


class _TooLarge(Exception):
    pass


class _BadEncoding(Exception):
    pass


class BodyLimits:
    """Enforce `limit(path)` on every request body and inflate gzip/deflate bodies."""

    def __init__(self, app: ASGIApp, *, limit: Callable[[str], int] = limit_for) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit(scope["path"])
        headers = dict(scope.get("headers") or [])
        encoding = headers.get(b"content-encoding", b"").decode("latin-1").strip().lower()
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit and encoding in ("", "identity"):
            await _problem(send, 413, "too-large", "The request body is too large", limit)
            return
        if encoding not in ("", "identity", "gzip", "x-gzip", "deflate"):
            await _problem(
                send, 415, "unsupported-encoding", f"Content-Encoding {encoding!r} is not supported"
            )
            return
        try:
            body = await _read(receive, limit, encoding)
        except _TooLarge:
            await _problem(send, 413, "too-large", "The request body is too large", limit)
            return
        except _BadEncoding:
            await _problem(send, 400, "bad-encoding", f"The body is not valid {encoding}")
            return
        scope = dict(scope)
        scope["headers"] = [
            (k, v)
            for k, v in scope.get("headers") or []
            if k not in (b"content-encoding", b"content-length", b"transfer-encoding")
        ] + [(b"content-length", str(len(body)).encode())]
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()  # e.g. http.disconnect, once the body is consumed
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


async def _read(receive: Receive, limit: int, encoding: str) -> bytes:
    """The whole body, inflated, failing as soon as it passes `limit` (raw or inflated)."""
    inflater = None
    if encoding in ("gzip", "x-gzip"):
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    elif encoding == "deflate":
        inflater = zlib.decompressobj()
    chunks: list[bytes] = []
    size = raw = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        data = message.get("body", b"")
        more = message.get("more_body", False)
        raw += len(data)
        if raw > limit * 20:  # no real body compresses better than 20:1 under our limits
            raise _TooLarge
        if inflater is not None:
            try:
                # Never inflate more than one byte past the limit, whatever the ratio.
                data = inflater.decompress(data, limit + 1 - size)
            except zlib.error:
                raise _BadEncoding from None
            if inflater.unconsumed_tail:
                raise _TooLarge
        size += len(data)
        if size > limit:
            raise _TooLarge
        chunks.append(data)
    if inflater is not None and not inflater.eof and raw:
        raise _BadEncoding
    return b"".join(chunks)


async def _problem(
    send: Send, status: int, slug: str, title: str, limit: int | None = None
) -> None:
    detail = f"at most {limit} bytes here (after decompression)" if limit else None
    response = problem_response(Problem(status, slug, title, detail))
    await send(
        {
            "type": "http.response.start",
            "status": response.status_code,
            "headers": response.raw_headers,
        }
    )
    await send({"type": "http.response.body", "body": response.body})
