"""Segments: the named audiences this deployment knows, their size and a sample."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession

from engine.clock import now
from engine.store import segments as members
from schemas.broadcasts import SegmentList, SegmentMember, SegmentOut, SegmentSummary
from schemas.common import KeyScope
from triggers.api.auth import require
from triggers.api.deps import session, state
from triggers.api.problems import Problem, problem_responses

router = APIRouter(
    prefix="/v1/segments", tags=["segments"], dependencies=[Depends(require(KeyScope.READ))]
)


@router.get("")
async def list_segments(request: Request) -> SegmentList:
    """Every segment, from code and `nudge.toml`, by name."""
    return SegmentList(
        items=[
            SegmentSummary(
                name=s.name, expression=s.expression, description=s.description, source=s.source
            )
            for s in state(request).segments.all()
        ]
    )


@router.get("/{name}", responses=problem_responses(404, 422))
async def get_segment(
    name: str,
    request: Request,
    sample: int = Query(default=10, ge=0, le=100, description="members to show"),
    db: AsyncSession = Depends(session),
) -> SegmentOut:
    """The segment's expression, how many users are in it now, and the first few by id."""
    known = state(request).segments
    if name not in known:
        raise Problem(404, "segment-not-found", "No such segment", f"no segment {name!r}")
    segment, tree, at = known.get(name), known.tree(name), now()
    size = await members.size(db, tree=tree, at=at)
    shown = await members.sample(db, tree=tree, at=at, limit=sample) if sample else []
    return SegmentOut(
        name=segment.name,
        expression=segment.expression,
        description=segment.description,
        source=segment.source,
        size=size,
        sample=[SegmentMember(uid=uid, user_id=external) for uid, external in shown],
    )
