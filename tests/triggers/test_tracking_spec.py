"""Segment's tracking spec as Nudge reads it: dedupe per user, Segment's timestamps, the
profile facts in `context`, `writeKey` in the body, compressed bodies and their limits, and
an anonymous visitor merged into the known user."""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import select
from temporalio.client import Client

from engine.store.keys import create_key
from engine.store.models import Consent, Device, Event, JourneyRun, User
from schemas.common import KeyScope, RunStatus
from tests.harness import Stack
from tests.journeys import TEST_JOURNEYS


def stack(url: str, client: Client, task_queue: str) -> Stack:
    return Stack(database_url=url, client=client, task_queue=task_queue, journeys=TEST_JOURNEYS)


async def _events(s: Stack, user: str) -> list[Event]:
    async with s.context.sessions() as db:
        found = await db.scalar(select(User.id).where(User.external_id == user))
        return list(
            await db.scalars(select(Event).where(Event.user_id == found).order_by(Event.id))
        )


async def test_message_ids_deduplicate_per_user(
    database_url: str, temporal_client: Client, task_queue: str
) -> None:
    async with stack(database_url, temporal_client, task_queue) as s:
        for user in ("ann", "bob", "ann"):
            await s.track(user, "Viewed", messageId="same-id")
        assert len(await _events(s, "ann")) == 1  # ann's retry is ignored
        assert len(await _events(s, "bob")) == 1  # bob's event is not ann's


async def test_timestamps_as_segment_computes_them(
    database_url: str, temporal_client: Client, task_queue: str
) -> None:
    async with stack(database_url, temporal_client, task_queue) as s:
        # The client's clock runs 1 h fast: the event happened 10 s before it was sent.
        fast = datetime.now(UTC) + timedelta(hours=1)
        await s.call(
            "POST",
            "/v1/batch",
            {
                "sentAt": fast.isoformat(),
                "batch": [
                    {
                        "type": "track",
                        "userId": "cal",
                        "event": "Skewed",
                        "timestamp": (fast - timedelta(seconds=10)).isoformat(),
                    },
                ],
            },
        )
        # No offset: read as UTC (and no sentAt: taken as it is).
        await s.track("cal", "Naive", timestamp="2026-05-01T12:00:00")
        skewed, naive = await _events(s, "cal")
        assert abs(skewed.received_at - timedelta(seconds=10) - skewed.timestamp) < timedelta(
            seconds=1
        )
        assert skewed.original_timestamp == fast - timedelta(seconds=10)
        assert naive.timestamp == datetime(2026, 5, 1, 12, tzinfo=UTC)
        bad = await s.http.post(
            "/v1/track",
            json={"userId": "cal", "event": "Old", "timestamp": "0001-01-01T00:00:00+01:00"},
        )
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "timestamp"


async def test_context_fills_an_empty_profile_and_never_overwrites(
    database_url: str, temporal_client: Client, task_queue: str
) -> None:
    async with stack(database_url, temporal_client, task_queue) as s:
        context = {"timezone": "Asia/Tokyo", "locale": "ja-JP", "ip": "203.0.113.9"}
        await s.track("kei", "Opened", context=context)
        await s.track("kei", "Opened", context={"timezone": "Europe/Paris", "locale": "xx_bad!"})
        user = await s.call("GET", "/v1/users/kei")
        assert (user["timezone"], user["locale"]) == ("Asia/Tokyo", "ja-JP")
        assert user["attributes"]["ip"] == "203.0.113.9"


