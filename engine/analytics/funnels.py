"""Journey funnels and attribution, from `journey_runs` and `messages`.

A funnel is a cohort: the runs that entered in a time range (by `started_at`, indexed with
the journey), and the messages those runs wrote (joined on the run's first execution id,
indexed on `messages`). Every count is of runs, so a push to several devices counts once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, case, distinct, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from engine.analytics.models import AttributionRow, JourneyStats, JourneySummary, StepStats
from engine.store.models import JourneyRun, Message
from schemas.common import MessageStatus, RunStatus

LEFT_NUDGE = (MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.UNDELIVERED)
"""Statuses of a message that left Nudge for its provider."""
DELIVERED = (MessageStatus.SENT, MessageStatus.DELIVERED)
"""What attribution counts as a touch: sent and not known to be undelivered."""


def _cohort(
    journey: str,
    since: datetime | None,
    until: datetime | None,
    version: str | None,
    variant: str | None,
) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = [JourneyRun.journey == journey]
    if since is not None:
        where.append(JourneyRun.started_at >= since)
    if until is not None:
        where.append(JourneyRun.started_at < until)
    if version is not None:
        where.append(JourneyRun.version == version)
    if variant is not None:
        where.append(JourneyRun.variant == variant)
    return where


def _runs_where(condition: ColumnElement[bool]) -> Any:
    """count(DISTINCT run) of the message rows matching `condition`."""
    return func.count(distinct(case((condition, Message.run_id))))


async def journey_stats(
    session: AsyncSession,
    journey: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    version: str | None = None,
    variant: str | None = None,
) -> JourneyStats:
    """The funnel of `journey` for runs that entered in [`since`, `until`) (UTC; open ends
    unbounded), of one code `version` (build id) and one experiment `variant` if given."""
    where = _cohort(journey, since, until, version, variant)
    stats = JourneyStats(
        journey=journey, since=since, until=until, version=version, variant=variant
    )
    outcomes = await session.execute(
        select(
            JourneyRun.status,
            JourneyRun.outcome,
            func.count(),
            func.count(JourneyRun.converted_at),
        )
        .where(*where)
        .group_by(JourneyRun.status, JourneyRun.outcome)
    )
    for status, outcome, runs, converted in outcomes:
        stats.entered += runs
        stats.converted += converted
        if status == RunStatus.OPEN:
            stats.open += runs
        elif status == RunStatus.COMPLETED:
            key = outcome or "completed"
            stats.finished[key] = stats.finished.get(key, 0) + runs
        else:
            reason = _exit_reason(RunStatus(status), outcome)
            stats.exited[reason] = stats.exited.get(reason, 0) + runs
    stats.variants = sorted(
        v
        for v in await session.scalars(
            select(JourneyRun.variant).where(*where, JourneyRun.variant.is_not(None)).distinct()
        )
        if v is not None
    )
    stats.steps = await _steps(session, where)
    stats.attribution = await _attribution(session, where)
    return stats


def _exit_reason(status: RunStatus, outcome: str | None) -> str:
    if status == RunStatus.EXITED and outcome and outcome.startswith("exited:"):
        return outcome.removeprefix("exited:")
    return str(status)


async def _steps(session: AsyncSession, where: list[ColumnElement[bool]]) -> list[StepStats]:
    joined = Message.run_id == JourneyRun.run_id
    rows = await session.execute(
        select(
            Message.step,
            func.count(distinct(Message.run_id)),
            _runs_where(Message.status.in_(LEFT_NUDGE)),
            _runs_where(Message.status == MessageStatus.DELIVERED),
            _runs_where(Message.clicked_at.is_not(None)),
            _runs_where(Message.opened_at.is_not(None)),
            _runs_where(Message.status == MessageStatus.FAILED),
            _runs_where(Message.deferrals > 0),
            func.min(Message.created_at),
        )
        .join(JourneyRun, joined)
        .where(*where)
        .group_by(Message.step)
    )
    steps: dict[str, tuple[datetime, StepStats]] = {}
    for step, reached, sent, delivered, clicked, opened, failed, deferred, first in rows:
        name = step or "-"
        steps[name] = (
            first,
            StepStats(
                step=name,
                reached=reached,
                sent=sent,
                delivered=delivered,
                clicked=clicked,
                opened=opened,
                failed=failed,
                deferred=deferred,
            ),
        )
    suppressed = await session.execute(
        select(Message.step, Message.reason, func.count(distinct(Message.run_id)))
        .join(JourneyRun, joined)
        .where(*where, Message.status == MessageStatus.SUPPRESSED)
        .group_by(Message.step, Message.reason)
    )
    for step, reason, runs in suppressed:
        found = steps.get(step or "-")
        if found is not None:
            found[1].suppressed[reason or "unknown"] = runs
    return [stat for _, stat in sorted(steps.values(), key=lambda pair: (pair[0], pair[1].step))]


async def _attribution(
    session: AsyncSession, where: list[ColumnElement[bool]]
) -> list[AttributionRow]:
    """Last-touch (the message the run's conversion names) and any-touch (every delivered
    message of a converted run sent before its goal) per step and template."""
    found: dict[tuple[str, str | None], AttributionRow] = {}

    def row(step: str | None, template: str | None) -> AttributionRow:
        key = (step or "-", template)
        if key not in found:
            found[key] = AttributionRow(step=key[0], template=template)
        return found[key]

    last = await session.execute(
        select(Message.step, Message.template, func.count())
        .join(JourneyRun, Message.id == JourneyRun.conversion_message_id)
        .where(*where, JourneyRun.converted_at.is_not(None))
        .group_by(Message.step, Message.template)
    )
    for step, template, runs in last:
        row(step, template).last_touch = runs
    anytouch = await session.execute(
        select(Message.step, Message.template, func.count(distinct(Message.run_id)))
        .join(JourneyRun, Message.run_id == JourneyRun.run_id)
        .where(
            *where,
            JourneyRun.converted_at.is_not(None),
            Message.status.in_(DELIVERED),
            Message.created_at <= JourneyRun.converted_at,
        )
        .group_by(Message.step, Message.template)
    )
    for step, template, runs in anytouch:
        row(step, template).any_touch = runs
    return sorted(found.values(), key=lambda r: (r.step, r.template or ""))


async def list_journeys(session: AsyncSession) -> list[JourneySummary]:
    """Every journey that has runs: entered, still open, converted; by name."""
    rows = await session.execute(
        select(
            JourneyRun.journey,
            func.count(),
            func.count(case((JourneyRun.status == RunStatus.OPEN, JourneyRun.id))),
            func.count(JourneyRun.converted_at),
        )
        .group_by(JourneyRun.journey)
        .order_by(JourneyRun.journey)
    )
    return [
        JourneySummary(name=name, entered=entered, open=open_, converted=converted)
        for name, entered, open_, converted in rows
    ]


__all__ = ["journey_stats", "list_journeys"]
