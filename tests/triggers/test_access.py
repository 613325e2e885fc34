"""Safe to expose: a source key built into an app can only send data in; read and admin keys
do the rest; revoking is immediate; rate limits answer 429 with Retry-After; guessing keys
is throttled; admin actions are audited."""

from __future__ import annotations

import httpx
from sqlalchemy import select
from temporalio.client import Client

from engine.config.nudge_toml import NudgeConfig
from engine.store.keys import create_key, revoke
from engine.store.models import AuditEntry
from schemas.common import KeyScope
from tests.harness import Stack
from tests.journeys import TEST_JOURNEYS


def stack(url: str, client: Client, task_queue: str, **limits: str) -> Stack:
    config = NudgeConfig.model_validate({"api": {"rate_limits": limits}}) if limits else None
    return Stack(
        database_url=url,
        client=client,
        task_queue=task_queue,
        journeys=TEST_JOURNEYS,
        config=config,
    )


def as_key(s: Stack, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=s.app), base_url="http://nudge.test", auth=(key, "")
    )


async def _key(s: Stack, scope: KeyScope, name: str) -> str:
    async with s.context.sessions() as db:
        key = await create_key(db, name=name, scope=scope)
        await db.commit()
    return key


async def test_each_scope_reaches_only_its_routes(
    postgres_url: str, temporal_client: Client, task_queue: str
) -> None:
    async with stack(postgres_url, temporal_client, task_queue) as s:
        await s.profile("una", timezone="UTC")
        source = as_key(s, await _key(s, KeyScope.SOURCE, "app"))
        read = as_key(s, await _key(s, KeyScope.READ, "dashboard"))
        async with source, read:
            assert (await source.post("/v1/track", json={"userId": "una", "event": "A"})).is_success
            device = {"platform": "ios", "token": "t-una"}
            assert (await source.post("/v1/users/una/devices", json=device)).status_code == 201
            for method, path in (
                ("GET", "/v1/messages"),
                ("GET", "/v1/users/una"),
                ("GET", "/v1/users/una/export"),
                ("DELETE", "/v1/users/una"),
                ("PUT", "/v1/users/una/consent/sms"),
            ):
                answer = await source.request(method, path, json={"state": "subscribed"})
                assert answer.status_code == 403, (method, path, answer.text)
                assert answer.json()["type"] == "urn:nudge:problem:forbidden"
            assert (await read.get("/v1/messages")).is_success
            assert (await read.get("/v1/users/una")).is_success
            assert (
                await read.post("/v1/track", json={"userId": "una", "event": "B"})
            ).status_code == 403
            assert (await read.get("/v1/users/una/export")).status_code == 403
            assert (await read.delete("/v1/users/una")).status_code == 403
        # The admin key (the stack's) erases; the audit log says who did.
        assert (await s.http.delete("/v1/users/una")).is_success
        async with s.context.sessions() as db:
            actions = [(a.action, a.actor) for a in await db.scalars(select(AuditEntry))]
        assert ("user.erase", "key:1:test") in actions


async def test_a_revoked_key_is_refused_at_once(
    postgres_url: str, temporal_client: Client, task_queue: str
) -> None:
    async with stack(postgres_url, temporal_client, task_queue) as s:
        key = await _key(s, KeyScope.SOURCE, "leaked")
        async with as_key(s, key) as leaked:
            assert (await leaked.post("/v1/track", json={"userId": "x", "event": "A"})).is_success
            async with s.context.sessions() as db:
                await revoke(db, which="leaked")
                await db.commit()
            refused = await leaked.post("/v1/track", json={"userId": "x", "event": "A"})
            assert refused.status_code == 401


async def test_rate_limits_answer_429_with_retry_after(
    postgres_url: str, temporal_client: Client, task_queue: str
) -> None:
    async with stack(
        postgres_url, temporal_client, task_queue, per_key="5/minute", failed_auth="3/minute"
    ) as s:
        async with as_key(s, await _key(s, KeyScope.SOURCE, "app")) as app:
            answers = [
                (await app.post("/v1/track", json={"userId": "r", "event": "A"})).status_code
                for _ in range(7)
            ]
            assert answers == [200] * 5 + [429] * 2
            limited = await app.post("/v1/track", json={"userId": "r", "event": "A"})
            assert int(limited.headers["retry-after"]) >= 1
            assert limited.json()["type"] == "urn:nudge:problem:rate-limited"
        async with as_key(s, "nk_guess") as guesser:
            guesses = [(await guesser.get("/v1/messages")).status_code for _ in range(5)]
        assert guesses == [401, 401, 401, 429, 429]
        # The address is locked out for a while, even with a good key.
        assert (await s.http.get("/v1/messages")).status_code == 429
