"""Journeys: the list (entered, open, converted) and one journey's page (recent runs)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.ext.asyncio import AsyncSession

from engine.store import runs
from triggers.console.views import db, deps, render

router = APIRouter()


@router.get("/journeys", response_class=HTMLResponse)
async def journeys_page(request: Request, session: AsyncSession = Depends(db)) -> HTMLResponse:
    console = deps(request)
    totals = await runs.journey_totals(session)
    names = sorted(set(console.journeys) | set(totals))
    rows = []
    for name in names:
        cls = console.journeys.get(name)
        spec = cls.__journey__ if cls is not None else None
        counted = totals.get(name, runs.RunTotals(0, 0, 0))
        rows.append(
            {
                "name": name,
                "trigger": spec.trigger if spec else "-",
                "goal": spec.goal.event if spec and spec.goal else "-",
                "shipped": spec is not None,
                "entered": counted.entered,
                "open": counted.open,
                "converted": counted.converted,
            }
        )
    return render(request, "journeys.html", {"journeys": rows})


@router.get("/journeys/{name}", response_class=HTMLResponse)
async def journey_page(
    request: Request, name: str, session: AsyncSession = Depends(db)
) -> HTMLResponse:
    console = deps(request)
    cls = console.journeys.get(name)
    totals = (await runs.journey_totals(session)).get(name)
    if cls is None and totals is None:
        return render(request, "error.html", {"message": f"no journey {name!r}"}, status_code=404)
    recent = [
        {
            "run": run,
            "user": user,
            "link": console.run_link(run.workflow_id, run.run_id),
        }
        for run, user in await runs.recent_runs(session, journey=name, limit=20)
    ]
    return render(
        request,
        "journey.html",
        {
            "name": name,
            "spec": cls.__journey__ if cls is not None else None,
            "totals": totals or runs.RunTotals(0, 0, 0),
            "recent": recent,
            "templates": console.templates.names(name),
        },
    )
