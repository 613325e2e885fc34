"""The send gate in the database (engine.delivery.gate) through the product: quiet hours
in the user's zone and consent on the time-skipping kit (virtual nights, to the minute);
caps under concurrency, opt-outs while a run waits, GDPR and rate limits through the API,
all on Postgres. The pure decision is tests/engine/policy/test_gate.py."""

from __future__ import annotations

import asyncio
from datetime import datetime, time, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from temporalio.client import Client

from engine.config.nudge_toml import NudgeConfig
from engine.store.models import Consent, Event, User
from engine.testing.pytest_plugin import EnvFactory
from tests.journeys import TEST_JOURNEYS
from tests.journeys_keyed import TKeyed
from tests.kit import Stack, eventually, kit_templates, sent
from tests.kit.clock import next_local

NIGHT = {"start": "21:00", "end": "08:00"}


def stack(url: str, client: Client, queue: str, config: dict[str, Any]) -> Stack:
    return Stack(
        database_url=url,
        client=client,
        task_queue=queue,
        journeys=TEST_JOURNEYS,
        config=NudgeConfig.model_validate(config),
    )


async def kit(
    journey_env: EnvFactory, postgres_url: str, config: dict[str, Any], start_at: datetime
) -> Any:
    return await journey_env(
        TKeyed,
        config=NudgeConfig.model_validate(config),
        database_url=postgres_url,
        start_at=start_at,
        templates=kit_templates(),
    )


# -- quiet hours and consent, in virtual time ---------------------------------------------


@pytest.mark.parametrize("action", ["defer", "drop"])
async def test_quiet_hours_in_the_users_zone(
    journey_env: EnvFactory, postgres_url: str, action: str
) -> None:
    start = next_local("Asia/Tokyo", time(22, 0))
    env = await kit(journey_env, postgres_url, {"quiet_hours": {**NIGHT, "action": action}}, start)
    yuki = await env.user("yuki", zone="Asia/Tokyo")
    await env.emit(yuki, "Cart Touched", {"cart_id": "c1"})
    await env.advance(hours=11)
    [message] = await env.messages(yuki)
    run = await env.run(yuki, "t_keyed")
    if action == "drop":
        assert (message.status, message.reason) == ("suppressed", "quiet_hours_dropped")
        assert env.outbox.sent == []
        assert run.outcome == "suppressed:quiet_hours_dropped"
    else:
        assert message.status == "sent"
        assert message.local.date() == start.date() + timedelta(days=1)
        assert message.local_time == "08:00"
        assert run.outcome == "sent:None"


async def test_quiet_hours_follow_the_users_zone_not_the_servers(
    journey_env: EnvFactory, postgres_url: str
) -> None:
    # Midnight in Tokyo is mid-morning in New York: only the Tokyo user is held.
    start = next_local("Asia/Tokyo", time(0, 0))
    env = await kit(journey_env, postgres_url, {"quiet_hours": NIGHT}, start)
    nyc = await env.user("nyc", zone="America/New_York")
    tokyo = await env.user("tokyo", zone="Asia/Tokyo")
    for user in (nyc, tokyo):
        await env.emit(user, "Cart Touched", {"cart_id": "c1"})
    [at_once] = await env.sent(nyc)
    assert abs(at_once.at - start) < timedelta(minutes=1)
    assert await env.sent(tokyo) == []
    await env.advance(hours=9)
    [held] = await env.sent(tokyo)
    assert held.local_time == "08:00"


async def test_transactional_sends_bypass_quiet_hours_and_caps(
    journey_env: EnvFactory, postgres_url: str
) -> None:
    config = {
        "quiet_hours": {**NIGHT, "action": "drop"},
        "caps": [{"channel": "any", "limit": 0, "per": "1h"}],
        "journeys": {"t_keyed": {"transactional": True}},
    }
    env = await kit(journey_env, postgres_url, config, next_local("UTC", time(23, 0)))
    tia = await env.user("tia", consent={})  # no consent given: transactional needs none
    await env.emit(tia, "Cart Touched", {"cart_id": "c1"})
    assert [m.status for m in await env.messages(tia)] == ["sent"]


async def test_marketing_needs_subscribed_transactional_needs_no_opt_out(
    journey_env: EnvFactory, postgres_url: str
) -> None:
    config = {"journeys": {"t_keyed": {"channel": "sms"}}}
    env = await kit(journey_env, postgres_url, config, next_local("UTC", time(12, 0)))
    uma = await env.user("uma", consent={})  # SMS consent unknown
    await env.emit(uma, "Cart Touched", {"cart_id": "c1"})
    assert [(m.status, m.reason) for m in await env.messages(uma)] == [("suppressed", "no_consent")]
    sol = await env.user("sol", consent={"sms": "unsubscribed"})
    await env.emit(sol, "Cart Touched", {"cart_id": "c1"})
    assert [m.reason for m in await env.messages(sol)] == ["no_consent"]


# -- caps, through the API ------------------------------------------------------------------


