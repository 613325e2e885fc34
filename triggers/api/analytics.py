"""Stats: journeys and their funnels, experiment readouts (read scope)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from engine.analytics import (
    ExperimentReadout,
    JourneyStats,
    JourneySummary,
    experiment_readout,
    journey_stats,
    list_journeys,
)
from engine.analytics.window import parse_instant
from engine.clock import now
from engine.store.models import JourneyRun
from schemas.api import FieldError, Page
from schemas.common import KeyScope
from triggers.api.auth import require
from triggers.api.deps import session, state
from triggers.api.problems import Problem, problem_responses

router = APIRouter(tags=["stats"], dependencies=[Depends(require(KeyScope.READ))])

RANGE = (
    "A duration back from now (`7d`, `12h`) or an ISO 8601 date-time with a zone; "
    "runs count by when they entered."
)


def _instant(field: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_instant(value, now=now())
    except ValueError as exc:
        raise Problem(
            400,
            "invalid-time-range",
            "The time range is not valid",
            errors=[FieldError(field=field, message=str(exc))],
        ) from None


def _served(request: Request) -> frozenset[str]:
    """The journeys this API's router starts (none when routers run apart)."""
    routing = state(request).router
    return routing.journey_names if routing is not None else frozenset()


@router.get("/v1/journeys")
async def journeys(request: Request, db: AsyncSession = Depends(session)) -> Page[JourneySummary]:
    """Every journey with runs, and every journey this API routes (with none yet): runs
    entered, still open and converted, by name."""
    found = {j.name: j for j in await list_journeys(db)}
    for name in _served(request):
        found.setdefault(name, JourneySummary(name=name, entered=0, open=0, converted=0))
    return Page[JourneySummary](items=[found[name] for name in sorted(found)])


@router.get("/v1/journeys/{journey}/stats", responses=problem_responses(400, 404, 422))
async def stats(
    journey: str,
    request: Request,
    since: str | None = Query(default=None, description=RANGE, max_length=64),
    until: str | None = Query(default=None, description=RANGE, max_length=64),
    version: str | None = Query(default=None, description="Only runs of this build id"),
    variant: str | None = Query(default=None, description="Only runs in this experiment arm"),
    db: AsyncSession = Depends(session),
) -> JourneyStats:
    """The journey's funnel: entered, per step reached / sent / delivered / clicked / opened
    / failed / deferred / suppressed by reason, exits by reason, finishes by outcome,
    conversions, and last- and any-touch attribution per step and template."""
    start, end = _instant("since", since), _instant("until", until)
    if journey not in _served(request):
        known = await db.scalar(select(JourneyRun.id).where(JourneyRun.journey == journey).limit(1))
        if known is None:
            raise Problem(404, "journey-not-found", "No such journey", f"{journey!r} has no runs")
    return await journey_stats(
        db, journey, since=start, until=end, version=version, variant=variant
    )


@router.get("/v1/experiments/{experiment}", responses=problem_responses(400, 404, 422))
async def readout(
    experiment: str,
    since: str | None = Query(default=None, description=RANGE, max_length=64),
    db: AsyncSession = Depends(session),
) -> ExperimentReadout:
    """The experiment's readout: users, conversions and rate per arm; lift against the
    control with a 95% interval, the two-proportion z test's p-value, the probability to
    beat control (Beta posteriors), lift against the holdout; minimum-sample warnings."""
    found = await experiment_readout(db, experiment, since=_instant("since", since))
    if found.journey is None and not found.arms:
        raise Problem(
            404, "experiment-not-found", "No such experiment", f"{experiment!r} has no runs"
        )
    return found
