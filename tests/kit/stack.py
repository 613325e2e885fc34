"""The product in-process on real parts: the API (through ASGI), the router and a worker, on
a real database and the Temporal dev server. Tests speak HTTP to it.

Besides the HTTP helpers, `Stack` waits on what the product records (run rows, message rows,
routed events, a run's `state` query), so a test says what it waits for instead of how long.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import Callable, Collection
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
from sqlalchemy import func, select
from temporalio.client import Client, WorkflowHandle

from engine.app.journeys import shipped_journeys, template_store
from engine.app.router import build_router
from engine.app.worker import ROLES, Role, build_workers, running
from engine.channels.console import ConsoleProvider
from engine.channels.registry import Providers
from engine.config.nudge_toml import NudgeConfig
from engine.config.settings import Settings
from engine.context import Context
from engine.delivery.templates import TemplateStore
from engine.journey import Journeys
from engine.store.keys import create_key
from engine.store.models import Event
from engine.temporal import timeskip
from schemas.common import KeyScope
from tests.kit.waiting import DEADLINE, eventually, idle
from triggers.api.app import create_app

TEST_TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
"""Templates of the test journeys (`tests/kit/journeys.py`)."""


def kit_templates() -> TemplateStore:
    """The test journeys' templates, for `journey_env(..., templates=kit_templates())`."""
    return template_store(TEST_TEMPLATES)


