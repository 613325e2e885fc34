"""Journeys: the list (entered, open, converted) and one journey's page: its funnel drawn
as bars per step with rates, the same per experiment arm, the experiment readouts, and the
recent runs. The numbers come from `engine.analytics`; this module only lays them out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.ext.asyncio import AsyncSession

from engine.analytics import (
    ExperimentReadout,
    JourneyStats,
    experiment_readout,
    journey_stats,
    list_journeys,
)
from engine.store import experiments, runs
from triggers.console.views import db, deps, percent, render

router = APIRouter()

PERIODS = {"7d": 7, "30d": 30, "90d": 90, "all": None}
"""The entry windows a journey's page offers, in days (None: every run)."""

CHART_WIDTH = 640
BAR_HEIGHT = 16
LABEL_WIDTH = 150


@dataclass(frozen=True)
class Bar:
    kind: str
    """reached, sent, clicked, failed or suppressed: the bar's colour."""
    count: int
    width: int
    """Pixels, proportional to the runs that entered."""
    y: int
    rate: str
    """Of the step's `reached` (for `reached`: of the runs that entered)."""


@dataclass(frozen=True)
class FunnelRow:
    step: str
    y: int
    bars: list[Bar]


def funnel(stats: JourneyStats) -> tuple[list[FunnelRow], int]:
    """The rows of a funnel chart (SVG geometry) and the chart's height."""
    scale = max([stats.entered, *(step.reached for step in stats.steps), 1])
    rows: list[FunnelRow] = []
    y = 8
    for step in stats.steps:
        suppressed = sum(step.suppressed.values())
        kinds = [
            ("reached", step.reached, percent(step.reached, stats.entered)),
            ("sent", step.sent, percent(step.sent, step.reached)),
            ("clicked", step.clicked, percent(step.clicked, step.reached)),
            ("failed", step.failed, percent(step.failed, step.reached)),
            ("suppressed", suppressed, percent(suppressed, step.reached)),
        ]
        bars = []
        for index, (kind, count, rate) in enumerate(kinds):
            if index > 2 and not count:
                continue  # failures and suppressions only when there are some
            width = round((CHART_WIDTH - LABEL_WIDTH - 120) * count / scale)
            bars.append(Bar(kind, count, max(width, 1 if count else 0), y, rate))
            y += BAR_HEIGHT + 2
        rows.append(FunnelRow(step.step, bars[0].y, bars))
        y += 12
    return rows, y


@router.get("/journeys", response_class=HTMLResponse)
async def journeys_page(request: Request, session: AsyncSession = Depends(db)) -> HTMLResponse:
    console = deps(request)
    totals = {summary.name: summary for summary in await list_journeys(session)}
    rows = []
    for name in sorted(set(console.journeys) | set(totals)):
        cls = console.journeys.get(name)
        spec = cls.__journey__ if cls is not None else None
        summary = totals.get(name)
        rows.append(
            {
                "name": name,
                "trigger": spec.trigger if spec else "-",
                "goal": spec.goal.event if spec and spec.goal else "-",
                "shipped": spec is not None,
                "entered": summary.entered if summary else 0,
                "open": summary.open if summary else 0,
                "converted": summary.converted if summary else 0,
            }
        )
    return render(request, "journeys.html", {"journeys": rows})


@router.get("/journeys/{name}", response_class=HTMLResponse)
async def journey_page(
    request: Request,
    name: str,
    period: str = Query(default="all", max_length=8),
    session: AsyncSession = Depends(db),
) -> HTMLResponse:
    console = deps(request)
    cls = console.journeys.get(name)
    days = PERIODS.get(period)
    since = datetime.now(UTC) - timedelta(days=days) if days else None
    stats = await journey_stats(session, name, since=since)
    if cls is None and not stats.entered:
        return render(request, "error.html", {"message": f"no journey {name!r}"}, status_code=404)
    chart, height = funnel(stats)
    arms = []
    for variant in stats.variants:
        arm = await journey_stats(session, name, since=since, variant=variant)
        arm_chart, arm_height = funnel(arm)
        arms.append({"stats": arm, "chart": arm_chart, "height": arm_height})
    readouts: list[ExperimentReadout] = [
        await experiment_readout(session, experiment.name, since=since)
        for experiment in await experiments.all_experiments(session)
        if experiment.journey == name
    ]
    recent = [
        {"run": run, "user": user, "link": console.run_link(run.workflow_id, run.run_id)}
        for run, user in await runs.recent_runs(session, journey=name, limit=20)
    ]
    return render(
        request,
        "journey.html",
        {
            "name": name,
            "spec": cls.__journey__ if cls is not None else None,
            "stats": stats,
            "chart": chart,
            "height": height,
            "arms": arms,
            "readouts": readouts,
            "period": period if period in PERIODS else "all",
            "periods": list(PERIODS),
            "recent": recent,
            "templates": console.templates.names(name),
            "chart_width": CHART_WIDTH,
            "label_width": LABEL_WIDTH,
            "bar_height": BAR_HEIGHT,
        },
    )
