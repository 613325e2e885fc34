"""What every Nudge process opens at start: settings, `nudge.toml`, the database."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from engine.config.nudge_toml import NudgeConfig, load_config
from engine.config.settings import Settings
from engine.store.migrate import check_schema
from engine.store.session import make_engine, make_sessionmaker
from engine.store.webhooks import KINDS_KEY


@dataclass
class Context:
    settings: Settings
    config: NudgeConfig
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]

    @classmethod
    async def open(
        cls, settings: Settings, *, config: NudgeConfig | None = None, check: bool = True
    ) -> Context:
        """Load the config (raises `ConfigError`) and connect; with `check`, refuse a
        database whose schema is not at the code's revision (raises `SchemaOutOfDate`)."""
        config = config if config is not None else load_config(settings.config)
        engine = make_engine(settings.database_url, schema=settings.database_schema)
        try:
            if check:
                await check_schema(engine)
        except BaseException:
            await engine.dispose()
            raise
        kinds = frozenset(kind for hook in config.webhooks for kind in hook.events)
        sessions = make_sessionmaker(engine, info={KINDS_KEY: kinds})
        return cls(settings, config, engine, sessions)

    async def close(self) -> None:
        await self.engine.dispose()

    @classmethod
    @contextlib.asynccontextmanager
    async def opened(cls, settings: Settings, **options: Any) -> AsyncIterator[Context]:
        """`async with Context.opened(settings) as context:` — open, then always close."""
        context = await cls.open(settings, **options)
        try:
            yield context
        finally:
            await context.close()
