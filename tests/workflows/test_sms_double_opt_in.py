"""SMS double opt-in: a `pending` consent texts a confirmation request; YES subscribes.

End to end through the API and the smpp34 SMSC (the real provider wiring), and over its real
two-day window in virtual time on the time-skipping kit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import time
from typing import Any

import pytest
from temporalio.client import Client

from engine import OPT_IN_REQUESTED
from engine.app.journeys import shipped_journeys
from engine.app.providers import build_providers
from engine.config.nudge_toml import NudgeConfig
from engine.testing.pytest_plugin import EnvFactory
from tests.kit import Stack, eventually
from tests.kit.clock import next_local
from tests.peers.smpp34_peer import RecordedSubmit, Smpp34Peer
from workflows import SmsDoubleOptIn


@pytest.fixture
async def smsc() -> AsyncIterator[Smpp34Peer]:
    peer = Smpp34Peer()
    await peer.start()
    yield peer
    await peer.close()


@pytest.fixture(autouse=True)
def smpp_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NUDGE_SMPP_PASSWORD", "test-password")


async def _submits_to(peer: Smpp34Peer, destination: str, count: int) -> list[RecordedSubmit]:
    found = [x for x in peer.submits if x.destination == destination]
    return found if len(found) >= count else []


async def test_pending_consent_asks_and_yes_subscribes(
    postgres_url: str, temporal_client: Client, task_queue: str, smsc: Smpp34Peer
) -> None:
    config = NudgeConfig.model_validate(
        {"channels": {"sms": {"provider": "smpp", "port": smsc.port, "submit_timeout": "30s"}}}
    )
    async with Stack(
        database_url=postgres_url,
        client=temporal_client,
        task_queue=task_queue,
        journeys=shipped_journeys(),
        config=config,
        providers_factory=build_providers,
    ) as s:
        await s.profile("dora", phone="+14155550140", attributes={"first_name": "Dora"})
        # A bare YES before any request is an ordinary reply: it grants nothing.
        await smsc.send_mo("+14155550140", "NUDGE", "yes")
        await s.call(
            "PUT",
            "/v1/users/dora/consent/sms",
            {"topic": "marketing", "state": "pending", "source": "form"},
        )
        request = await eventually(lambda: _submits_to(smsc, "14155550140", 1))
        assert request[0].text.startswith("Reply YES to get texts from us, Dora.")
        current = await s.call("GET", "/v1/users/dora/consent/sms")
        assert current["topics"]["marketing"] == "pending"
        await s.wait_step("dora", "wait:SMS Received", journey="sms_double_opt_in")
        await smsc.send_mo("+14155550140", "NUDGE", "YES")

        async def confirmed() -> list[dict[str, Any]] | None:
            runs = [r for r in await s.runs("dora") if r["journey"] == "sms_double_opt_in"]
            return runs if runs and runs[0]["status"] != "open" else None

        runs = await eventually(confirmed)
        assert runs[0]["outcome"] == "confirmed"
        current = await s.call("GET", "/v1/users/dora/consent/sms")
        assert current["topics"]["marketing"] == "subscribed"
        log = (await s.call("GET", "/v1/users/dora/consent/sms/log"))["items"]
        assert [(e["state"], e["source"]) for e in log] == [
            ("pending", "form"),
            ("subscribed", "sms_keyword"),
        ]


async def test_no_reply_within_two_days_expires(journey_env: EnvFactory) -> None:
    env = await journey_env(SmsDoubleOptIn, start_at=next_local("UTC", time(12, 0)))
    eve = await env.user("eve", consent={"sms": "pending"})
    await env.emit(eve, OPT_IN_REQUESTED)
    [asked] = await env.sent(eve)
    assert (asked.template, asked.channel) == ("confirm_request", "sms")  # transactional
    await env.emit(eve, "SMS Received", {"keyword": "help", "text": "HELP"})  # not a yes
    await env.advance(days=2, hours=1)
    assert (await env.run(eve, "sms_double_opt_in")).outcome == "expired"


async def test_a_start_reply_confirms(journey_env: EnvFactory) -> None:
    env = await journey_env(SmsDoubleOptIn, start_at=next_local("UTC", time(12, 0)))
    fay = await env.user("fay", consent={"sms": "pending"})
    await env.emit(fay, OPT_IN_REQUESTED)
    await env.advance(hours=20)
    await env.emit(fay, "SMS Received", {"keyword": "start", "text": "YES"})
    assert (await env.run(fay, "sms_double_opt_in")).outcome == "confirmed"
