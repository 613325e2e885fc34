"""Fixtures of the `engine.store` tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.kit.db import Sessions, sessions


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Sessions]:
    """Sessions on the migrated test database: Postgres and SQLite in turn."""
    async with sessions(database_url) as maker:
        yield maker
