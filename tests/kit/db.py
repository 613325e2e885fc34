"""Sessions on a test database URL (`database_url`, `postgres_url` fixtures), for tests of
`engine.store` that call its functions directly. The caller owns each transaction."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from engine.store.session import make_engine, make_sessionmaker
from engine.store.users import ensure_users

Sessions = async_sessionmaker[AsyncSession]


def split_url(url: str) -> tuple[str, str | None]:
    """Test database URLs carry their Postgres schema as `#schema=...`."""
    base, _, fragment = url.partition("#schema=")
    return base, fragment or None


@contextlib.asynccontextmanager
async def sessions(url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """A session factory on the test database at `url`, disposed of afterwards."""
    base, schema = split_url(url)
    engine = make_engine(base, schema=schema)
    try:
        yield make_sessionmaker(engine)
    finally:
        await engine.dispose()


async def new_user(db: Sessions, prefix: str) -> str:
    """A user of its own (external id `<prefix>-<uuid>`), committed; its internal id."""
    key = f"{prefix}-{uuid.uuid4()}"
    async with db() as session, session.begin():
        return (await ensure_users(session, [key]))[key]
