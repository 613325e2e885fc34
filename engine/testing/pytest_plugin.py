"""Pytest fixtures for the journey test kit (`engine.testing.kit`).

Enable them in a top-level `conftest.py`:

    pytest_plugins = ["engine.testing.pytest_plugin"]

then, with pytest-asyncio:

    async def test_reminder(journey_env):
        env = await journey_env(AbandonedCart, config=config, start_at=when)
        ...

`nudge_temporal_client` (session) starts one Temporal dev server with time skipping for the
whole session; override it in a conftest to reuse a server you already run.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any

import pytest_asyncio
from temporalio.client import Client

from engine.config.nudge_toml import NudgeConfig
from engine.journey import Journey
from engine.testing.kit import JourneyEnv, start_time_skipping_server

EnvFactory = Callable[..., Awaitable[JourneyEnv]]


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def nudge_temporal_client() -> AsyncIterator[Client]:
    """A Temporal dev server with time skipping and Nudge's search attributes (one per session)."""
    async with start_time_skipping_server() as client:
        yield client


@pytest_asyncio.fixture(loop_scope="session")
async def journey_env(nudge_temporal_client: Client) -> AsyncIterator[EnvFactory]:
    """A factory: `await journey_env(*journeys, config=..., start_at=...)` -> a started
    `JourneyEnv` (its own SQLite, worker and task queue), stopped after the test."""
    async with contextlib.AsyncExitStack() as stack:

        async def make(
            *journeys: type[Journey[Any]],
            config: NudgeConfig | None = None,
            start_at: datetime | None = None,
            **options: Any,
        ) -> JourneyEnv:
            return await stack.enter_async_context(
                JourneyEnv.start(
                    journeys=list(journeys) or None,
                    config=config,
                    start_at=start_at,
                    client=nudge_temporal_client,
                    **options,
                )
            )

        yield make
