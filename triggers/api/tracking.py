"""Segment's HTTP tracking spec: `/v1/track`, `identify`, `page`, `screen`, `group`, `alias`,
`batch` (and `import`, Segment's historical import, the same as `batch` here).

Stored before the answer (the rows are durable when the 200 goes out). As Segment does, a
batch never fails for one item: an item of an unknown type is skipped and counted, an invalid
one is rejected and listed (index and fields); the rest is stored and the answer is 200. Only
a batch in which nothing could be stored is refused (400, listing every item). Dedupe is per
(user, `messageId`): a client's retry is ignored, another user's event with the same id is not.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from engine.store import outbox
from engine.store.gdpr import end_runs
from engine.store.users import ProfileError, validate_profile
from schemas.api import FieldError
from schemas.common import KeyScope
from schemas.events import (
    CALL_TYPES,
    AcceptedResponse,
    AliasCall,
    BatchCall,
    Call,
    GroupCall,
    IdentifyCall,
    PageCall,
    RejectedItem,
    ScreenCall,
    TrackCall,
)
from triggers.api.auth import require
from triggers.api.deps import session, state
from triggers.api.problems import Problem, field_errors, problem_responses

# Every call has a body: too large (413) or not valid (422).
router = APIRouter(
    prefix="/v1",
    tags=["tracking"],
    dependencies=[Depends(require(KeyScope.SOURCE))],
    responses=problem_responses(413, 415, 422),
)

_ADAPTERS: dict[str, TypeAdapter[Any]] = {
    kind: TypeAdapter(model) for kind, model in CALL_TYPES.items()
}


async def _store(
    request: Request, db: AsyncSession, calls: list[Call], *, sent_at: Any = None
) -> AcceptedResponse:
    accepted = await outbox.accept(db, calls, sent_at=sent_at)
    await db.commit()
    api = state(request)
    if api.router is not None:
        api.router.wake()
    if accepted.merged.ended_runs:
        # The anonymous user's open runs ended with the merge: stop their workflows too.
        await end_runs(api.temporal, accepted.merged.ended_runs, reason="user merged")
    return AcceptedResponse(message_ids=accepted.message_ids, duplicates=accepted.duplicates)


def _checked(call: Call) -> Call:
    """Refuse (422, naming the field) an identify whose profile traits cannot be stored."""
    if isinstance(call, IdentifyCall):
        try:
            validate_profile(call.traits)
        except ProfileError as exc:
            raise Problem(
                422,
                "invalid-profile",
                "A profile field is not valid",
                str(exc),
                errors=[FieldError(field=exc.field, message=str(exc))],
            ) from None
    return call


@router.post("/track")
async def track(
    call: TrackCall, request: Request, db: AsyncSession = Depends(session)
) -> AcceptedResponse:
    """Record an event (Segment `track`); journeys see it under its name."""
    return await _store(request, db, [call])


@router.post("/identify")
async def identify(
    call: IdentifyCall, request: Request, db: AsyncSession = Depends(session)
) -> AcceptedResponse:
    """Create or update a user (Segment `identify`); `timezone`, `locale`, `phone` and
    `email` traits set the profile, other traits become attributes. With both a `userId`
    and an `anonymousId`, the anonymous user is merged into the known one."""
    return await _store(request, db, [_checked(call)])


@router.post("/page")
async def page(
    call: PageCall, request: Request, db: AsyncSession = Depends(session)
) -> AcceptedResponse:
    """A page view (Segment `page`); journeys see it as `Page Viewed`."""
    return await _store(request, db, [call])


@router.post("/screen")
async def screen(
    call: ScreenCall, request: Request, db: AsyncSession = Depends(session)
) -> AcceptedResponse:
    """A screen view (Segment `screen`); journeys see it as `Screen Viewed`."""
    return await _store(request, db, [call])


@router.post("/group")
async def group(
    call: GroupCall, request: Request, db: AsyncSession = Depends(session)
) -> AcceptedResponse:
    """The user's group (Segment `group`): `group_id` and the group's traits (`group`) go on
    the profile."""
    return await _store(request, db, [call])


@router.post("/alias")
async def alias(
    call: AliasCall, request: Request, db: AsyncSession = Depends(session)
) -> AcceptedResponse:
    """`previousId` is `userId` (Segment `alias`): the previous user's events, devices,
    consent and messages move to the user; its open runs end (outcome `merged`)."""
    return await _store(request, db, [call])


@router.post("/batch")
async def batch(
    body: BatchCall, request: Request, db: AsyncSession = Depends(session)
) -> AcceptedResponse:
    """Several calls at once. Unknown types are skipped (`skipped`), invalid items are
    rejected (`rejected`, by index); the rest is stored. 400 only when nothing was."""
    calls: list[Call] = []
    rejected: list[RejectedItem] = []
    skipped = 0
    for index, item in enumerate(body.batch):
        kind = item.get("type")
        adapter = _ADAPTERS.get(kind) if isinstance(kind, str) else None
        if adapter is None:
            skipped += 1
            continue
        own_context = item.get("context") or {}
        if not isinstance(own_context, dict):
            problem = FieldError(field="context", message="must be an object")
            rejected.append(_rejected(index, kind, [problem]))
            continue
        merged = {**item, "context": {**body.context, **own_context}}
        try:
            calls.append(_checked(adapter.validate_python(merged)))
        except ValidationError as exc:
            rejected.append(_rejected(index, kind, field_errors(exc.errors())))
        except Problem as problem:
            rejected.append(_rejected(index, kind, problem.errors or []))
    if not calls and rejected:
        errors = [
            FieldError(field=f"batch[{r.index}].{e['field']}", message=e["message"])
            for r in rejected
            for e in r.errors
        ]
        raise Problem(
            400,
            "invalid-batch",
            "No batch item is valid; nothing was stored",
            f"rejected items: {', '.join(f'batch[{r.index}]' for r in rejected)}",
            errors=errors,
        )
    answer = await _store(request, db, calls, sent_at=body.sent_at)
    return answer.model_copy(update={"skipped": skipped, "rejected": rejected})


@router.post("/import")
async def import_(
    body: BatchCall, request: Request, db: AsyncSession = Depends(session)
) -> AcceptedResponse:
    """Segment's historical import: a batch whose `timestamp`s are taken as they are."""
    return await batch(body, request, db)


def _rejected(index: int, kind: str | None, errors: list[FieldError]) -> RejectedItem:
    return RejectedItem(
        index=index,
        type=kind,
        errors=[{"field": e.field, "message": e.message} for e in errors],
    )