async def test_write_key_in_the_body_and_compressed_bodies(
    postgres_url: str, temporal_client: Client, task_queue: str
) -> None:
    async with stack(postgres_url, temporal_client, task_queue) as s:
        async with s.context.sessions() as db:
            key = await create_key(db, name="app", scope=KeyScope.SOURCE)
            await db.commit()
        call = {"userId": "gil", "event": "Zipped", "writeKey": key}
        for encoding, body in (
            ("gzip", gzip.compress(json.dumps(call).encode())),
            ("deflate", zlib.compress(json.dumps({**call, "event": "Deflated"}).encode())),
        ):
            async with httpx.AsyncClient(  # no Authorization header: the key is in the body
                transport=httpx.ASGITransport(app=s.app), base_url="http://nudge.test"
            ) as keyless:
                answer = await keyless.post(
                    "/v1/track",
                    content=body,
                    headers={"content-type": "application/json", "content-encoding": encoding},
                )
            assert answer.status_code == 200, answer.text
        assert [e.name for e in await _events(s, "gil")] == ["Zipped", "Deflated"]
        # A small body that inflates past the limit (a "zip bomb") is refused, read or not.
        bomb = gzip.compress(json.dumps({**call, "properties": {"x": "a" * 600_000}}).encode())
        refused = await s.http.post(
            "/v1/batch",
            content=bomb,
            headers={"content-type": "application/json", "content-encoding": "gzip"},
        )
        assert refused.status_code == 413 and refused.json()["code"] == "too-large"
        broken = await s.http.post(
            "/v1/track",
            content=b"not gzip at all",
            headers={"content-type": "application/json", "content-encoding": "gzip"},
        )
        assert broken.status_code == 400

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(40):
                yield b'{"userId": "gil", "event": "Big", "properties": {"x": "' + b"a" * 1000
            yield b'"}}'

        chunked = await s.http.post(
            "/v1/track", content=chunks(), headers={"content-type": "application/json"}
        )
        assert chunked.status_code == 413  # no Content-Length: the bytes read are counted


async def test_an_anonymous_visitor_is_merged_into_the_known_user(
    postgres_url: str, temporal_client: Client, task_queue: str
) -> None:
    async with stack(postgres_url, temporal_client, task_queue) as s:
        # Before logging in: an anonymous visitor with a device, consent and an open run.
        await s.call("POST", "/v1/track", {"anonymousId": "v-1", "event": "Viewed"})
        await s.call(
            "POST",
            "/v1/track",
            {"anonymousId": "v-1", "event": "Seq Start", "messageId": "start-1"},
        )
        anon = await s.call("GET", "/v1/users/anonymous:v-1")
        await s.device("anonymous:v-1", token="anon-device")
        await s.routed("anonymous:v-1")
        [before] = await s.runs("anonymous:v-1")
        assert before["status"] == "open"
        # Logging in: identify with both ids.
        await s.call(
            "POST",
            "/v1/identify",
            {"userId": "vic", "anonymousId": "v-1", "traits": {"plan": "pro"}},
        )
        vic = await s.call("GET", "/v1/users/vic")
        names = [e.name for e in await _events(s, "vic")]
        assert names[:2] == ["Viewed", "Seq Start"] and "Identify" in names
        async with s.context.sessions() as db:
            devices = list(await db.scalars(select(Device).where(Device.user_id == vic["uid"])))
            consents = list(await db.scalars(select(Consent).where(Consent.user_id == vic["uid"])))
            runs = list(
                await db.scalars(select(JourneyRun).where(JourneyRun.user_id == vic["uid"]))
            )
        assert [d.token for d in devices] == ["anon-device"] and consents
        assert [(r.status, r.outcome) for r in runs] == [(RunStatus.TERMINATED, "merged")]
        # Later calls under the anonymous id land on the known user.
        await s.call("POST", "/v1/track", {"anonymousId": "v-1", "event": "Again"})
        assert (await _events(s, "vic"))[-1].name == "Again"
        assert (await s.call("GET", "/v1/users/anonymous:v-1"))["uid"] == vic["uid"] != anon["uid"]
        alias = await s.call("POST", "/v1/alias", {"userId": "vic", "previousId": "old-account"})
        assert alias["success"]  # an unknown previous id merges nothing and fails nothing


async def test_ids_merged_into_an_erased_user_are_erased_with_them(
    postgres_url: str, temporal_client: Client, task_queue: str
) -> None:
    async with stack(postgres_url, temporal_client, task_queue) as s:
        await s.call("POST", "/v1/identify", {"userId": "old-id", "traits": {"plan": "pro"}})
        await s.call("POST", "/v1/alias", {"userId": "new-id", "previousId": "old-id"})
        assert (await s.call("GET", "/v1/users/old-id"))["id"] == "new-id"
        await s.call("DELETE", "/v1/users/new-id")
        # The old id was the same person: it is gone with them, not a way back to the row.
        gone = await s.http.get("/v1/users/old-id")
        assert gone.status_code == 404, gone.text
        fresh = await s.call("PUT", "/v1/users/old-id", {"attributes": {"plan": "free"}})
        assert fresh["id"] == "old-id" and fresh["attributes"] == {"plan": "free"}
