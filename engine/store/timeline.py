"""What `nudge timeline` and `nudge journeys` show."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from engine.config.settings import Settings
from engine.store.models import Event, JourneyRun, Message
from engine.store.users import find_user
from schemas.common import RunStatus


@dataclass
class TimelineRow:
    at: datetime
    kind: str
    what: str
    status: str
    detail: str
    ref: str | None = None
    """What the row is about: the message id of a message, the workflow id of a run."""


async def timeline_rows(session: AsyncSession, *, external_id: str) -> list[TimelineRow] | None:
    """Events, journey entries and exits, and messages of a user, in time order (UTC)."""
    user = await find_user(session, external_id=external_id)
    if user is None:
        return None
    rows: list[TimelineRow] = []
    for event in await session.scalars(select(Event).where(Event.user_id == user.id)):
        rows.append(
            TimelineRow(
                event.timestamp,
                "event",
                event.name,
                "routed" if event.routed_at else "queued",
                event.message_id,
            )
        )
    for run in await session.scalars(select(JourneyRun).where(JourneyRun.user_id == user.id)):
        rows.append(
            TimelineRow(
                run.started_at, "entry", run.journey, "entered", run.workflow_id, run.workflow_id
            )
        )
        if run.converted_at:
            rows.append(
                TimelineRow(
                    run.converted_at,
                    "goal",
                    run.journey,
                    "converted",
                    run.conversion_message_id or "-",
                    run.workflow_id,
                )
            )
        if run.ended_at:
            rows.append(
                TimelineRow(
                    run.ended_at,
                    "exit",
                    run.journey,
                    run.status,
                    run.outcome or "-",
                    run.workflow_id,
                )
            )
    for message in await session.scalars(select(Message).where(Message.user_id == user.id)):
        at = message.sent_at or message.created_at
        what = (
            f"{message.journey or '-'}/{message.step or '-'} {message.channel} ({message.template})"
        )
        detail = message.reason or (f"attempts={message.attempts}" if message.attempts else "-")
        rows.append(TimelineRow(at, "message", what, message.status, detail, message.id))
    order = {"event": 0, "entry": 1, "message": 2, "goal": 3, "exit": 4}
    rows.sort(key=lambda r: (r.at, order[r.kind]))
    return rows


async def journey_counts(session: AsyncSession) -> dict[str, tuple[int, int]]:
    """(open, ended) runs per journey."""
    result = await session.execute(
        select(JourneyRun.journey, JourneyRun.status == RunStatus.OPEN, func.count()).group_by(
            JourneyRun.journey, JourneyRun.status == RunStatus.OPEN
        )
    )
    counts: dict[str, tuple[int, int]] = {}
    for journey, is_open, count in result:
        opened, ended = counts.get(journey, (0, 0))
        counts[journey] = (opened + count, ended) if is_open else (opened, ended + count)
    return counts


async def step_counts(settings: Settings, *, limit: int = 10_000) -> dict[str, dict[str, int]]:
    """Open runs per journey and step (`NudgeStep`), from Temporal visibility.

    Visibility can only group by a single field, so this lists the open runs (up to `limit`)
    and counts their search attributes.
    """
    from engine.journey.vocabulary import SA_JOURNEY, SA_STEP
    from engine.temporal.client import connect

    client = await connect(settings)
    counts: dict[str, dict[str, int]] = {}
    query = "ExecutionStatus = 'Running' AND NudgeJourney IS NOT NULL"
    async for run in client.list_workflows(query, limit=limit):
        attributes = run.typed_search_attributes
        journey = attributes.get(SA_JOURNEY) or run.workflow_type
        step = attributes.get(SA_STEP) or "entered"
        per_step = counts.setdefault(journey, {})
        per_step[step] = per_step.get(step, 0) + 1
    return counts
