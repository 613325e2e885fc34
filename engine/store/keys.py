"""API write keys: shown once, stored as SHA-256."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from engine import ids
from engine.clock import now
from engine.store.models import WriteKey


async def create_key(session: AsyncSession, *, name: str) -> str:
    """Create a key and return its plain text (the only time it exists). The caller commits."""
    key = ids.new_write_key()
    session.add(WriteKey(name=name, key_hash=ids.hash_write_key(key), created_at=now()))
    await session.flush()
    return key


async def has_key(session: AsyncSession, *, key: str) -> bool:
    found = await session.scalar(
        select(WriteKey.id).where(
            WriteKey.key_hash == ids.hash_write_key(key), WriteKey.revoked_at.is_(None)
        )
    )
    return found is not None
