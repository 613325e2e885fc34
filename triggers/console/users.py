"""Users: exact search by product id, email or phone; a user's timeline and records."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.ext.asyncio import AsyncSession

from engine.store import consent, devices, runs, users
from engine.store.timeline import timeline_rows
from triggers.console.views import db, deps, is_fragment, render

router = APIRouter()


@router.get("/users", response_class=HTMLResponse)
async def users_page(
    request: Request,
    q: str = Query(default="", max_length=320),
    session: AsyncSession = Depends(db),
) -> HTMLResponse:
    """Without `q`, the newest users; with it, exact matches (the phone in any format)."""
    found = (
        await users.search_users(session, query=q)
        if q.strip()
        else await users.recent_users(session, limit=50)
    )
    page = "_users_rows.html" if is_fragment(request) else "users.html"
    return render(request, page, {"q": q, "users": found})


@router.get("/users/{external_id:path}", response_class=HTMLResponse)
async def user_page(
    request: Request, external_id: str, session: AsyncSession = Depends(db)
) -> HTMLResponse:
    console = deps(request)
    user = await users.find_user(session, external_id=external_id)
    rows = await timeline_rows(session, external_id=external_id)
    if user is None or rows is None:
        return render(
            request, "error.html", {"message": f"no user {external_id!r}"}, status_code=404
        )
    user_runs = await runs.runs_of_user(session, user_id=user.id)
    links = {run.workflow_id: console.run_link(run.workflow_id, run.run_id) for run in user_runs}
    return render(
        request,
        "user.html",
        {
            "user": user,
            "external_id": external_id,
            "timeline": rows,
            "runs": [(run, links[run.workflow_id]) for run in user_runs],
            "links": links,
            "devices": await devices.list_devices(session, user_id=user.id),
            "consent_log": await consent.log(session, user_id=user.id),
            "templates": [
                f"{journey}/{name}"
                for journey in sorted(console.journeys)
                for name in console.templates.names(journey)
            ],
        },
    )
