"""Segment's HTTP tracking spec: `/v1/track`, `/v1/identify`, `/v1/batch`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from engine.store import outbox as events
from schemas.api import FieldError
from schemas.events import AcceptedResponse, BatchCall, IdentifyCall, TrackCall
from triggers.api.deps import session, state
from triggers.api.problems import Problem, field_errors, problem_responses

# Every call has a body: too large (413) or not valid (422).
router = APIRouter(prefix="/v1", tags=["tracking"], responses=problem_responses(413, 422))

_CALLS: dict[str, TypeAdapter[Any]] = {
    "track": TypeAdapter(TrackCall),
    "identify": TypeAdapter(IdentifyCall),
}


async def _store(
    request: Request, db: AsyncSession, calls: list[TrackCall | IdentifyCall]
) -> AcceptedResponse:
    """Store before answering: the event rows are durable when the 200 goes out."""
    accepted = await events.accept(db, calls)
    await db.commit()
    api = state(request)
    if api.router is not None:
        api.router.wake()
    return AcceptedResponse(message_ids=accepted.message_ids, duplicates=accepted.duplicates)


@router.post("/track")
async def track(
    call: TrackCall, request: Request, db: AsyncSession = Depends(session)
) -> AcceptedResponse:
    """Record an event (Segment `track`). A repeated `messageId` is accepted and ignored."""
    return await _store(request, db, [call])


@router.post("/identify")
async def identify(
    call: IdentifyCall, request: Request, db: AsyncSession = Depends(session)
) -> AcceptedResponse:
    """Create or update a user (Segment `identify`); `timezone`, `locale`, `phone` and
    `email` traits set the profile, other traits become attributes."""
    return await _store(request, db, [call])


@router.post("/batch")
async def batch(
    body: BatchCall, request: Request, db: AsyncSession = Depends(session)
) -> AcceptedResponse:
    """Several calls at once. All or nothing: if any item is invalid, nothing is stored and
    the problem document lists every rejected item by index."""
    calls: list[TrackCall | IdentifyCall] = []
    errors: list[FieldError] = []
    for index, item in enumerate(body.batch):
        kind = item.get("type")
        adapter = _CALLS.get(kind) if isinstance(kind, str) else None
        if adapter is None:
            errors.append(
                FieldError(
                    field=f"batch[{index}].type", message="type must be 'track' or 'identify'"
                )
            )
            continue
        own_context = item.get("context") or {}
        if not isinstance(own_context, dict):
            errors.append(FieldError(field=f"batch[{index}].context", message="must be an object"))
            continue
        merged = {**item, "context": {**body.context, **own_context}}
        try:
            calls.append(adapter.validate_python(merged))
        except ValidationError as exc:
            errors.extend(field_errors(exc.errors(), prefix=("batch", index)))
    if errors:
        rejected = sorted({e.field.split("]")[0] + "]" for e in errors})
        raise Problem(
            422,
            "invalid-batch",
            "Some batch items are not valid; nothing was stored",
            f"rejected items: {', '.join(rejected)}",
            errors=errors,
        )
    return await _store(request, db, calls)
