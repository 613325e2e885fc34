"""What every console page shares: its dependencies, the signed-in key, rendering, links.

Pages are Jinja2 templates (`templates/`, autoescaped) rendered on the server; htmx (vendored
in `static/`, no CDN) swaps fragments in place. A request from htmx (`HX-Request`) gets the
fragment only, any other request the whole page, so every URL also works without script.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from sqlalchemy.ext.asyncio import AsyncSession

from engine.context import Context
from engine.delivery.templates import TemplateStore
from engine.journey import Journeys
from engine.store import keys
from engine.store.keys import KeyInfo
from schemas.common import KeyScope
from triggers.api.auth import Access

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=HERE / "templates")


@dataclass
class ConsoleDeps:
    """What the console reads: the database, the journeys and their templates, and where
    the Temporal Web UI is (None: no run links)."""

    context: Context
    journeys: Journeys
    templates: TemplateStore
    temporal_ui: str | None
    namespace: str = "default"
    access: Access | None = None
    """The API's rate limits: failed sign-ins count as failed authentications."""

    def run_link(self, workflow_id: str, run_id: str | None) -> str | None:
        """The run's page in the Temporal Web UI (its history), or None without a UI."""
        if not self.temporal_ui:
            return None
        base = f"{self.temporal_ui.rstrip('/')}/namespaces/{quote(self.namespace, safe='')}"
        if run_id:
            return f"{base}/workflows/{quote(workflow_id, safe='')}/{quote(run_id)}/history"
        return f"{base}/workflows?" + urlencode({"query": f'WorkflowId="{workflow_id}"'})


class LoginRequired(Exception):
    """No valid console session: the page answers with a redirect to the login page."""


def deps(request: Request) -> ConsoleDeps:
    return request.app.state.console  # type: ignore[no-any-return]


async def db(request: Request) -> AsyncIterator[AsyncSession]:
    async with deps(request).context.sessions() as session:
        yield session


async def viewer(request: Request) -> KeyInfo:
    """The key this session signed in with, checked again on every page (a revoked key, or
    one whose scope no longer reads, ends the session)."""
    key_id = request.session.get("key_id")
    if not isinstance(key_id, int):
        raise LoginRequired
    async with deps(request).context.sessions() as session:
        found = await keys.active_key(session, key_id=key_id)
    if found is None or not found.scope.allows(KeyScope.READ):
        request.session.clear()
        raise LoginRequired
    return found


def is_fragment(request: Request) -> bool:
    """An htmx request that asked for a part of the page (not a boosted navigation)."""
    return request.headers.get("hx-request") == "true" and "hx-boosted" not in request.headers


def render(
    request: Request,
    name: str,
    context: Mapping[str, Any],
    *,
    status_code: int = 200,
) -> HTMLResponse:
    """Render `name` with the page's common context (the signed-in key, the CSRF token)."""
    full = {
        "viewer": getattr(request.state, "viewer", None),
        "csrf": request.session.get("csrf", ""),
        **context,
    }
    return templates.TemplateResponse(request, name, full, status_code=status_code)


def when(value: datetime | None) -> str:
    """A UTC time as the console shows it."""
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


templates.env.filters["when"] = when
templates.env.globals["percent"] = percent
