"""Per-user data keys for Temporal payloads: a random salt per user, from which the payload
codec derives that user's key (HKDF over the configured master key). Erasing a user deletes
the salt, so every payload Temporal holds about them becomes unreadable (crypto-shredding),
in every history, without touching the histories."""

from __future__ import annotations

import base64
import os
import time

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from engine.clock import now
from engine.store.models import UserKey
from engine.store.rows import insert_ignore, insert_many

SALT_BYTES = 32
CACHE_SECONDS = 30.0
"""How long a process trusts a salt it read: an erasure reaches every process within this."""


async def salt_of(session: AsyncSession, *, user_id: str, create: bool) -> bytes | None:
    """The user's salt; with `create`, made on first use (race-safe). None when erased."""
    found = await session.scalar(select(UserKey.salt).where(UserKey.user_id == user_id))
    if found is None and create:
        await insert_ignore(
            session,
            UserKey,
            {
                "user_id": user_id,
                "salt": base64.b64encode(os.urandom(SALT_BYTES)).decode(),
                "created_at": now(),
            },
            conflict=["user_id"],
        )
        found = await session.scalar(select(UserKey.salt).where(UserKey.user_id == user_id))
    return base64.b64decode(found) if found else None


async def add_salts(session: AsyncSession, *, user_ids: list[str]) -> None:
    """Give new users their salt in the transaction that creates them, so the codec only
    ever reads salts (never writes one while another transaction holds SQLite's lock)."""
    if not user_ids:
        return
    stamp = now()
    rows = [
        {
            "user_id": uid,
            "salt": base64.b64encode(os.urandom(SALT_BYTES)).decode(),
            "created_at": stamp,
        }
        for uid in user_ids
    ]
    await insert_many(session, UserKey, rows, conflict=["user_id"])


async def shred(session: AsyncSession, *, user_id: str) -> bool:
    """Delete the user's salt: their Temporal payloads can never be decrypted again."""
    result = await session.execute(delete(UserKey).where(UserKey.user_id == user_id))
    return bool(getattr(result, "rowcount", 0))


class StoreUserKeys:
    """The codec's source of per-user salts, backed by the `user_keys` table, with a short
    cache so a busy worker reads each user's salt about once per `CACHE_SECONDS`."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._cache: dict[str, tuple[float, bytes | None]] = {}

    async def salt(self, user_id: str, *, create: bool) -> bytes | None:
        hit = self._cache.get(user_id)
        if hit is not None and hit[0] > time.monotonic() and (hit[1] is not None or not create):
            return hit[1]
        found = await self._read(user_id)
        if found is None and create:
            async with self._sessions() as session, session.begin():
                found = await salt_of(session, user_id=user_id, create=True)
        if len(self._cache) > 50_000:
            self._cache.clear()
        self._cache[user_id] = (time.monotonic() + CACHE_SECONDS, found)
        return found

    async def _read(self, user_id: str) -> bytes | None:
        # Outside a transaction: on SQLite a read must not wait for the writers' lock.
        session = self._sessions()
        async with session.bind.connect() as conn:  # type: ignore[union-attr]
            plain = await conn.execution_options(isolation_level="AUTOCOMMIT")
            found = await plain.scalar(select(UserKey.salt).where(UserKey.user_id == user_id))
        await session.close()
        return base64.b64decode(found) if found else None

    def forget(self, user_id: str) -> None:
        """Drop a cached salt (this process erased the user)."""
        self._cache.pop(user_id, None)
