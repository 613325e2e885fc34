"""engine.store.driver: Core statements run on asyncpg give what the session gives (types
in both directions), its transaction commits, rolls back and holds the session's own
flushes, a broken constraint is SQLAlchemy's `IntegrityError`, and an expanding IN is
refused; on SQLite everything is the session's."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import bindparam, insert, literal, select
from sqlalchemy.exc import IntegrityError, InvalidRequestError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from engine.store import driver
from engine.store.models import Device, User
from engine.store.rows import one_of, table_of
from engine.store.session import dialect_name
from schemas.common import Platform
from tests.kit.db import new_user, sessions

AT = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
SUBSCRIPTION = {"endpoint": "https://push.example/é", "keys": {"n": [1, None, 2**40]}}


def _device(user_id: str, **values: Any) -> dict[str, Any]:
    return {
        "id": f"dev_{uuid.uuid4().hex[:20]}",
        "user_id": user_id,
        "platform": Platform.WEB,
        "token": uuid.uuid4().hex,
        "subscription": SUBSCRIPTION,
        "active": True,
        "created_at": AT,
        "updated_at": AT,
        **values,
    }


def _insert_device() -> Any:
    devices = table_of(Device)
    return insert(devices).values({c.name: bindparam(c.name, type_=c.type) for c in devices.c})


def _devices_of(dialect: str) -> Any:
    return (
        select(
            Device.id,
            Device.platform,
            Device.subscription,
            Device.created_at,
            literal("fixed"),
        )
        .where(Device.user_id == bindparam("user_id"))
        .where(one_of(dialect, Device.platform, "platforms"))
        .order_by(Device.id)
    )


def _insert_values(row: dict[str, Any]) -> dict[str, Any]:
    return {c.name: row.get(c.name) for c in table_of(Device).c}


async def test_rows_and_execute_give_what_the_session_gives(
    db: async_sessionmaker[AsyncSession],
) -> None:
    user_id = await new_user(db, "driver")
    made = [_device(user_id), _device(user_id, platform=Platform.IOS, subscription=None)]
    async with db() as session, driver.transaction(session):
        for row in made:
            await driver.execute(session, _insert_device(), _insert_values(row))
        query = _devices_of(dialect_name(session))
        values = {"user_id": user_id, "platforms": [Platform.WEB, Platform.IOS]}
        found = await driver.rows(session, query, values)
        through_session = [tuple(r) for r in await session.execute(query, values)]
    assert found == through_session
    assert sorted(found) == sorted(
        (row["id"], row["platform"], row["subscription"], AT, "fixed") for row in made
    )
    assert all(isinstance(platform, Platform) for _, platform, *_ in found)
    assert all(at.tzinfo is not None for *_, at, _ in found)


async def test_a_naive_datetime_is_refused(db: async_sessionmaker[AsyncSession]) -> None:
    user_id = await new_user(db, "driver")
    naive = _device(user_id, created_at=datetime(2026, 5, 1, 12, 0))
    async with db() as session, driver.transaction(session):
        with pytest.raises(Exception, match="naive datetime"):
            await driver.execute(session, _insert_device(), _insert_values(naive))


async def test_the_transaction_commits_what_ran_inside_it(
    db: async_sessionmaker[AsyncSession],
) -> None:
    user_id = await new_user(db, "driver")
    by_driver, by_session = _device(user_id), _device(user_id)
    async with db() as session, driver.transaction(session):
        await driver.execute(session, _insert_device(), _insert_values(by_driver))
        session.add(Device(**by_session))  # flushed by the transaction, before its commit
    async with db() as session:
        stored = set(await session.scalars(select(Device.id).where(Device.user_id == user_id)))
    assert stored == {by_driver["id"], by_session["id"]}


async def test_the_transaction_rolls_back_on_an_error(
    db: async_sessionmaker[AsyncSession],
) -> None:
    user_id = await new_user(db, "driver")
    with pytest.raises(RuntimeError):
        async with db() as session, driver.transaction(session):
            await driver.execute(session, _insert_device(), _insert_values(_device(user_id)))
            session.add(Device(**_device(user_id)))
            await session.flush()
            raise RuntimeError("boom")
    async with db() as session:
        assert not list(await session.scalars(select(Device).where(Device.user_id == user_id)))
    # The connection went back to the pool out of any transaction, and so did the session.
    async with db() as session:
        for _ in range(2):
            async with driver.transaction(session):
                assert await driver.rows(session, select(User.id).where(User.id == user_id), {})


async def test_a_session_already_in_a_transaction_is_refused(
    db: async_sessionmaker[AsyncSession],
) -> None:
    async with db() as session:
        await session.execute(select(User.id).limit(1))  # begins the session's own
        with pytest.raises(InvalidRequestError, match="already begun"):
            async with driver.transaction(session):
                pass


async def test_a_broken_constraint_is_sqlalchemys_integrity_error(
    db: async_sessionmaker[AsyncSession],
) -> None:
    row = _device(await new_user(db, "driver"))
    async with db() as session, driver.transaction(session):
        await driver.execute(session, _insert_device(), _insert_values(row))
    with pytest.raises(IntegrityError):
        async with db() as session, driver.transaction(session):
            await driver.execute(session, _insert_device(), _insert_values(row))


async def test_autocommit_statements_commit_as_they_run(
    db: async_sessionmaker[AsyncSession],
) -> None:
    row = _device(await new_user(db, "driver"))
    async with db() as session:
        await driver.autocommit(session)
        await driver.execute(session, _insert_device(), _insert_values(row))
        if dialect_name(session) == "sqlite":
            await session.commit()  # SQLite keeps its transaction
    async with db() as session:
        assert await session.get(Device, row["id"]) is not None


async def test_an_expanding_in_is_refused_on_postgres(postgres_url: str) -> None:
    query = select(User.id).where(User.id.in_(bindparam("ids", expanding=True)))
    async with sessions(postgres_url) as db, db() as session, driver.transaction(session):
        with pytest.raises(ValueError, match="expand"):
            await driver.rows(session, query, {"ids": ["a"]})
