"""engine.store.session on Postgres: a pooled connection whose backend the server ended (a
restart, `pg_terminate_backend`) is replaced at checkout, without a round trip per checkout."""

from __future__ import annotations

from sqlalchemy import text

from engine.store.session import make_engine
from tests.conftest import split_url
from tests.kit import eventually


async def test_a_pooled_connection_the_server_closed_is_replaced(postgres_url: str) -> None:
    url, schema = split_url(postgres_url)
    engine = make_engine(url, schema=schema, pool_size=1, max_overflow=0)
    admin = make_engine(url)
    try:
        async with engine.connect() as conn:
            pid = await conn.scalar(text("select pg_backend_pid()"))
            raw = (await conn.get_raw_connection()).driver_connection
            assert raw is not None
        async with admin.connect() as other:
            await other.execute(text("select pg_terminate_backend(:pid)"), {"pid": pid})

        async def noticed() -> bool:
            return bool(raw.is_closed())

        await eventually(noticed)
        async with engine.connect() as conn:
            assert await conn.scalar(text("select pg_backend_pid()")) != pid
    finally:
        await engine.dispose()
        await admin.dispose()
