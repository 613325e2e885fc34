"""Journey runs: the router's routing state, kept in `journey_runs` (not in visibility).

The router reads a whole batch's worth at once (`open_runs_of`, `last_entries`) and writes
its entries in bulk (`add_entries`); the workflow's bookkeeping activities close rows
(`mark_finished`, `mark_converted`), waiting for the router's row when a short run beats
the router's commit (`RunRowMissing`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, String, Update, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from engine.clock import now
from engine.store import driver, webhooks
from engine.store.models import JourneyRun, Message, User
from engine.store.rows import insert_many, one_of, per_dialect, table_of
from schemas.common import MessageStatus, RunStatus


class RunRowMissing(LookupError):
    """The run's row is not (yet) in `journey_runs`: the router that started it has not
    committed. The bookkeeping activity retries until it has."""


async def open_runs(session: AsyncSession, *, user_id: str) -> list[JourneyRun]:
    """The user's runs that have not ended, oldest first."""
    return (await open_runs_of(session, user_ids=[user_id])).get(user_id, [])


async def open_runs_of(
    session: AsyncSession, *, user_ids: Iterable[str]
) -> dict[str, list[JourneyRun]]:
    """Open runs per user, oldest first, for many users in one query."""
    found: dict[str, list[JourneyRun]] = {}
    wanted = sorted(set(user_ids))
    if not wanted:
        return found
    query = _open_runs_of(session)
    for run in await driver.objects(session, JourneyRun, _RUN, query, {"users": wanted}):
        found.setdefault(run.user_id, []).append(run)
    return found


async def last_entries(
    session: AsyncSession, *, user_ids: Iterable[str], journeys: Iterable[str]
) -> dict[tuple[str, str, str | None], JourneyRun]:
    """The most recent run per (journey, user, key) for these users and journeys."""
    wanted, names = sorted(set(user_ids)), sorted(set(journeys))
    if not wanted or not names:
        return {}
    values = {"users": wanted, "journeys": names}
    runs = await driver.objects(session, JourneyRun, _RUN, _last_entries(session), values)
    return {(run.journey, run.user_id, run.key): run for run in runs}


_RUN = driver.columns(JourneyRun)


@per_dialect
def _open_runs_of(dialect: str) -> Select[*tuple[Any, ...]]:
    """`open_runs_of`'s read (built once, for the router's every batch)."""
    return (
        select(*_RUN)
        .where(one_of(dialect, JourneyRun.user_id, "users"), JourneyRun.status == RunStatus.OPEN)
        .order_by(JourneyRun.id)
    )


@per_dialect
def _last_entries(dialect: str) -> Select[*tuple[Any, ...]]:
    """`last_entries`' read (built once, for the router's every batch)."""
    newest = (
        select(func.max(JourneyRun.id))
        .where(
            one_of(dialect, JourneyRun.user_id, "users"),
            one_of(dialect, JourneyRun.journey, "journeys"),
        )
        .group_by(JourneyRun.journey, JourneyRun.user_id, JourneyRun.key)
    )
    return select(*_RUN).where(JourneyRun.id.in_(newest))


async def last_entry(
    session: AsyncSession, *, journey: str, user_id: str, key: str | None
) -> JourneyRun | None:
    """The user's most recent run of `journey` (for `key`), open or ended."""
    found = await last_entries(session, user_ids=[user_id], journeys=[journey])
    return found.get((journey, user_id, key))


async def add_entries(session: AsyncSession, entries: Sequence[dict[str, Any]]) -> None:
    """Insert entry rows (`journey`, `user_id`, `key`, `workflow_id`, `run_id`,
    `entry_event_id`, `version`, `started_at`) as open; a repeat of an entry (same journey
    and entry event, e.g. a retried routing) keeps the first row."""
    if not entries:
        return
    rows = [{**entry, "status": RunStatus.OPEN} for entry in entries]
    await insert_many(session, JourneyRun, rows, conflict=["journey", "entry_event_id"])
    for entry in entries:
        await webhooks.enqueue(
            session,
            kind="journey.entered",
            payload={"journey": entry["journey"], "workflow_id": entry["workflow_id"]},
            user_id=entry["user_id"],
            at=entry["started_at"],
        )


