"""Write-key authentication: HTTP Basic with the key as username (as Segment does), or Bearer."""

from __future__ import annotations

import base64
import time

from fastapi import Request
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from engine import ids
from engine.store.models import WriteKey
from triggers.api.problems import Problem

CACHE_SECONDS = 10.0


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


class KeyChecker:
    """Checks keys against the hashed `write_keys` table, with a short positive cache."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._cache: dict[str, float] = {}

    async def __call__(self, request: Request) -> None:
        key = presented_key(request.headers.get("authorization"))
        if key is None:
            raise _unauthorized("send a write key: HTTP Basic (key as username) or Bearer")
        digest = ids.hash_write_key(key)
        if self._cache.get(digest, 0.0) > time.monotonic():
            return
        async with self._sessions() as session:
            found = await session.scalar(
                select(WriteKey.id).where(
                    WriteKey.key_hash == digest, WriteKey.revoked_at.is_(None)
                )
            )
        if found is None:
            raise _unauthorized("unknown or revoked write key")
        self._cache[digest] = time.monotonic() + CACHE_SECONDS


def _unauthorized(detail: str) -> Problem:
    return Problem(
        401,
        "unauthorized",
        "Authentication required",
        detail,
        headers={"WWW-Authenticate": 'Basic realm="nudge", Bearer'},
    )
