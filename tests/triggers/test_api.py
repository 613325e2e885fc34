"""The HTTP API: auth, Segment's tracking spec, dedup, validation as problem details."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import func, select
from temporalio.client import Client

from engine.store.models import Event
from tests.harness import Stack


@pytest.fixture
async def api(postgres_url: str, temporal_client: Client, task_queue: str) -> AsyncIterator[Stack]:
    async with Stack(
        database_url=postgres_url, client=temporal_client, task_queue=task_queue, run_worker=False
    ) as stack:
        yield stack


async def event_count(s: Stack) -> int:
    async with s.context.sessions() as db:
        return int(await db.scalar(select(func.count()).select_from(Event)) or 0)


async def test_write_key_as_basic_username_or_bearer(api: Stack) -> None:
    body = {"userId": "u1", "event": "Signed Up"}
    bare = httpx.AsyncClient(transport=httpx.ASGITransport(app=api.app), base_url="http://t")
    anonymous = await bare.post("/v1/track", json=body)
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"] == "application/problem+json"
    assert anonymous.json()["type"] == "urn:nudge:problem:unauthorized"
    wrong = await api.http.post("/v1/track", json=body, auth=("nk_wrong", ""))
    assert wrong.status_code == 401
    basic = base64.b64encode(f"{api.key}:".encode()).decode()
    ok = await bare.post("/v1/track", json=body, headers={"Authorization": f"Basic {basic}"})
    assert ok.status_code == 200
    bearer = await bare.post("/v1/track", json=body, headers={"Authorization": f"Bearer {api.key}"})
    assert bearer.status_code == 200
    assert (await bare.get("/healthz")).json() == {"status": "ok"}
    await bare.aclose()


async def test_repeated_message_id_is_accepted_and_ignored(api: Stack) -> None:
    body = {"userId": "u2", "event": "Cart Updated", "messageId": "m-1", "properties": {"a": 1}}
    first = await api.call("POST", "/v1/track", body)
    again = await api.call("POST", "/v1/track", {**body, "properties": {"a": 2}})
    assert first["messageIds"] == again["messageIds"] == ["m-1"]
    assert (first["duplicates"], again["duplicates"]) == (0, 1)
    assert await event_count(api) == 1


async def test_identify_sets_the_profile_and_validates_it(api: Stack) -> None:
    await api.call(
        "POST",
        "/v1/identify",
        {
            "userId": "u3",
            "traits": {"timezone": "Asia/Tokyo", "phone": "+81 90-1234-5678", "first_name": "Kei"},
        },
    )
    profile = await api.call("GET", "/v1/users/u3")
    assert (profile["timezone"], profile["phone"]) == ("Asia/Tokyo", "+819012345678")
    assert profile["attributes"] == {"first_name": "Kei"}
    assert profile["uid"].startswith("u_")
    bad = await api.http.post(
        "/v1/identify", json={"userId": "u3", "traits": {"timezone": "Mars/Olympus"}}
    )
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "timezone"
    phone = await api.http.put("/v1/users/u3", json={"phone": "12"})
    assert phone.status_code == 422 and phone.json()["errors"][0]["field"] == "phone"
    assert (await api.call("GET", "/v1/users/u3"))["timezone"] == "Asia/Tokyo"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"event": "X"}, "body"),  # no userId nor anonymousId
        ({"userId": "u", "event": ""}, "event"),
        ({"userId": "u"}, "event"),
        ({"userId": "u", "event": "X", "timestamp": "yesterday"}, "timestamp"),
        ({"userId": "u", "event": "X", "properties": [1, 2]}, "properties"),
    ],
)
async def test_invalid_track_bodies_name_the_field(
    api: Stack, body: dict[str, object], field: str
) -> None:
    response = await api.http.post("/v1/track", json=body)
    assert response.status_code == 422
    problem = response.json()
    assert problem["type"] == "urn:nudge:problem:invalid-body"
    assert problem["status"] == 422
    assert field in [e["field"] for e in problem["errors"]]
    assert await event_count(api) == 0


async def test_not_json_is_a_problem_too(api: Stack) -> None:
    response = await api.http.post(
        "/v1/track", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


async def test_a_batch_stores_its_good_items_and_names_the_bad_ones(api: Stack) -> None:
    """As Segment does: one bad or unknown item never costs the rest of the batch."""
    batch = {
        "batch": [
            {"type": "track", "userId": "u4", "event": "A"},
            {"type": "track", "userId": "u4"},
            {"type": "page", "userId": "u4", "name": "Home"},
            {"type": "identify", "userId": "u4", "traits": {"plan": "pro"}},
            {"type": "flush", "userId": "u4"},
            {"type": "identify", "userId": "u4", "traits": {"timezone": "Mars/Olympus"}},
        ]
    }
    response = await api.http.post("/v1/batch", json=batch)
    assert response.status_code == 200
    body = response.json()
    assert len(body["messageIds"]) == 3 and body["skipped"] == 1
    assert [(r["index"], r["errors"][0]["field"]) for r in body["rejected"]] == [
        (1, "event"),
        (5, "timezone"),
    ]
    assert await event_count(api) == 3
    nothing = await api.http.post("/v1/batch", json={"batch": [batch["batch"][1]]})
    assert nothing.status_code == 400
    problem = nothing.json()
    assert problem["type"] == "urn:nudge:problem:invalid-batch"
    assert problem["code"] == "invalid-batch" and problem["message"]  # what Segment clients log
    assert problem["errors"][0]["field"] == "batch[0].event"
    assert await event_count(api) == 3


async def test_messages_list_is_paginated(api: Stack) -> None:
    from datetime import UTC, datetime, timedelta

    from engine import ids
    from engine.store.models import Message
    from engine.store.users import ensure_user

    async with api.context.sessions() as db:
        user = await ensure_user(db, external_id="u5")
        start = datetime.now(UTC)
        for i in range(5):
            key = f"k/{i}"
            db.add(
                Message(
                    id=ids.message_id(key),
                    idempotency_key=key,
                    user_id=user.id,
                    channel="push",
                    status="sent",
                    attempts=1,
                    created_at=start + timedelta(seconds=i),
                    updated_at=start + timedelta(seconds=i),
                )
            )
        await db.commit()
    page = await api.call("GET", "/v1/messages?user_id=u5&limit=2")
    seen = [m["id"] for m in page["items"]]
    while page["next"]:
        page = await api.call("GET", f"/v1/messages?user_id=u5&limit=2&cursor={page['next']}")
        seen += [m["id"] for m in page["items"]]
    assert len(seen) == len(set(seen)) == 5
    assert page["items"][-1]["user_id"] == "u5"
    assert (await api.http.get("/v1/messages?cursor=%%%")).status_code == 400
    assert (await api.http.get("/v1/messages/m_nope")).status_code == 404


async def test_openapi_document(api: Stack) -> None:
    document = (await api.http.get("/openapi.json")).json()
    for path in (
        "/v1/track",
        "/v1/identify",
        "/v1/batch",
        "/v1/users/{user_id}/devices",
        "/v1/messages",
        "/healthz",
    ):
        assert path in document["paths"]


async def test_unstorable_input_is_a_4xx_not_a_500(api: Stack) -> None:
    nul = await api.http.post(
        "/v1/track", json={"userId": "u6", "event": "X", "properties": {"a": "b\u0000c"}}
    )
    assert nul.status_code == 422
    infinite = await api.http.post(
        "/v1/track",
        content=b'{"userId": "u6", "event": "X", "properties": {"n": 1e400}}',
        headers={"content-type": "application/json"},
    )
    assert infinite.status_code == 422
    batch = await api.http.post(
        "/v1/batch",
        json={"batch": [{"type": "track", "userId": "u6", "event": "X", "context": "web"}]},
    )
    assert batch.status_code == 400
    assert batch.json()["errors"][0]["field"] == "batch[0].context"
    huge = await api.http.post(
        "/v1/track", json={"userId": "u6", "event": "X", "properties": {"blob": "x" * 40_000}}
    )
    assert huge.status_code == 413 and huge.json()["type"] == "urn:nudge:problem:too-large"
    naive = base64.urlsafe_b64encode(b"2026-01-01T00:00:00|m_1").decode()
    assert (await api.http.get(f"/v1/messages?cursor={naive}")).status_code == 400
    assert await event_count(api) == 0