async def mark_started(session: AsyncSession, *, workflow_id: str, run_id: str) -> None:
    """Record the Temporal run id on the open row of `workflow_id` (runs recorded before
    the router stored run ids)."""
    await session.execute(
        update(JourneyRun)
        .where(
            JourneyRun.workflow_id == workflow_id,
            JourneyRun.status == RunStatus.OPEN,
            JourneyRun.run_id.is_(None),
        )
        .values(run_id=run_id)
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
    version: str | None = None,
    at: datetime | None = None,
) -> None:
    """Close the open row of `workflow_id` (idempotent). With a `run_id`, raises
    `RunRowMissing` while no row of that run exists yet."""
    any_run, this_run = _closing(session)
    ended_at = at or now()
    values = {
        "b_workflow_id": workflow_id,
        "b_status": status,
        "b_outcome": outcome,
        "b_ended_at": ended_at,
        "b_step": step,
        "b_variant": variant,
        "b_version": version,
    }
    if run_id is None:
        closed = await driver.rows(session, any_run, values)
    else:
        values["b_run_id"] = run_id
        closed = await driver.rows(session, this_run, values)
        if not closed:
            await _require_row(session, workflow_id=workflow_id, run_id=run_id)
            closed = await driver.rows(session, this_run, values)  # see `_require_row`
    kind = ended_kind(status)
    for user_id, journey in closed:
        await webhooks.enqueue(
            session,
            kind=kind,
            payload={
                "journey": journey,
                "workflow_id": workflow_id,
                "status": str(status),
                "outcome": outcome,
                "variant": variant,
            },
            user_id=user_id,
            at=ended_at,
        )


def ended_kind(status: RunStatus) -> str:
    """The webhook kind of a run that ended with `status`."""
    return "journey.exited" if status == RunStatus.EXITED else "journey.completed"


@per_dialect
def _closing(_dialect: str) -> tuple[Update, Update]:
    """`mark_finished`'s update (built once; Core, on the table: an ORM-enabled update
    spent more CPU synchronising the session than the statement took): any open run of the
    workflow, and the open run `b_run_id` (or a row the router wrote without a run id).
    `b_step`, `b_variant`, `b_version` left NULL keep the row's value."""
    table = table_of(JourneyRun)
    kept = {
        name: func.coalesce(bindparam(f"b_{name}", type_=String), table.c[name])
        for name in ("step", "variant", "version")
    }
    any_run = (
        update(table)
        .where(
            table.c.workflow_id == bindparam("b_workflow_id"),
            table.c.status == RunStatus.OPEN,
        )
        .values(
            status=bindparam("b_status"),
            outcome=bindparam("b_outcome"),
            ended_at=bindparam("b_ended_at"),
            **kept,
        )
        .returning(table.c.user_id, table.c.journey)
    )
    this_run = any_run.where((table.c.run_id == bindparam("b_run_id")) | table.c.run_id.is_(None))
    return any_run, this_run


async def mark_converted(
    session: AsyncSession,
    *,
    workflow_id: str,
    run_id: str,
    message_id: str | None,
    at: datetime | None = None,
) -> None:
    """Record the run's conversion (once), attributed to `message_id`. Raises
    `RunRowMissing` while no row of that run exists yet."""
    stamp = at or now()
    converting = (
        update(JourneyRun)
        .where(
            JourneyRun.workflow_id == workflow_id,
            (JourneyRun.run_id == run_id) | JourneyRun.run_id.is_(None),
            JourneyRun.converted_at.is_(None),
        )
        .values(converted_at=stamp, conversion_message_id=message_id)
        .returning(JourneyRun.user_id, JourneyRun.journey)
    )
    converted = list(await session.execute(converting))
    if not converted:
        await _require_row(session, workflow_id=workflow_id, run_id=run_id)
        converted = list(await session.execute(converting))  # see `_require_row`
    for user_id, journey in converted:
        await _converted(session, user_id, journey, workflow_id, message_id, stamp)


