"""engine.store.session on Postgres: a pooled connection whose backend the server ended (a
restart, `pg_terminate_backend`) is replaced at checkout, without a round trip per checkout;
and the connections a burst opened are kept for the next one, not closed and reopened."""

from __future__ import annotations

import asyncio

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


async def test_the_connections_of_a_burst_are_kept_for_the_next(postgres_url: str) -> None:
    url, schema = split_url(postgres_url)
    engine = make_engine(url, schema=schema)
    busy = 30  # what a worker's activities or the API's requests run at once

    async def burst() -> set[int]:
        everyone_in = asyncio.Barrier(busy)

        async def one() -> int:
            async with engine.connect() as conn:
                pid = int(await conn.scalar(text("select pg_backend_pid()")))
                await everyone_in.wait()  # all `busy` connections checked out at once
                return pid

        return set(await asyncio.wait_for(asyncio.gather(*(one() for _ in range(busy))), 120))

    try:
        first = await burst()
        second = await burst()
    finally:
        await engine.dispose()
    assert len(first) == busy
    assert second == first  # the same backends: none was closed and reopened in between
