"""Journey runs: the router's routing state, kept in `journey_runs` (not in visibility)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from engine.db.models import JourneyRun, Message
from engine.users import now
from schemas.common import MessageStatus, RunStatus


async def open_runs(session: AsyncSession, *, user_id: str) -> list[JourneyRun]:
    """The user's runs that have not ended, oldest first."""
    rows = await session.scalars(
        select(JourneyRun)
        .where(JourneyRun.user_id == user_id, JourneyRun.status == RunStatus.OPEN)
        .order_by(JourneyRun.id)
    )
    return list(rows)


async def last_entry(
    session: AsyncSession, *, journey: str, user_id: str, key: str | None
) -> JourneyRun | None:
    """The user's most recent run of `journey` (for `key`), open or ended."""
    query = select(JourneyRun).where(JourneyRun.journey == journey, JourneyRun.user_id == user_id)
    query = query.where(JourneyRun.key.is_(None) if key is None else JourneyRun.key == key)
    return (await session.scalars(query.order_by(JourneyRun.id.desc()).limit(1))).first()


async def mark_started(
    session: AsyncSession, *, workflow_id: str, run_id: str, version: str | None
) -> None:
    """Record the Temporal run id and the code version on the open row of `workflow_id`."""
    await session.execute(
        update(JourneyRun)
        .where(JourneyRun.workflow_id == workflow_id, JourneyRun.status == RunStatus.OPEN)
        .values(run_id=run_id, version=version)
    )


async def mark_finished(
    session: AsyncSession,
    *,
    workflow_id: str,
    run_id: str | None,
    status: RunStatus,
    outcome: str,
    step: str | None = None,
    variant: str | None = None,
    at: datetime | None = None,
) -> None:
    """Close the open row(s) of `workflow_id` (idempotent)."""
    query = update(JourneyRun).where(
        JourneyRun.workflow_id == workflow_id, JourneyRun.status == RunStatus.OPEN
    )
    if run_id is not None:
        query = query.where((JourneyRun.run_id == run_id) | JourneyRun.run_id.is_(None))
    values: dict[str, object] = {
        "status": status.value,
        "outcome": outcome,
        "ended_at": at or now(),
    }
    if step is not None:
        values["step"] = step
    if variant is not None:
        values["variant"] = variant
    await session.execute(query.values(**values))


async def mark_converted(
    session: AsyncSession,
    *,
    workflow_id: str,
    run_id: str,
    message_id: str | None,
    at: datetime | None = None,
) -> None:
    await session.execute(
        update(JourneyRun)
        .where(
            JourneyRun.workflow_id == workflow_id,
            (JourneyRun.run_id == run_id) | JourneyRun.run_id.is_(None),
            JourneyRun.converted_at.is_(None),
        )
        .values(converted_at=at or now(), conversion_message_id=message_id)
    )


async def convert_closed(
    session: AsyncSession,
    *,
    journey: str,
    user_id: str,
    key: str | None,
    within: timedelta,
    at: datetime,
) -> int:
    """Record a goal reached after its run ended (but within `within` of entry), attributed
    to the last message the run delivered. Open runs record their own goals."""
    query = select(JourneyRun).where(
        JourneyRun.journey == journey,
        JourneyRun.user_id == user_id,
        JourneyRun.status != RunStatus.OPEN,
        JourneyRun.converted_at.is_(None),
        JourneyRun.started_at >= at - within,
        JourneyRun.started_at <= at,
    )
    if key is not None:
        query = query.where(JourneyRun.key == key)
    converted = 0
    for run in await session.scalars(query):
        last = await session.scalar(
            select(Message.id)
            .where(
                Message.workflow_id == run.workflow_id,
                Message.status.in_([MessageStatus.SENT.value, MessageStatus.DELIVERED.value]),
                Message.created_at >= run.started_at,
            )
            .order_by(Message.sent_at.desc(), Message.id.desc())
            .limit(1)
        )
        run.converted_at, run.conversion_message_id = at, last
        converted += 1
    return converted


async def runs_of_user(session: AsyncSession, *, user_id: str) -> list[JourneyRun]:
    rows = await session.scalars(
        select(JourneyRun).where(JourneyRun.user_id == user_id).order_by(JourneyRun.id)
    )
    return list(rows)