class Stack:
    """`async with Stack(...) as stack:` runs API + router + worker until the block ends;
    the worker serves `roles` (`nudge worker --only`), default all."""

    def __init__(
        self,
        *,
        database_url: str,
        client: Client,
        task_queue: str,
        config: NudgeConfig | None = None,
        journeys: Journeys | None = None,
        providers: Providers | None = None,
        providers_factory: Callable[[Context], Providers] | None = None,
        run_worker: bool = True,
        roles: Collection[Role] = ROLES,
    ) -> None:
        url, _, schema = database_url.partition("#schema=")
        self.settings = Settings(
            database_url=url,
            database_schema=schema or None,
            task_queue=task_queue,
            router_poll_interval=0.1,
        )
        self.client = client
        self.config = config or NudgeConfig()
        self.journeys = dict(journeys or shipped_journeys())
        self.console = ConsoleProvider(stream=io.StringIO())
        self.providers = providers or Providers.console(self.console)
        self._providers_factory = providers_factory
        self._run_worker = run_worker
        self._roles = roles
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Stack:
        self.context = await Context.open(self.settings, config=self.config)
        self._stack.push_async_callback(self.context.close)
        async with self.context.sessions() as db:
            self.key = await create_key(db, name="test", scope=KeyScope.ADMIN)
            await db.commit()

        async def temporal() -> Client:
            return self.client

        self.router = build_router(self.context, temporal, journeys=self.journeys)
        self.app = create_app(self.context, temporal=temporal, router=self.router, run_router=False)
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app),
            base_url="http://nudge.test",
            auth=(self.key, ""),
        )
        self._stack.push_async_callback(self.http.aclose)
        if self._run_worker:
            await self.start_worker()
        router_task = asyncio.create_task(self.router.run())
        self._stack.callback(router_task.cancel)
        return self

    async def start_worker(self) -> None:
        if self._providers_factory is not None:
            self.providers = self._providers_factory(self.context)
        await self.providers.start()
        self._stack.push_async_callback(self.providers.close)
        self.workers = build_workers(
            self.client,
            self.context,
            providers=self.providers,
            journeys=self.journeys,
            templates=kit_templates(),
            roles=self._roles,
        )
        await self._stack.enter_async_context(running(self.workers))

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()

    # -- HTTP helpers --------------------------------------------------------------------

    async def call(self, method: str, path: str, body: Any = None, *, ok: bool = True) -> Any:
        response = await self.http.request(method, path, json=body)
        if ok:
            assert response.status_code < 300, (response.status_code, response.text)
        return response.json() if response.content else None

    async def profile(self, user: str, **fields: Any) -> Any:
        return await self.call("PUT", f"/v1/users/{user}", fields)

    async def track(
        self, user: str, event: str, properties: dict[str, Any] | None = None, **extra: Any
    ) -> Any:
        body = {"userId": user, "event": event, "properties": properties or {}, **extra}
        return await self.call("POST", "/v1/track", body)

    async def device(self, user: str, platform: str = "ios", token: str | None = None) -> Any:
        token = token or f"tok-{user}-{platform}"
        return await self.call(
            "POST", f"/v1/users/{user}/devices", {"platform": platform, "token": token}
        )

    async def consent(self, user: str, channel: str, state: str, topic: str = "marketing") -> Any:
        return await self.call(
            "PUT",
            f"/v1/users/{user}/consent/{channel}",
            {"topic": topic, "state": state, "source": "api"},
        )

    async def messages(self, user: str) -> list[dict[str, Any]]:
        items = (await self.call("GET", f"/v1/messages?user_id={user}&limit=500"))["items"]
        return list(reversed(items))

    async def runs(self, user: str) -> list[dict[str, Any]]:
        return list((await self.call("GET", f"/v1/users/{user}/journeys"))["items"])

    # -- waiting on what the product records ---------------------------------------------

    async def wait_closed(
        self, user: str, *, count: int = 1, timeout: float = DEADLINE
    ) -> list[dict[str, Any]]:
        """Wait until `count` runs of the user have ended; returns all runs."""

        async def closed() -> list[dict[str, Any]] | None:
            runs = await self.runs(user)
            return runs if sum(r["status"] != "open" for r in runs) >= count else None

        try:
            return await eventually(closed, timeout=timeout)
        except AssertionError as failed:
            raise AssertionError(f"{failed}; runs of {user}: {await self._where(user)}") from None

    async def _where(self, user: str) -> list[str]:
        """Where each run of the user is (for failure messages): status, step, outcome."""
        found = []
        for run in await self.runs(user):
            step = run.get("step")
            if run["status"] == "open":
                try:
                    state = await self.handle(run).query("state", rpc_timeout=timedelta(seconds=5))
                    step = state["step"]
                except Exception as exc:  # a query needs a worker; the row still helps
                    step = f"? ({type(exc).__name__})"
            found.append(f"{run['workflow_id']} {run['status']} {step} {run.get('outcome')}")
        return found

    async def wait_runs(
        self, user: str, *, count: int = 1, timeout: float = DEADLINE
    ) -> list[dict[str, Any]]:
        """Wait until the user has at least `count` runs (open or ended); returns them."""

        async def started() -> list[dict[str, Any]] | None:
            runs = await self.runs(user)
            return runs if len(runs) >= count else None

        return await eventually(started, timeout=timeout)

    async def routed(self, user: str, *, timeout: float = DEADLINE) -> None:
        """Wait until the router has routed every event of the user accepted so far. The
        router writes the runs an event starts in the same transaction, so after this the
        user's run rows are all there."""
        uid = (await self.call("GET", f"/v1/users/{user}"))["uid"]

        async def done() -> bool:
            async with self.context.sessions() as db:
                left = await db.scalar(
                    select(func.count())
                    .select_from(Event)
                    .where(Event.user_id == uid, Event.routed_at.is_(None))
                )
            return left == 0

        await eventually(done, timeout=timeout)

    def handle(self, run: dict[str, Any]) -> WorkflowHandle[Any, Any]:
        """The Temporal handle of a run row (as `runs` lists it): its latest execution, so
        an open run that continued as new is reached where it is now."""
        return self.client.get_workflow_handle(run["workflow_id"])

    async def wait_step(
        self,
        user: str,
        step: str,
        *,
        journey: str | None = None,
        key: str | None = None,
        events_seen: int | None = None,
        timeout: float = DEADLINE,
    ) -> dict[str, Any]:
        """Wait until the user's open run (of `journey`, for `key`) says, in its `state`
        query, that it is at `step` (e.g. "wait:Ping", "sleep"), has handled `events_seen`
        events if given, and has nothing in flight; returns the state."""

        async def there() -> dict[str, Any] | None:
            found = [
                r
                for r in await self.runs(user)
                if r["status"] == "open"
                and (journey is None or r["journey"] == journey)
                and (key is None or r["key"] == key)
            ]
            if not found:
                return None
            handle = self.handle(found[-1])
            state: dict[str, Any] = await handle.query("state")
            if state["step"] != step:
                return None
            if events_seen is not None and state["events_seen"] != events_seen:
                return None
            return state if await idle(handle) else None

        return await eventually(there, timeout=timeout)

    async def skip(
        self,
        user: str,
        delta: timedelta,
        *,
        journey: str | None = None,
        key: str | None = None,
    ) -> None:
        """Move the clock of the user's open run (of `journey`, for `key`) `delta` ahead
        (server-side time skipping), once the run is idle: its timers due on the way fire
        and the worker handles them before this returns."""
        runs = [
            r
            for r in await self.runs(user)
            if r["status"] == "open"
            and (journey is None or r["journey"] == journey)
            and (key is None or r["key"] == key)
        ]
        assert runs, f"{user} has no open run to move on"
        handle = self.handle(runs[-1])
        await eventually(lambda: idle(handle))
        await timeskip.fast_forward(
            self.client, runs[-1]["workflow_id"], delta, max_wait=timedelta(seconds=DEADLINE)
        )


async def sent(s: Stack, user: str, count: int) -> list[dict[str, Any]] | None:
    """The user's sent messages once there are at least `count` (a probe for `eventually`)."""
    rows = [m for m in await s.messages(user) if m["status"] == "sent"]
    return rows if len(rows) >= count else None
