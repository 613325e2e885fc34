"""Shared state of the API process, reached from routes through `request.app.state`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client

from engine.context import Context
from engine.segments import Segments
from engine.store import audit as audit_log
from engine.store.models import User
from engine.store.users import find_user
from schemas.api import CheckOut
from triggers.api.problems import Problem
from triggers.router import Router


@dataclass
class ApiState:
    context: Context
    router: Router | None
    temporal: Callable[[], Awaitable[Client]]
    segments: Segments = field(default_factory=lambda: Segments([]))
    journeys: frozenset[str] = frozenset()
    """Journeys a broadcast may enter."""


def state(request: Request) -> ApiState:
    return request.app.state.nudge  # type: ignore[no-any-return]


async def session(request: Request) -> AsyncIterator[AsyncSession]:
    async with state(request).context.sessions() as db:
        yield db


async def existing_user(db: AsyncSession, external_id: str) -> User:
    user = await find_user(db, external_id=external_id)
    if user is None:
        raise Problem(404, "user-not-found", "No such user", f"no user {external_id!r}")
    return user


async def audit(
    request: Request,
    db: AsyncSession,
    *,
    action: str,
    target: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Record an admin action in the caller's transaction, naming the key that made it."""
    key = getattr(request.state, "key", None)
    actor = key.actor if key is not None else "unknown"
    await audit_log.record(db, actor=actor, action=action, target=target, detail=detail)


CHECK_TIMEOUT = 2.0
"""Seconds each readiness check may take."""


async def readiness(api: ApiState) -> dict[str, CheckOut]:
    """Whether the database and Temporal answer now (each bounded by `CHECK_TIMEOUT`)."""

    async def database() -> None:
        # Outside a transaction: on SQLite it must not wait for the writers' lock.
        async with api.context.engine.connect() as conn:
            plain = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await plain.execute(text("SELECT 1"))

    async def temporal() -> None:
        client = await api.temporal()
        await client.workflow_service.get_system_info(GetSystemInfoRequest())

    checks: dict[str, CheckOut] = {}
    for name, probe in (("database", database), ("temporal", temporal)):
        try:
            await asyncio.wait_for(probe(), CHECK_TIMEOUT)
        except TimeoutError:
            checks[name] = CheckOut(ok=False, detail=f"timed out after {CHECK_TIMEOUT:g} s")
        except Exception as exc:  # reported, not raised: readiness answers either way
            checks[name] = CheckOut(ok=False, detail=type(exc).__name__)
        else:
            checks[name] = CheckOut(ok=True)
    return checks
