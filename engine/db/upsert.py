"""INSERT ... ON CONFLICT DO NOTHING for both backends."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from engine.db.models import Base
from engine.db.session import dialect_name


async def insert_ignore(
    session: AsyncSession, model: type[Base], values: dict[str, Any], *, conflict: list[str]
) -> bool:
    """Insert a row unless one with the same `conflict` columns exists; True if inserted."""
    dialect = dialect_name(session)
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(model).values(**values).on_conflict_do_nothing(index_elements=conflict)
    result = await session.execute(stmt)
    return bool(getattr(result, "rowcount", 0))
