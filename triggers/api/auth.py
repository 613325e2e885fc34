"""API keys and rate limits: every route states the scope it needs (`require(Scope.X)`).

A key is presented as HTTP Basic with the key as username (as Segment does), as
`Authorization: Bearer <key>`, or, on the tracking routes, as `writeKey` in the JSON body
(Segment's clients send it there too). It is checked against the hashed `write_keys` table on
every call, so a revoked key is refused by every API process at once.

Rate limits (`[api.rate_limits]` in nudge.toml, moving windows with the `limits` library,
per process): per key, per client address, and failed authentications per address (so
guessing keys is slow). Over a limit: 429 with `Retry-After`.
"""

from __future__ import annotations

import base64
import json
import math
import time
from collections.abc import Awaitable, Callable

from fastapi import Depends, Request
from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from sqlalchemy.ext.asyncio import AsyncSession

from engine.config.nudge_toml import ApiConfig
from engine.store import keys
from engine.store.keys import KeyInfo
from engine.store.session import dialect_name
from schemas.common import KeyScope
from triggers.api.deps import session
from triggers.api.problems import Problem

BODY_KEY_PATHS = frozenset(
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


def presented_key(authorization: str | None) -> str | None:
    """The key in an Authorization header, or None."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        return decoded.partition(":")[0] or None
    return None


async def _body_key(request: Request) -> str | None:
    """`writeKey` in a tracking call's JSON body (the body stays readable for the route)."""
    if request.url.path not in BODY_KEY_PATHS:
        return None
    try:
        body = json.loads(await request.body() or b"null")
    except (ValueError, UnicodeDecodeError):
        return None
    value = body.get("writeKey") if isinstance(body, dict) else None
    return value if isinstance(value, str) and value else None


def require(scope: KeyScope) -> Callable[[Request], Awaitable[KeyInfo]]:
    """The dependency of a route that needs `scope` (an admin key may call anything):
    `dependencies=[Depends(require(KeyScope.READ))]`."""

    async def check(request: Request, db: AsyncSession = Depends(session)) -> KeyInfo:
        access: Access = request.app.state.access
        return await access.check(request, scope, db)

    check.nudge_scope = scope.value  # type: ignore[attr-defined]  # read by the OpenAPI document
    return check


class Access:
    """Checks the key and the rate limits of each call (`require(scope)` calls it). The
    key found is left in `request.state.key`, for the audit log."""

    def __init__(self, config: ApiConfig) -> None:
        self._config = config
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        limits = config.rate_limits
        self._per_key = parse(limits.per_key)
        self._per_address = parse(limits.per_address)
        self._failed = parse(limits.failed_auth)

    async def check(self, request: Request, scope: KeyScope, db: AsyncSession) -> KeyInfo:
        """The caller's key if it may call this route; raises a 401/403/429 problem. The
        key is read in the request's own transaction (`db`, the session its route gets
        too): one transaction a call, not one for the key and one for the work."""
        address = self._address(request)
        self._take(self._per_address, "address", address)
        if self._limiter.test(self._failed, "failed", address) is False:
            raise self._too_many(self._failed, "failed", address)
        key = presented_key(request.headers.get("authorization")) or await _body_key(request)
        if key is None:
            self._limiter.hit(self._failed, "failed", address)
            raise _unauthorized("send an API key: HTTP Basic (key as username) or Bearer")
        found = await keys.lookup(db, key=key)
        if dialect_name(db) == "sqlite":
            # A SQLite transaction holds the database's write lock (`BEGIN IMMEDIATE`):
            # end the read, so a route that writes nothing does not hold it.
            await db.commit()
        if found is None:
            self._limiter.hit(self._failed, "failed", address)
            raise _unauthorized("unknown or revoked API key")
        self._take(self._per_key, "key", str(found.id))
        if not found.scope.allows(scope):
            raise Problem(
                403,
                "forbidden",
                "This key may not do that",
                f"this route needs a {scope.value} key; this one is a {found.scope.value} key",
            )
        request.state.key = found
        return found

    def failed_sign_in(self, request: Request) -> bool:
        """Count a failed console sign-in against the caller's address (as a failed API
        authentication); True when the address is now over its limit."""
        address = self._address(request)
        self._limiter.hit(self._failed, "failed", address)
        return self._limiter.test(self._failed, "failed", address) is False

    def may_sign_in(self, request: Request) -> bool:
        """Whether the caller's address is under its limit of failed authentications."""
        return self._limiter.test(self._failed, "failed", self._address(request)) is not False

    def _address(self, request: Request) -> str:
        if self._config.trust_forwarded_for:
            forwarded = request.headers.get("x-forwarded-for", "").split(",")[0].strip()
            if forwarded:
                return forwarded
        return request.client.host if request.client else "unknown"

    def _take(self, limit: object, *names: str) -> None:
        if not self._limiter.hit(limit, *names):  # type: ignore[arg-type]
            raise self._too_many(limit, *names)

    def _too_many(self, limit: object, *names: str) -> Problem:
        reset = self._limiter.get_window_stats(limit, *names).reset_time  # type: ignore[arg-type]
        wait = max(1, math.ceil(reset - time.time()))
        return Problem(
            429,
            "rate-limited",
            "Too many requests",
            f"slow down: try again in {wait} s",
            headers={"Retry-After": str(wait)},
        )


def _unauthorized(detail: str) -> Problem:
    return Problem(
        401,
        "unauthorized",
        "Authentication required",
        detail,
        headers={"WWW-Authenticate": 'Basic realm="nudge", Bearer'},
    )
