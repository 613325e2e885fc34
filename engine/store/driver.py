"""A send's hot statements on the database driver (asyncpg), past SQLAlchemy's execution.

Through the session, each Core statement of a send's gate cost about 0.22 ms of CPU; the
same statement on asyncpg's connection, 0.065 ms (a gate transaction runs three, and the
send's outcome one more). `transaction(session)` opens the transaction on the session's
own asyncpg connection, with SQLAlchemy's side of it in AUTOCOMMIT so that it starts no
transaction of its own: whatever the session still runs itself (ORM flushes, the rare
paths) runs inside this one too. `rows` and `execute` run a Core statement on that
connection: compiled once, its parameters through their types' bind processors and its
columns through their result processors, as SQLAlchemy would. `autocommit(session)` does
the same for a session whose statements each commit as they run.

On SQLite, and in a session with neither, `rows` and `execute` are `session.execute`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg
from sqlalchemy import ClauseElement, Executable, inspect
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import IntegrityError, InvalidRequestError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.selectable import ReturnsRows
from sqlalchemy.types import TypeEngine

from engine.store.models import Base
from engine.store.session import dialect_name

M = TypeVar("M", bound=Base)

DRIVER = "nudge.driver"
"""`session.info` key of the asyncpg connection `rows` and `execute` run on."""


@contextlib.asynccontextmanager
async def transaction(session: AsyncSession) -> AsyncIterator[None]:
    """`session.begin()`, on Postgres held by the driver: the session is flushed before the
    commit and ends its own (empty) transaction after it, as `begin()` leaves a session; a
    connection the transaction could not close cleanly (cancelled mid-rollback) is dropped
    from the pool, never reused."""
    if dialect_name(session) != "postgresql":
        async with session.begin():
            yield
        return
    if session.in_transaction():
        # As `begin()` refuses: the driver's transaction would nest in the session's.
        raise InvalidRequestError("A transaction is already begun on this Session.")
    connection = await _driver(session)
    try:
        async with connection.transaction():
            yield
            if session.new or session.dirty or session.deleted:
                await session.flush()
    except BaseException:
        await _release(session, connection, commit=False)
        raise
    await _release(session, connection, commit=True)


async def _release(session: AsyncSession, connection: asyncpg.Connection, *, commit: bool) -> None:
    del session.info[DRIVER]
    if connection.is_in_transaction():
        await (await session.connection()).invalidate()
    await (session.commit() if commit else session.rollback())


async def autocommit(session: AsyncSession) -> None:
    """On Postgres, each statement of this session commits as it runs, `rows` and `execute`
    on the driver: for work that is one statement, or statements each complete on its own.
    Call it before the first. A SQLite session keeps its transaction."""
    if dialect_name(session) == "postgresql":
        await _driver(session)


async def _driver(session: AsyncSession) -> asyncpg.Connection:
    connection = await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    driver: asyncpg.Connection = (await connection.get_raw_connection()).driver_connection
    session.info[DRIVER] = driver
    return driver


async def rows(
    session: AsyncSession, statement: Executable, values: Mapping[str, Any]
) -> list[tuple[Any, ...]]:
    """The rows of a Core select (or a statement's RETURNING), as tuples of its columns'
    Python values."""
    driver: asyncpg.Connection | None = session.info.get(DRIVER)
    if driver is None:
        return [tuple(row) for row in await session.execute(statement, values)]
    plan = _plan_for(session.get_bind().dialect, statement)
    with _integrity(plan):
        records = await driver.fetch(plan.sql, *plan.arguments(values))
    return [plan.row(record) for record in records]


async def execute(session: AsyncSession, statement: Executable, values: Mapping[str, Any]) -> None:
    """Run a Core insert, update or delete that returns nothing."""
    driver: asyncpg.Connection | None = session.info.get(DRIVER)
    if driver is None:
        await session.execute(statement, values)
        return
    plan = _plan_for(session.get_bind().dialect, statement)
    with _integrity(plan):
        await driver.execute(plan.sql, *plan.arguments(values))


@contextlib.contextmanager
def _integrity(plan: _Plan) -> Iterator[None]:
    """A constraint the statement broke, as SQLAlchemy reports it (callers catch that)."""
    try:
        yield
    except asyncpg.IntegrityConstraintViolationError as error:
        raise IntegrityError(plan.sql, None, error) from error


def columns(model: type[Base]) -> tuple[InstrumentedAttribute[Any], ...]:
    """Every column attribute of `model`, in mapping order (what `detached` rebuilds)."""
    return tuple(getattr(model, prop.key) for prop in inspect(model).column_attrs)


def detached(
    model: type[M], read: Sequence[InstrumentedAttribute[Any]], values: Sequence[Any]
) -> M:
    """A `model` object of the columns `read` and their `values` (a row of `rows`): never
    in a session, so reading it costs no ORM loading, and it is not saved back."""
    return model(**{column.key: value for column, value in zip(read, values, strict=True)})


async def objects(
    session: AsyncSession,
    model: type[M],
    read: Sequence[InstrumentedAttribute[Any]],
    statement: Executable,
    values: Mapping[str, Any],
) -> list[M]:
    """The rows of a select of the columns `read`, each as a `detached` `model` object."""
    return [detached(model, read, row) for row in await rows(session, statement, values)]


Processor = Callable[[Any], Any] | None


@dataclass(frozen=True)
class _Plan:
    """A statement compiled for the driver: its SQL, and per positional parameter its name,
    default and bind processor; per column its result processor."""

    sql: str
    names: tuple[str, ...]
    defaults: Mapping[str, Any]
    binds: tuple[Processor, ...]
    results: tuple[Processor, ...]

    def arguments(self, values: Mapping[str, Any]) -> list[Any]:
        found = [values[n] if n in values else self.defaults[n] for n in self.names]
        return [v if p is None else p(v) for v, p in zip(found, self.binds, strict=True)]

    def row(self, record: asyncpg.Record) -> tuple[Any, ...]:
        return tuple(v if p is None else p(v) for v, p in zip(record, self.results, strict=True))


_PLANS: dict[tuple[Dialect, Executable], _Plan] = {}
_MAX_PLANS = 1_000


def _plan_for(dialect: Dialect, statement: Executable) -> _Plan:
    """Compiled once per statement object: statements for the driver are built once (see
    `engine.store.rows.per_dialect`); one built per call would be compiled every time."""
    plan = _PLANS.get((dialect, statement))
    if plan is None:
        if len(_PLANS) >= _MAX_PLANS:
            _PLANS.clear()
        plan = _PLANS[(dialect, statement)] = _compile(dialect, statement)
    return plan


def _compile(dialect: Dialect, statement: Executable) -> _Plan:
    assert isinstance(statement, ClauseElement)
    compiled = statement.compile(dialect=dialect)
    assert isinstance(compiled, SQLCompiler)
    if "POSTCOMPILE" in compiled.string:
        # An expanding IN renders one parameter per item at execution time.
        raise ValueError("a statement for the driver cannot expand IN: use rows.one_of")
    names = tuple(compiled.positiontup or ())
    binds = compiled.binds
    columns: Sequence[Any] = (
        list(statement.exported_columns) if isinstance(statement, ReturnsRows) else []
    )
    return _Plan(
        sql=compiled.string,
        names=names,
        defaults={n: binds[n].effective_value for n in names if not binds[n].required},
        binds=tuple(bind_processor(dialect, binds[n].type) for n in names),
        results=tuple(result_processor(dialect, c.type) for c in columns),
    )


def bind_processor(dialect: Dialect, kind: TypeEngine[Any]) -> Processor:
    """How SQLAlchemy turns a value of `kind` into what the driver binds (None: as it is)."""
    return kind.dialect_impl(dialect).bind_processor(dialect)


def result_processor(dialect: Dialect, kind: TypeEngine[Any]) -> Processor:
    """How SQLAlchemy turns what the driver returns for `kind` into its value."""
    return kind.dialect_impl(dialect).result_processor(dialect, None)
