"""Broadcasts: enter every member of a segment into a journey once, and follow progress."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from engine.store import broadcasts
from engine.store.models import Broadcast
from engine.temporal import broadcasts as starting
from schemas.api import FieldError
from schemas.broadcasts import BroadcastIn, BroadcastOut
from schemas.common import KeyScope
from triggers.api.auth import require
from triggers.api.deps import audit, session, state
from triggers.api.problems import Problem, problem_responses

router = APIRouter(prefix="/v1/broadcasts", tags=["broadcasts"])


def _out(row: Broadcast) -> BroadcastOut:
    return BroadcastOut(
        id=row.id,
        journey=row.journey,
        segment=row.segment,
        status=row.status,
        total=row.total,
        entered=row.entered,
        skipped=row.skipped,
        local=row.local,
        at=row.at,
        local_at=row.local_at,
        rate=row.rate,
        schedule=row.schedule,
        next_at=row.next_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
        finished_at=row.finished_at,
    )


def _refused(field: str, message: str) -> Problem:
    return Problem(
        400,
        "invalid-broadcast",
        "The broadcast cannot be started",
        message,
        errors=[FieldError(field=field, message=message)],
    )


@router.post(
    "",
    status_code=201,
    dependencies=[Depends(require(KeyScope.ADMIN))],
    responses=problem_responses(400, 413, 422, 503),
)
async def create_broadcast(
    body: BroadcastIn, request: Request, db: AsyncSession = Depends(session)
) -> BroadcastOut:
    """Start a broadcast (one Temporal workflow): every member of `segment` is entered into
    `journey` once, throttled to `rate` per second, at `at` (each user's local time with
    `local`). Follow it with `GET /v1/broadcasts/{id}`."""
    api = state(request)
    if body.journey not in api.journeys:
        raise _refused("journey", f"no journey {body.journey!r}")
    if body.segment not in api.segments:
        raise _refused("segment", f"no segment {body.segment!r}")
    try:
        wanted = starting.request_for(
            journey=body.journey,
            segment=body.segment,
            at=body.at,
            local=body.local,
            rate=body.rate,
            default_zone=api.context.config.timezone,
        )
    except starting.BroadcastRefused as refused:
        raise _refused(refused.field, refused.reason) from None
    broadcast_id = await starting.start(
        await api.temporal(),
        api.context.sessions,
        wanted,
        task_queue=api.context.settings.task_queue,
    )
    await audit(
        request,
        db,
        action="broadcast.create",
        target=broadcast_id,
        detail={"journey": body.journey, "segment": body.segment},
    )
    await db.commit()
    row = await broadcasts.get(db, broadcast_id=broadcast_id)
    assert row is not None
    return _out(row)


@router.get(
    "/{broadcast_id}",
    dependencies=[Depends(require(KeyScope.READ))],
    responses=problem_responses(404),
)
async def get_broadcast(broadcast_id: str, db: AsyncSession = Depends(session)) -> BroadcastOut:
    """A broadcast's status and progress: members counted, entered, skipped (already in
    the journey, or re-entry not allowed), and the next wave's time when it waits."""
    row = await broadcasts.get(db, broadcast_id=broadcast_id)
    if row is None:
        raise Problem(404, "broadcast-not-found", "No such broadcast", f"no {broadcast_id!r}")
    return _out(row)
