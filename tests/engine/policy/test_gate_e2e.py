"""The send gate through the public API, on Postgres and the Temporal dev server."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from temporalio.client import Client

from engine.config.nudge_toml import NudgeConfig
from tests.harness import Stack, eventually, sent
from tests.journeys import TEST_JOURNEYS


def stack(url: str, client: Client, queue: str, config: dict[str, Any]) -> Stack:
    return Stack(
        database_url=url,
        client=client,
        task_queue=queue,
        journeys=TEST_JOURNEYS,
        config=NudgeConfig.model_validate(config),
    )


def quiet_window_now(zone: str, *, ends_in: float) -> tuple[dict[str, str], datetime]:
    """A quiet window in `zone` that began a minute ago and ends `ends_in` seconds from now."""
    local = datetime.now(ZoneInfo(zone))
    start = (local - timedelta(minutes=1)).time().replace(microsecond=0)
    end_local = (local + timedelta(seconds=ends_in)).replace(microsecond=0)
    window = {"start": start.isoformat(), "end": end_local.time().isoformat()}
    return window, end_local.astimezone(UTC)


async def _final(s: Stack, user: str) -> list[dict[str, Any]]:
    await s.wait_closed(user, timeout=30)
    return await s.messages(user)


@pytest.mark.parametrize("action", ["defer", "drop"])
async def test_quiet_hours_in_the_users_zone(
    postgres_url: str, temporal_client: Client, task_queue: str, action: str
) -> None:
    window, end = quiet_window_now("Asia/Tokyo", ends_in=4)
    config = {"quiet_hours": {**window, "action": action}}
    async with stack(postgres_url, temporal_client, task_queue, config) as s:
        await s.profile("yuki", timezone="Asia/Tokyo")
        await s.device("yuki")
        await s.track("yuki", "Cart Touched", {"cart_id": "c1"})
        messages = await _final(s, "yuki")
        assert len(messages) == 1
        if action == "drop":
            assert (messages[0]["status"], messages[0]["reason"]) == (
                "suppressed",
                "quiet_hours_dropped",
            )
            assert s.console.sent == []
        else:
            assert messages[0]["status"] == "sent"
            sent_at = datetime.fromisoformat(messages[0]["sent_at"])
            assert end <= sent_at < end + timedelta(seconds=5), (end, sent_at)
            assert (await s.runs("yuki"))[0]["outcome"] == "sent:None"


async def test_quiet_hours_follow_the_users_zone_not_the_servers(
    postgres_url: str, temporal_client: Client, task_queue: str
) -> None:
    # Quiet now in Tokyo; a user in New York is twelve-odd hours away and is not held.
    window, _ = quiet_window_now("Asia/Tokyo", ends_in=60)
    config = {"quiet_hours": {**window, "action": "drop"}}
    async with stack(postgres_url, temporal_client, task_queue, config) as s:
        await s.profile("nyc", timezone="America/New_York")
        await s.device("nyc")
        await s.track("nyc", "Cart Touched", {"cart_id": "c1"})
        assert [m["status"] for m in await _final(s, "nyc")] == ["sent"]


async def test_transactional_sends_bypass_quiet_hours_and_caps(
    postgres_url: str, temporal_client: Client, task_queue: str
) -> None:
    window, _ = quiet_window_now("UTC", ends_in=60)
    config = {
        "quiet_hours": {**window, "action": "drop"},
        "caps": [{"channel": "any", "limit": 0, "per": "1h"}],
        "journeys": {"t_keyed": {"transactional": True}},
    }
    async with stack(postgres_url, temporal_client, task_queue, config) as s:
        await s.device("tia")
        await s.track("tia", "Cart Touched", {"cart_id": "c1"})
        assert [m["status"] for m in await _final(s, "tia")] == ["sent"]


@pytest.mark.parametrize("limit", [1, 3])
async def test_concurrent_journeys_never_exceed_a_cap(
    postgres_url: str, temporal_client: Client, task_queue: str, limit: int
) -> None:
    config = {"caps": [{"channel": "push", "limit": limit, "per": "1h"}]}
    async with stack(postgres_url, temporal_client, task_queue, config) as s:
        await s.device("max")
        batch = [
            {
                "type": "track",
                "userId": "max",
                "event": "Cart Touched",
                "properties": {"cart_id": f"cart-{i}"},
            }
            for i in range(50)
        ]
        await s.call("POST", "/v1/batch", {"batch": batch})
        await s.wait_closed("max", count=50, timeout=90)
        messages = await s.messages("max")
        statuses = sorted((m["status"], m["reason"]) for m in messages)
        assert statuses.count(("sent", None)) == limit
        assert statuses.count(("suppressed", "capped")) == 50 - limit
        assert len(s.console.sent) == limit


async def test_cap_window_rolls_and_defer_waits_for_a_free_slot(
    postgres_url: str, temporal_client: Client, task_queue: str
) -> None:
    config = {"caps": [{"channel": "push", "limit": 1, "per": "3s", "on_capped": "defer"}]}
    async with stack(postgres_url, temporal_client, task_queue, config) as s:
        await s.device("dee")
        await s.track("dee", "Cart Touched", {"cart_id": "a"})
        await eventually(lambda: sent(s, "dee", 1))
        await s.track("dee", "Cart Touched", {"cart_id": "b"})
        await s.wait_closed("dee", count=2, timeout=30)
        stamps = [datetime.fromisoformat(m["sent_at"]) for m in await s.messages("dee")]
        assert len(stamps) == 2 and stamps[1] - stamps[0] >= timedelta(seconds=3)


async def test_opt_out_while_a_run_waits_stops_the_send(
    postgres_url: str, temporal_client: Client, task_queue: str
) -> None:
    config = {"journeys": {"t_keyed": {"hold": "3s", "channel": "sms"}}}
    async with stack(postgres_url, temporal_client, task_queue, config) as s:
        await s.profile("sam", phone="+14155550123")
        await s.consent("sam", "sms", "subscribed")
        await s.track("sam", "Cart Touched", {"cart_id": "c1"})
        await eventually(lambda: s.runs("sam"))
        await s.consent("sam", "sms", "unsubscribed")
        messages = await _final(s, "sam")
        assert [(m["status"], m["reason"]) for m in messages] == [("suppressed", "no_consent")]
        assert (await s.runs("sam"))[0]["outcome"] == "suppressed:no_consent"
        assert s.console.sent == []


async def test_marketing_needs_subscribed_transactional_needs_no_opt_out(
    postgres_url: str, temporal_client: Client, task_queue: str
) -> None:
    config = {"journeys": {"t_keyed": {"channel": "sms"}}}
    async with stack(postgres_url, temporal_client, task_queue, config) as s:
        await s.profile("uma", phone="+14155550124")  # SMS consent unknown
        await s.track("uma", "Cart Touched", {"cart_id": "c1"})
        assert [m["reason"] for m in await _final(s, "uma")] == ["no_consent"]
        # Device registration is the OS-level push opt-in: marketing push is allowed.
        log = await s.call("GET", "/v1/users/uma/consent/sms/log")
        assert log["items"] == []


async def test_consent_api_validates_and_keeps_an_append_only_log(
    postgres_url: str, temporal_client: Client, task_queue: str
) -> None:
    async with stack(postgres_url, temporal_client, task_queue, {}) as s:
        await s.consent("ida", "sms", "subscribed")
        bad = await s.http.put("/v1/users/ida/consent/sms", json={"state": "maybe"})
        assert bad.status_code == 422
        assert bad.headers["content-type"] == "application/problem+json"
        assert bad.json()["errors"][0]["field"] == "state"
        unknown = await s.http.put("/v1/users/ida/consent/fax", json={"state": "subscribed"})
        assert unknown.status_code == 404
        await s.call(
            "PUT",
            "/v1/users/ida/consent/sms",
            {"topic": "all", "state": "unsubscribed", "source": "sms_keyword", "evidence": "STOP"},
        )
        current = await s.call("GET", "/v1/users/ida/consent/sms")
        assert current["topics"]["marketing"] == "unsubscribed"
        log = (await s.call("GET", "/v1/users/ida/consent/sms/log"))["items"]
        assert [e["state"] for e in log] == ["subscribed", "unsubscribed"]
        assert log[1]["evidence"] == "STOP"


async def test_gdpr_export_and_erasure(
    postgres_url: str, temporal_client: Client, task_queue: str
) -> None:
    config = {"journeys": {"t_keyed": {"hold": "30s"}}}
    async with stack(postgres_url, temporal_client, task_queue, config) as s:
        await s.profile("zoe", phone="+14155550125", email="zoe@example.com")
        await s.device("zoe")
        await s.consent("zoe", "sms", "subscribed")
        await s.track("zoe", "Cart Touched", {"cart_id": "c9", "note": "zoe's cart"})
        runs = await eventually(lambda: s.runs("zoe"))
        exported = await s.call("GET", "/v1/users/zoe/export")
        assert exported["user"]["phone"] == "+14155550125"
        assert exported["events"][0]["properties"]["note"] == "zoe's cart"
        assert len(exported["devices"]) == 1
        erased = await s.call("DELETE", "/v1/users/zoe")
        assert erased["runs_ended"] == 1
        assert (await s.http.get("/v1/users/zoe")).status_code == 404
        handle = temporal_client.get_workflow_handle(runs[0]["workflow_id"])
        assert (await handle.describe()).status.name == "TERMINATED"  # type: ignore[union-attr]
        async with s.context.sessions() as db:
            from sqlalchemy import select

            from engine.store.models import Consent, Event, User

            user = (await db.scalars(select(User))).one()
            assert user.phone is None and user.email is None and user.erased_hash
            assert (await db.scalars(select(Event))).one().properties == {}
            assert len((await db.scalars(select(Consent))).all()) >= 1  # evidence survives


async def test_rate_limit_queues_a_burst(
    postgres_url: str, temporal_client: Client, task_queue: str
) -> None:
    """A provider connection limited to 5 messages/s: a burst of 10 queues, none fails."""
    async with stack(postgres_url, temporal_client, task_queue, {}) as s:
        s.providers._rates[s.console.name] = 5.0
        started = asyncio.get_running_loop().time()
        for i in range(10):
            await s.device(f"r{i}")
            await s.track(f"r{i}", "Cart Touched", {"cart_id": "c"})
        for i in range(10):
            await s.wait_closed(f"r{i}", timeout=30)
        elapsed = asyncio.get_running_loop().time() - started
        assert len(s.console.sent) == 10
        assert elapsed >= 1.0
