"""API keys: shown once, stored as SHA-256, each with a scope (`KeyScope`). A revoked key
is refused by every API process at once: keys are checked against this table on each call."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from engine import ids
from engine.clock import now
from engine.store.models import WriteKey
from engine.store.rows import table_of
from schemas.common import KeyScope


@dataclass(frozen=True)
class KeyInfo:
    """A valid key, as the API sees it (never its text)."""

    id: int
    name: str
    scope: KeyScope
    environment: str

    @property
    def actor(self) -> str:
        """How the audit log names this key."""
        return f"key:{self.id}:{self.name}"[:120]


async def create_key(
    session: AsyncSession,
    *,
    name: str,
    scope: KeyScope = KeyScope.SOURCE,
    environment: str = "default",
) -> str:
    """Create a key and return its plain text (the only time it exists). The caller commits."""
    key = ids.new_write_key()
    session.add(
        WriteKey(
            name=name,
            key_hash=ids.hash_write_key(key),
            scope=scope,
            environment=environment,
            prefix=key[:10],
            created_at=now(),
        )
    )
    await session.flush()
    return key


async def lookup(session: AsyncSession, *, key: str) -> KeyInfo | None:
    """The key's scope and name, if it exists and is not revoked (every API call asks)."""
    row = (await session.execute(_BY_HASH, {"key_hash": ids.hash_write_key(key)})).first()
    return KeyInfo(row[0], row[1], KeyScope(row[2]), row[3]) if row else None


# Built once, on the table: building the statement cost more than running it, and a
# column select through the ORM costs its loading machinery.
_KEYS = table_of(WriteKey)
_BY_HASH = select(_KEYS.c.id, _KEYS.c.name, _KEYS.c.scope, _KEYS.c.environment).where(
    _KEYS.c.key_hash == bindparam("key_hash"), _KEYS.c.revoked_at.is_(None)
)


async def active_key(session: AsyncSession, *, key_id: int) -> KeyInfo | None:
    """The key with this id, if it is not revoked (a console session re-checks it on every
    page, so revoking a key ends its sessions too)."""
    row = (
        await session.execute(
            select(WriteKey.id, WriteKey.name, WriteKey.scope, WriteKey.environment).where(
                WriteKey.id == key_id, WriteKey.revoked_at.is_(None)
            )
        )
    ).first()
    return KeyInfo(row[0], row[1], KeyScope(row[2]), row[3]) if row else None


async def has_key(session: AsyncSession, *, key: str) -> bool:
    return await lookup(session, key=key) is not None


async def list_keys(session: AsyncSession) -> list[WriteKey]:
    """Every key, revoked ones too, oldest first."""
    return list(await session.scalars(select(WriteKey).order_by(WriteKey.id)))


async def revoke(
    session: AsyncSession, *, which: str, at: datetime | None = None
) -> list[WriteKey]:
    """Revoke the live keys named `which` (a key id, a name, or the key's prefix)."""
    conditions = [WriteKey.name == which, WriteKey.prefix == which]
    if which.isdigit():
        conditions.append(WriteKey.id == int(which))
    found = list(
        await session.scalars(
            select(WriteKey).where(or_(*conditions), WriteKey.revoked_at.is_(None))
        )
    )
    for key in found:
        key.revoked_at = at or now()
    return found
