"""The product, in-process, on real parts: the API (through ASGI), the router and a worker,
on a real database and the Temporal dev server. Tests speak HTTP to it."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx
from temporalio.client import Client

from engine.app.journeys import shipped_journeys, template_store
from engine.app.router import build_router
from engine.app.worker import build_worker
from engine.channels.console import ConsoleProvider
from engine.channels.registry import Providers
from engine.config.nudge_toml import NudgeConfig
from engine.config.settings import Settings
from engine.context import Context
from engine.journey import Journeys
from engine.store.keys import create_key
from triggers.api.app import create_app

TEST_TEMPLATES = Path(__file__).parent / "templates"
T = TypeVar("T")


class Stack:
    """`async with Stack(...) as stack:` runs API + router + worker until the block ends."""

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
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Stack:
        self.context = await Context.open(self.settings, config=self.config)
        self._stack.push_async_callback(self.context.close)
        async with self.context.sessions() as db:
            self.key = await create_key(db, name="test")
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
        self.worker = build_worker(
            self.client,
            self.context,
            providers=self.providers,
            journeys=self.journeys,
            templates=template_store(TEST_TEMPLATES),
        )
        await self._stack.enter_async_context(self.worker)

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

    async def wait_closed(
        self, user: str, *, count: int = 1, timeout: float = 20
    ) -> list[dict[str, Any]]:
        """Wait until `count` runs of the user have ended; returns all runs."""

        async def closed() -> list[dict[str, Any]] | None:
            runs = await self.runs(user)
            return runs if sum(r["status"] != "open" for r in runs) >= count else None

        return await eventually(closed, timeout=timeout)


async def sent(s: Stack, user: str, count: int) -> list[dict[str, Any]] | None:
    """The user's sent messages once there are at least `count` (a probe for `eventually`)."""
    rows = [m for m in await s.messages(user) if m["status"] == "sent"]
    return rows if len(rows) >= count else None


async def eventually(
    probe: Callable[[], Awaitable[T | None]], *, timeout: float = 15, interval: float = 0.1
) -> T:
    """Poll `probe` until it returns something truthy; fail after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: T | None = None
    while loop.time() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last: {last!r})")