async def _require_row(session: AsyncSession, *, workflow_id: str, run_id: str) -> None:
    """Raise `RunRowMissing` unless the run's row is committed. Called after an update
    found nothing, and then followed by that update again: each statement reads what was
    committed when it began (READ COMMITTED), so the router may have committed the row
    between the two, and without the second update the run would stay open for good."""
    found = await session.scalar(
        select(JourneyRun.id).where(
            JourneyRun.workflow_id == workflow_id,
            (JourneyRun.run_id == run_id) | JourneyRun.run_id.is_(None),
        )
    )
    if found is None:
        raise RunRowMissing(workflow_id)


async def convert_closed(
    session: AsyncSession,
    *,
    goals: Sequence[tuple[str, str, str | None, timedelta, datetime]],
) -> list[str]:
    """Record goals reached after their run ended (but within `within` of entry),
    attributed to the last message the run delivered. Open runs record their own goals.

    `goals`: (journey, user_id, key or None, within, at) per goal event. Returns the
    journey of each run converted.
    """
    converted: list[str] = []
    for journey, user_id, key, within, at in goals:
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
        for run in await session.scalars(query):
            last = await session.scalar(
                select(Message.id)
                .where(
                    Message.workflow_id == run.workflow_id,
                    Message.status.in_([MessageStatus.SENT, MessageStatus.DELIVERED]),
                    Message.created_at >= run.started_at,
                )
                .order_by(Message.sent_at.desc(), Message.id.desc())
                .limit(1)
            )
            run.converted_at, run.conversion_message_id = at, last
            await _converted(session, run.user_id, run.journey, run.workflow_id, last, at)
            converted.append(run.journey)
    return converted


async def _converted(
    session: AsyncSession,
    user_id: str,
    journey: str,
    workflow_id: str,
    message_id: str | None,
    at: datetime,
) -> None:
    await webhooks.enqueue(
        session,
        kind="journey.converted",
        payload={"journey": journey, "workflow_id": workflow_id, "message_id": message_id},
        user_id=user_id,
        at=at,
    )


async def terminated(session: AsyncSession, *, workflow_ids: Iterable[str], outcome: str) -> None:
    """Close open rows whose workflow Temporal no longer knows (e.g. terminated by hand)."""
    ids = sorted(set(workflow_ids))
    if ids:
        await session.execute(
            update(JourneyRun)
            .where(JourneyRun.workflow_id.in_(ids), JourneyRun.status == RunStatus.OPEN)
            .values(status=RunStatus.TERMINATED, outcome=outcome, ended_at=now())
        )


async def runs_of_user(session: AsyncSession, *, user_id: str) -> list[JourneyRun]:
    rows = await session.scalars(
        select(JourneyRun).where(JourneyRun.user_id == user_id).order_by(JourneyRun.id)
    )
    return list(rows)


async def recent_runs(
    session: AsyncSession, *, journey: str, limit: int = 20
) -> list[tuple[JourneyRun, str | None]]:
    """A journey's newest runs, each with its user's product id (None once erased)."""
    query = (
        select(JourneyRun, User.external_id)
        .join(User, User.id == JourneyRun.user_id)
        .where(JourneyRun.journey == journey)
        .order_by(JourneyRun.started_at.desc(), JourneyRun.id.desc())
        .limit(limit)
    )
    return [(run, external) for run, external in await session.execute(query)]


__all__ = [
    "RunRowMissing",
    "add_entries",
    "convert_closed",
    "last_entries",
    "last_entry",
    "mark_converted",
    "mark_finished",
    "mark_started",
    "open_runs",
    "open_runs_of",
    "recent_runs",
    "runs_of_user",
    "terminated",
]
