"""Row chores every store module shares: insert-or-ignore, and locking a row for a
transaction. One place each, for Postgres and SQLite alike.

SQLite has no row locks; its transactions already exclude each other (every transaction
starts with `BEGIN IMMEDIATE`, see `engine.store.session`), so locking is a no-op there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy import Select, Table, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from engine.store.models import Base
from engine.store.session import dialect_name

M = TypeVar("M", bound=Base)


def insert_for(session: AsyncSession) -> Any:
    """The dialect's `insert` (Postgres or SQLite), which has `on_conflict_do_nothing`."""
    return postgresql.insert if dialect_name(session) == "postgresql" else sqlite.insert


def table_of(model: type[Base]) -> Table:
    """A model's table, for Core statements on the hot path (no ORM bookkeeping)."""
    table = model.__table__
    assert isinstance(table, Table)
    return table


async def insert_ignore(
    session: AsyncSession, model: type[Base], values: dict[str, Any], *, conflict: list[str]
) -> bool:
    """Insert a row unless one with the same `conflict` columns exists; True if inserted."""
    stmt = (
        insert_for(session)(model).values(**values).on_conflict_do_nothing(index_elements=conflict)
    )
    result = await session.execute(stmt)
    return bool(getattr(result, "rowcount", 0))


async def insert_many(
    session: AsyncSession,
    model: type[Base],
    rows: Sequence[dict[str, Any]],
    *,
    conflict: list[str],
    returning: Sequence[str] = (),
) -> list[tuple[Any, ...]]:
    """Insert `rows` (dicts keyed by column name), skipping those that conflict on
    `conflict`; the `returning` columns of the rows inserted.

    One executemany of one statement, so SQLAlchemy compiles it once (and caches it) and
    sends the rows in as few multi-row INSERTs as it can ("insertmanyvalues"); building a
    `VALUES` list of a batch's rows instead costs a fresh compilation per batch, which was
    most of an ingestion request's CPU.
    """
    if not rows:
        return []
    table = table_of(model)
    stmt = insert_for(session)(table).on_conflict_do_nothing(index_elements=conflict)
    if not returning:
        await session.execute(stmt, list(rows))
        return []
    stmt = stmt.returning(*(table.c[name] for name in returning))
    return [tuple(row) for row in await session.execute(stmt, list(rows))]


S = TypeVar("S", bound=Select[*tuple[Any, ...]])


def for_update(session: AsyncSession, query: S, *, of: Any = None, skip_locked: bool = False) -> S:
    """`query` locking the rows it reads (of `of`) until the transaction ends, on Postgres;
    `skip_locked` leaves rows another transaction holds to it (several routers)."""
    return locking(dialect_name(session), query, of=of, skip_locked=skip_locked)


def locking(dialect: str, query: S, *, of: Any = None, skip_locked: bool = False) -> S:
    """`for_update` for a dialect named up front (a statement built once, `per_dialect`)."""
    if dialect != "postgresql":
        return query
    return query.with_for_update(of=of, skip_locked=skip_locked)


T = TypeVar("T")


def per_dialect(build: Callable[[str], T]) -> Callable[[AsyncSession], T]:
    """A statement built once per dialect, its values left as `bindparam`s, for the hot path:
    building an ORM statement costs more CPU than compiling (cached) and running it, and
    was most of a send's gate. `build` gets the dialect's name; the wrapper, a session."""
    built: dict[str, T] = {}

    def statement(session: AsyncSession) -> T:
        name = dialect_name(session)
        if name not in built:
            built[name] = build(name)
        return built[name]

    return statement


async def lock(session: AsyncSession, model: type[M], key: Any) -> M | None:
    """The row of `model` with primary key `key`, locked until the transaction ends
    (Postgres `SELECT ... FOR UPDATE`); None if there is no such row."""
    query = for_update(session, select(model).where(model.id == key))  # type: ignore[attr-defined]
    return (await session.scalars(query)).first()


async def lock_keys(session: AsyncSession, keys: list[str]) -> None:
    """Serialise transactions on names that are not rows (yet): Postgres transaction-level
    advisory locks, taken in sorted order so two transactions never deadlock."""
    if dialect_name(session) != "postgresql":
        return
    for key in sorted(set(keys)):
        await session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": key})
