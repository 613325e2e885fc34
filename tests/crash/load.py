"""The load: users with devices, and their events, sent through the public HTTP API at a
steady rate, retried the way a product service retries (Segment's libraries do the same).

Each user registers one device (some two), then sends `Product Viewed` (routed, starts
nothing) and `Cart Updated` with a small cart (starts `abandoned_cart`, which pushes once to
every device). Every call carries its own `messageId`; a retry after a connection error, a
timeout, 5xx or 429 resends the same body, so the API's per-(user, messageId) dedupe is what
keeps a retried event single. An event counts as accepted once a 2xx answer arrived.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

log = logging.getLogger("crash")

RETRYABLE = frozenset({429, 500, 502, 503, 504})
SLOW_SHARE = 0.1
"""Share of devices whose token starts with `slow`: the APNs peer answers them after a
delay, so some kills land while a request is at the provider."""


@dataclass(frozen=True)
class Plan:
    """One user: device tokens, then events as (messageId, name, properties)."""

    user: str
    tokens: tuple[str, ...]
    events: tuple[tuple[str, str, dict[str, Any]], ...]


def plans(count: int, *, seed: int) -> list[Plan]:
    """`count` users (deterministic for a seed): a fifth with two devices."""
    rng = random.Random(seed)
    made = []
    for i in range(count):
        user = f"crash-{seed}-{i:05d}"
        tokens = tuple(
            f"{'slow' if rng.random() < SLOW_SHARE else 'tok'}-{seed}-{i:05d}-{d}"
            for d in range(2 if rng.random() < 0.2 else 1)
        )
        events = (
            (f"{user}-view", "Product Viewed", {"sku": f"sku-{rng.randrange(1000)}"}),
            (f"{user}-cart", "Cart Updated", {"value": 5, "item_count": rng.randrange(1, 4)}),
        )
        made.append(Plan(user, tokens, events))
    return made


@dataclass
class Driver:
    """Sends every plan: user `i` starts `i / rate` seconds after the first, at most
    `concurrency` users in flight (a backlog builds while the API is down)."""

    url: str
    key: str
    plans: list[Plan]
    rate: float
    concurrency: int = 64
    give_up: float = 900.0
    """Seconds one call is retried before the driver records it as not accepted."""
    started: int = 0
    accepted: dict[str, str] = field(default_factory=dict)
    """messageId -> user, for every event answered 2xx."""
    devices: dict[str, list[str]] = field(default_factory=dict)
    """user -> device tokens answered 2xx."""
    answers: Counter[str] = field(default_factory=Counter)
    """Every answer or error seen, by status code or exception name."""
    abandoned: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    _waiters: list[tuple[int, asyncio.Event]] = field(default_factory=list)

    def when_started(self, users: int) -> asyncio.Event:
        """An event set once `users` users have started (or the load has ended)."""
        reached = asyncio.Event()
        self._waiters.append((users, reached))
        if self.started >= users:
            reached.set()
        return reached

    def _progress(self, started: int) -> None:
        self.started = started
        for users, reached in self._waiters:
            if started >= users:
                reached.set()

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            for _, reached in self._waiters:
                reached.set()  # nobody waits for a kill point the load never reaches

    async def _run(self) -> None:
        limit = asyncio.Semaphore(self.concurrency)
        loop = asyncio.get_running_loop()
        begin = loop.time()
        timeout = httpx.Timeout(30.0, connect=10.0)
        limits = httpx.Limits(max_connections=self.concurrency)
        async with httpx.AsyncClient(
            base_url=self.url, auth=(self.key, ""), timeout=timeout, limits=limits
        ) as http:

            async def one(plan: Plan) -> None:
                async with limit:
                    await self._user(http, plan)

            tasks = []
            for i, plan in enumerate(self.plans):
                delay = begin + i / self.rate - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                self._progress(i + 1)
                tasks.append(asyncio.create_task(one(plan)))
            await asyncio.gather(*tasks)

    async def _user(self, http: httpx.AsyncClient, plan: Plan) -> None:
        for token in plan.tokens:
            device = {"platform": "ios", "token": token}
            if await self._call(http, f"/v1/users/{plan.user}/devices", device):
                self.devices.setdefault(plan.user, []).append(token)
        for message_id, name, properties in plan.events:
            body: dict[str, Any] = {"userId": plan.user, "event": name, "properties": properties}
            body["messageId"] = message_id
            if await self._call(http, "/v1/track", body):
                self.accepted[message_id] = plan.user

    async def _call(self, http: httpx.AsyncClient, path: str, body: dict[str, Any]) -> bool:
        """POST until a 2xx (True), a refusal that retrying cannot fix, or `give_up`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.give_up
        backoff = 0.25
        while True:
            wait = backoff
            try:
                answer = await http.post(path, json=body)
            except httpx.TransportError as exc:
                self.answers[type(exc).__name__] += 1
            else:
                self.answers[str(answer.status_code)] += 1
                if answer.is_success:
                    return True
                if answer.status_code not in RETRYABLE:
                    self.rejected.append(f"{path} {answer.status_code} {answer.text[:200]}")
                    return False
                after = answer.headers.get("retry-after", "")
                if after.isdigit():
                    wait = min(float(after), 5.0)
            if loop.time() + wait > deadline:
                self.abandoned.append(path)
                log.error("gave up on %s after %.0fs", path, self.give_up)
                return False
            await asyncio.sleep(wait)
            backoff = min(backoff * 2, 5.0)
