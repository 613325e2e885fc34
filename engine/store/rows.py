"""Row chores every store module shares: insert-or-ignore, and locking a row for a
transaction. One place each, for Postgres and SQLite alike.

SQLite has no row locks; its transactions already exclude each other (every transaction
starts with `BEGIN IMMEDIATE`, see `engine.store.session`), so locking is a no-op there.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic_core import to_json
from sqlalchemy import (
    JSON,
    Column,
    ColumnDefault,
    ColumnElement,
    Select,
    Table,
    TextClause,
    any_,
    bindparam,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.selectable import TextualSelect

from engine.store import driver
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
    """Insert `rows` (dicts keyed by column name, every row the same keys), skipping those
    that conflict on `conflict`; the `returning` columns of the rows inserted.

    Postgres: one `INSERT ... SELECT FROM jsonb_to_recordset(...)` of the rows as one JSON
    array (`records`), in their order, so a batch is one statement and one parameter however
    many rows it has. Bound as one array per column instead, asyncpg checked each of 100
    events' 1,200 values for nesting and every JSON value was serialised apart: a quarter
    of `accept`'s CPU. SQLite: one executemany, which SQLAlchemy compiles once and sends as
    multi-row INSERTs.
    """
    if not rows:
        return []
    table = table_of(model)
    if dialect_name(session) == "postgresql":
        return await _insert_records(session, table, rows, conflict, returning)
    stmt = insert_for(session)(table).on_conflict_do_nothing(index_elements=conflict)
    if not returning:
        await session.execute(stmt, list(rows))
        return []
    stmt = stmt.returning(*(table.c[name] for name in returning))
    return [tuple(row) for row in await session.execute(stmt, list(rows))]


def recordset(dialect: Dialect, columns: Sequence[Column[Any]]) -> str:
    """A `FROM` item (Postgres) reading the JSON array bound as `rows` (made by `records`)
    as rows `r` of `columns`, each field by its column's name and as its column's type
    (a JSON column as JSON), numbered `r.n` in the array's order."""
    quote = dialect.identifier_preparer.quote
    names = [quote(column.name) for column in columns]
    fields = ", ".join(
        f"{name} {column.type.dialect_impl(dialect).compile(dialect=dialect)}"
        for name, column in zip(names, columns, strict=True)
    )
    return (
        f"ROWS FROM (jsonb_to_recordset(CAST(:rows AS JSONB)) AS ({fields}))"
        f" WITH ORDINALITY AS r({', '.join(names)}, n)"
    )


def records(
    dialect: Dialect, columns: Sequence[Column[Any]], rows: Sequence[dict[str, Any]]
) -> str:
    """`rows` as the JSON array `recordset` reads, in one serialisation: each value of
    `columns` as its type binds it (datetimes checked and in UTC), a JSON column's value
    as itself (its None is SQL NULL, not JSON null)."""
    processors = _processors(dialect, tuple(columns))
    if processors:
        rows = [
            {**row, **{name: process(row[name]) for name, process in processors}} for row in rows
        ]
    return to_json(rows).decode()


@dataclass(frozen=True)
class _Records:
    """An `INSERT ... SELECT FROM jsonb_to_recordset` for one table, column list and
    conflict target."""

    statement: TextClause | TextualSelect
    columns: tuple[Column[Any], ...]
    defaults: tuple[tuple[str, Callable[[], Any]], ...]
    """Columns the rows leave out that have a Python-side default, and how to make it."""


_PLANS: dict[tuple[Any, ...], _Records] = {}


async def _insert_records(
    session: AsyncSession,
    table: Table,
    rows: Sequence[dict[str, Any]],
    conflict: list[str],
    returning: Sequence[str],
) -> list[tuple[Any, ...]]:
    dialect = session.get_bind().dialect
    names = tuple(rows[0])
    cache_key = (table, names, tuple(conflict), tuple(returning))
    plan = _PLANS.get(cache_key)
    if plan is None:
        plan = _PLANS[cache_key] = _plan_records(dialect, table, names, conflict, returning)
    filled = [
        {**row, **{name: make() for name, make in plan.defaults}} if plan.defaults else row
        for row in rows
    ]
    values = {"rows": records(dialect, plan.columns, filled)}
    if not returning:
        await driver.execute(session, plan.statement, values)
        return []
    return await driver.rows(session, plan.statement, values)


@functools.cache
def _processors(
    dialect: Dialect, columns: tuple[Column[Any], ...]
) -> tuple[tuple[str, Callable[[Any], Any]], ...]:
    """The columns `records` passes through their type's bind processor (once per column
    list): all but JSON, which goes into the document as it is."""
    return tuple(
        (column.name, process)
        for column in columns
        if not isinstance(column.type.dialect_impl(dialect), JSON)
        and (process := _bind_processor(dialect, column)) is not None
    )


@functools.cache
def _bind_processor(dialect: Dialect, column: Column[Any]) -> Callable[[Any], Any] | None:
    # Once per column: every ingestion request binds a dozen columns.
    return driver.bind_processor(dialect, column.type)


def _same(value: Any) -> Any:
    return value


def _plan_records(
    dialect: Dialect,
    table: Table,
    names: tuple[str, ...],
    conflict: list[str],
    returning: Sequence[str],
) -> _Records:
    defaults: list[tuple[str, Callable[[], Any]]] = []
    for column in table.c:
        default = column.default
        if column.name in names or not isinstance(default, ColumnDefault):
            continue
        if default.is_callable:
            defaults.append((column.name, functools.partial(default.arg, None)))
        elif default.is_scalar:
            defaults.append((column.name, functools.partial(_same, default.arg)))
    columns = tuple(table.c[name] for name in (*names, *(name for name, _ in defaults)))
    quote = dialect.identifier_preparer.quote
    listed = ", ".join(quote(column.name) for column in columns)
    sql = (
        f"INSERT INTO {quote(table.name)} ({listed})"
        f" SELECT {', '.join(f'r.{quote(column.name)}' for column in columns)}"
        f" FROM {recordset(dialect, columns)} ORDER BY r.n"
        f" ON CONFLICT ({', '.join(quote(name) for name in conflict)}) DO NOTHING"
    )
    statement: TextClause | TextualSelect = text(sql)
    if returning:
        statement = text(sql + " RETURNING " + ", ".join(quote(name) for name in returning))
        # Typed results: each returned column comes back through its type, as in the ORM.
        statement = statement.columns(*(table.c[name] for name in returning))
    return _Records(statement, columns, tuple(defaults))


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


def one_of(dialect: str, column: Any, name: str) -> ColumnElement[bool]:
    """`column IN (...)` of a list bound as `name`: on Postgres `= ANY(array)`, one
    parameter however long the list (an expanding `IN` renders and binds one per item,
    a tenth of an ingestion request's CPU for 100 userIds); elsewhere an expanding `IN`."""
    if dialect == "postgresql":
        return column == any_(bindparam(name, type_=postgresql.ARRAY(column.type)))  # type: ignore[no-any-return]
    return column.in_(bindparam(name, expanding=True))  # type: ignore[no-any-return]


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
