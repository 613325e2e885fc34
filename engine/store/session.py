"""Database engines and sessions. Services never commit; the caller owns the transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, exc
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from engine.geo import distance_m

SQLITE_DISTANCE_M = "nudge_distance_m"
"""The SQL function `nudge_distance_m(lat1, lon1, lat2, lon2)` every SQLite connection has:
`engine.geo.distance_m`, for segments' `near(...)` (SQLite may be built without `sin`)."""


def make_engine(url: str, *, schema: str | None = None, **kwargs: Any) -> AsyncEngine:
    """Create an async engine for `postgresql+asyncpg://` or `sqlite+aiosqlite://` URLs.

    `schema` (Postgres only) puts Nudge's tables in that schema via the search path.

    On SQLite every transaction starts with `BEGIN IMMEDIATE`, so read-then-write sequences
    (cap reservations) are serialised by the database lock, as row locks do on Postgres.
    """
    if url.startswith("sqlite"):
        # hide_parameters: a database error must not carry phone numbers or traits into logs.
        engine = create_async_engine(
            url, connect_args={"timeout": 30}, hide_parameters=True, **kwargs
        )

        @event.listens_for(engine.sync_engine, "connect")
        def _connect(dbapi_connection: Any, _record: Any) -> None:
            # Let SQLAlchemy, not the driver, decide when transactions begin.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()
            dbapi_connection.create_function(SQLITE_DISTANCE_M, 4, distance_m, deterministic=True)

        @event.listens_for(engine.sync_engine, "begin")
        def _begin(conn: Any) -> None:
            if conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
                return  # a read outside any transaction (health checks): no write lock
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    if schema:
        kwargs["connect_args"] = {"server_settings": {"search_path": schema}}
    # 30 at most, all kept once opened: a worker's activities (and the API's requests) run
    # about that many transactions at once. An overflow (20 kept + 10) closed and reopened
    # connections whenever the load swung, each a new backend whose statements were all
    # prepared again; the peak is the same 30.
    kwargs = {"pool_size": 30, "max_overflow": 0, **kwargs}
    engine = create_async_engine(url, hide_parameters=True, **kwargs)

    @event.listens_for(engine.sync_engine.pool, "checkout")
    def _alive(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        # A pooled connection the server closed (a restart, a terminated backend) is
        # swapped for a new one: asyncpg saw the close, so this costs no round trip, where
        # `pool_pre_ping` spends a ping on every checkout (15 % of a send's gate).
        if dbapi_connection.driver_connection.is_closed():
            raise exc.DisconnectionError("the server closed this pooled connection")

    return engine


def make_sessionmaker(
    engine: AsyncEngine, *, info: dict[str, Any] | None = None
) -> async_sessionmaker[AsyncSession]:
    """Sessions on `engine`; `info` is copied into every session's `info` (e.g. the webhook
    kinds an endpoint subscribes to, read by `engine.store.webhooks.enqueue`)."""
    return async_sessionmaker(engine, expire_on_commit=False, info=dict(info or {}))


def dialect_name(session: AsyncSession) -> str:
    """ "postgresql" or "sqlite": the backend a session talks to."""
    return session.get_bind().dialect.name