@pytest.mark.parametrize("limit", [1, 3])
async def test_concurrent_journeys_never_exceed_a_cap(
    postgres_url: str, temporal_client: Client, task_queue: str, limit: int
) -> None:
    runs = 20
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
            for i in range(runs)
        ]
        await s.call("POST", "/v1/batch", {"batch": batch})
        await s.wait_closed("max", count=runs, timeout=300)
        messages = await s.messages("max")
        statuses = sorted((m["status"], m["reason"]) for m in messages)
        assert statuses.count(("sent", None)) == limit
        assert statuses.count(("suppressed", "capped")) == runs - limit
        assert len(s.console.sent) == limit


async def test_cap_window_rolls_and_defer_waits_for_a_free_slot(
    postgres_url: str, temporal_client: Client, task_queue: str
) -> None:
    window = timedelta(seconds=3)
    config = {"caps": [{"channel": "push", "limit": 1, "per": "3s", "on_capped": "defer"}]}
    async with stack(postgres_url, temporal_client, task_queue, config) as s:
        await s.device("dee")
        await s.track("dee", "Cart Touched", {"cart_id": "a"})
        await eventually(lambda: sent(s, "dee", 1))
        await s.track("dee", "Cart Touched", {"cart_id": "b"})
        runs = await s.wait_closed("dee", count=2)
        assert [r["outcome"] for r in runs] == ["sent:None", "sent:None"]  # deferred, not capped
        stamps = sorted(datetime.fromisoformat(m["sent_at"]) for m in await s.messages("dee"))
        # A cap counts a message from when it was sent, so the second waits a whole window.
        assert len(stamps) == 2 and stamps[1] - stamps[0] >= window


# -- consent and erasure while a run waits --------------------------------------------------


async def test_opt_out_while_a_run_waits_stops_the_send(
    postgres_url: str, temporal_client: Client, task_queue: str
) -> None:
    config = {"journeys": {"t_keyed": {"hold": "1h", "channel": "sms"}}}
    async with stack(postgres_url, temporal_client, task_queue, config) as s:
        await s.profile("sam", phone="+14155550123")
        await s.consent("sam", "sms", "subscribed")
        await s.track("sam", "Cart Touched", {"cart_id": "c1"})
        await s.wait_step("sam", "sleep")
        await s.consent("sam", "sms", "unsubscribed")
        await s.skip("sam", timedelta(hours=1))  # the hold ends: the send runs the gate now
        [run] = await s.wait_closed("sam")
        assert run["outcome"] == "suppressed:no_consent"
        messages = await s.messages("sam")
        assert [(m["status"], m["reason"]) for m in messages] == [("suppressed", "no_consent")]
        assert s.console.sent == []


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
    config = {"journeys": {"t_keyed": {"hold": "1h"}}}
    async with stack(postgres_url, temporal_client, task_queue, config) as s:
        await s.profile("zoe", phone="+14155550125", email="zoe@example.com")
        await s.device("zoe")
        await s.consent("zoe", "sms", "subscribed")
        await s.track("zoe", "Cart Touched", {"cart_id": "c9", "note": "zoe's cart"})
        await s.wait_step("zoe", "sleep")
        [run] = await s.runs("zoe")
        exported = await s.call("GET", "/v1/users/zoe/export")
        assert exported["user"]["phone"] == "+14155550125"
        assert exported["events"][0]["properties"]["note"] == "zoe's cart"
        assert len(exported["devices"]) == 1
        erased = await s.call("DELETE", "/v1/users/zoe")
        assert erased["runs_ended"] == 1  # the run was still holding: it is ended
        assert (await s.http.get("/v1/users/zoe")).status_code == 404
        description = await temporal_client.get_workflow_handle(run["workflow_id"]).describe()
        assert description.status is not None and description.status.name == "TERMINATED"
        async with s.context.sessions() as db:
            user = (await db.scalars(select(User))).one()
            assert user.phone is None and user.email is None and user.erased_hash
            assert (await db.scalars(select(Event))).one().properties == {}
            assert len((await db.scalars(select(Consent))).all()) >= 1  # evidence survives


# -- rate limits ----------------------------------------------------------------------------


async def test_rate_limit_queues_a_burst(
    postgres_url: str, temporal_client: Client, task_queue: str
) -> None:
    """A provider connection limited to 5 messages/s (bursts of 5): a burst of 10 queues,
    none fails, and the last one cannot go out before a second has passed."""
    async with stack(postgres_url, temporal_client, task_queue, {}) as s:
        s.providers._rates[s.console.name] = 5.0
        await s.device("rob")
        batch = [
            {
                "type": "track",
                "userId": "rob",
                "event": "Cart Touched",
                "properties": {"cart_id": c},
            }
            for c in range(10)
        ]
        started = asyncio.get_running_loop().time()
        await s.call("POST", "/v1/batch", {"batch": batch})
        await s.wait_closed("rob", count=10)
        elapsed = asyncio.get_running_loop().time() - started
        assert [m["status"] for m in await s.messages("rob")] == ["sent"] * 10
        assert len(s.console.sent) == 10
        # Ten tokens from a bucket of five refilled at 5/s take at least (10 - 5) / 5 s,
        # however fast or slow everything else was (a lower bound only).
        assert elapsed >= 1.0
