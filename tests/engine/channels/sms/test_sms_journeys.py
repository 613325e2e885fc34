"""SMS end to end: journeys through the API and worker, the production provider wiring
(`build_providers` + `triggers/smpp.py`), against the in-process smpp34 SMSC. (The double
opt-in journey: tests/workflows/test_sms_double_opt_in.py.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from temporalio.client import Client

from engine.app.providers import build_providers
from engine.config.nudge_toml import NudgeConfig
from tests.journeys import TEST_JOURNEYS
from tests.kit import Stack, eventually
from tests.peers.smpp34_peer import RecordedSubmit, Smpp34Peer

PHONE = "+14155550100"


@pytest.fixture
async def smsc() -> AsyncIterator[Smpp34Peer]:
    peer = Smpp34Peer()
    await peer.start()
    yield peer
    await peer.close()


def stack(
    url: str,
    client: Client,
    queue: str,
    smsc: Smpp34Peer,
    *,
    channels_sms: dict[str, Any] | None = None,
    **journeys: Any,
) -> Stack:
    config = NudgeConfig.model_validate(
        {
            "channels": {
                "sms": {
                    "provider": "smpp",
                    "port": smsc.port,
                    "tps": 200,
                    "submit_timeout": "30s",
                    "source_addr": "NUDGE",
                    **(channels_sms or {}),
                }
            },
            "journeys": journeys,
        }
    )
    return Stack(
        database_url=url,
        client=client,
        task_queue=queue,
        journeys=TEST_JOURNEYS,
        config=config,
        providers_factory=build_providers,
    )


@pytest.fixture(autouse=True)
def smpp_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NUDGE_SMPP_PASSWORD", "test-password")


async def subscriber(s: Stack, user: str, phone: str) -> None:
    await s.profile(user, phone=phone, timezone="UTC")
    await s.consent(user, "sms", "subscribed")


CASES = {
    "gsm": ("Your cart is waiting. Reply STOP to opt out.", "gsm7", 1),
    # An escape pair (€ is ESC e) exactly where part one ends: it must not be split.
    "extension_at_boundary": ("x" * 152 + "€{}" + "y" * 10, "gsm7", 2),
    "emoji": ("Your order shipped 🚚 see you soon", "ucs2", 1),
    "ucs2_three_parts": (("Ваша корзина ждёт вас. " * 7).strip(), "ucs2", 3),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_journey_sms_arrives_encoded_and_is_delivered(
    postgres_url: str, temporal_client: Client, task_queue: str, smsc: Smpp34Peer, case: str
) -> None:
    text, encoding, parts = CASES[case]
    async with stack(postgres_url, temporal_client, task_queue, smsc) as s:
        await subscriber(s, "sia", PHONE)
        await s.track("sia", "Sms Start", {"text": text})
        await s.wait_closed("sia")
        submits = [x for x in smsc.submits if x.destination == PHONE.lstrip("+")]
        first = submits[:parts]
        assert "".join(x.text for x in first) == text
        assert len(first) == parts
        if parts > 1:
            assert [x.concat[1:] for x in first if x.concat] == [
                (parts, i + 1) for i in range(parts)
            ]
        messages = await s.messages("sia")
        assert (messages[0]["encoding"], messages[0]["parts"]) == (encoding, parts)

        async def delivered() -> bool:
            rows = await s.messages("sia")
            return all(m["status"] == "delivered" for m in rows)

        await eventually(delivered)
        async with s.context.sessions() as db:
            from sqlalchemy import select

            from engine.store.models import Event

            names = list(await db.scalars(select(Event.name)))
        assert names.count("Message Delivered") == 2


async def test_stop_from_the_phone_opts_out_replies_and_suppresses_the_waiting_step(
    postgres_url: str, temporal_client: Client, task_queue: str, smsc: Smpp34Peer
) -> None:
    async with stack(
        postgres_url, temporal_client, task_queue, smsc, t_sms={"wait_reply": "1h"}
    ) as s:
        await subscriber(s, "sol", "+14155550101")
        await s.track("sol", "Sms Start", {"text": "Did you like it? Reply YES or STOP"})
        await smsc.wait_for_submits(1)
        await s.wait_step("sol", "wait:SMS Received")  # the run waits for the answer
        await smsc.send_mo("+14155550101", "NUDGE", "Stop")
        runs = await s.wait_closed("sol")
        assert runs[0]["outcome"] == "first=sent reply=stop second=suppressed:no_consent"
        log = (await s.call("GET", "/v1/users/sol/consent/sms/log"))["items"]
        assert (log[-1]["state"], log[-1]["source"], log[-1]["evidence"]) == (
            "unsubscribed",
            "sms_keyword",
            "Stop",
        )
        confirmation = await eventually(lambda: _submits_to(smsc, "14155550101", 2))
        assert "unsubscribed" in confirmation[1].text
        help_reply = NudgeConfig().channels.sms.help_reply
        await smsc.send_mo("+14155550101", "NUDGE", "help")
        replies = await eventually(lambda: _submits_to(smsc, "14155550101", 3))
        assert replies[2].text == help_reply  # HELP is answered even after STOP


async def test_throttling_smsc_every_message_sent_exactly_once(
    postgres_url: str, temporal_client: Client, task_queue: str
) -> None:
    peer = Smpp34Peer(throttle_every=5)
    await peer.start()
    try:
        async with stack(postgres_url, temporal_client, task_queue, peer) as s:
            users = [f"t{i}" for i in range(12)]
            for i, user in enumerate(users):
                await subscriber(s, user, f"+1415555020{i:01d}" if i < 10 else f"+141555502{i}")
                await s.track(user, "Sms Start", {"text": f"hello {user}"})
            for user in users:
                await s.wait_closed(user, timeout=120)
            texts = [x.text for x in peer.submits if x.text.startswith("hello ")]
            assert sorted(texts) == sorted(f"hello {u}" for u in users)
            assert peer.throttled >= 2
            for user in users:
                statuses = [m["status"] for m in await s.messages(user)]
                assert statuses.count("sent") + statuses.count("delivered") == 2
    finally:
        await peer.close()


async def test_smsc_down_mid_run_reconnects_and_sends_once(
    postgres_url: str, temporal_client: Client, task_queue: str, smsc: Smpp34Peer
) -> None:
    async with stack(postgres_url, temporal_client, task_queue, smsc) as s:
        await subscriber(s, "ray", "+14155550130")
        await s.track("ray", "Sms Start", {"text": "before the outage"})
        await s.wait_closed("ray")
        await smsc.stop()
        await subscriber(s, "rio", "+14155550131")
        await s.track("rio", "Sms Start", {"text": "during the outage"})

        async def tried_during_the_outage() -> bool:
            rows = await s.messages("rio")
            return bool(rows) and rows[0]["status"] == "pending"

        # The send has started against the missing SMSC (its row is reserved) ...
        await eventually(tried_during_the_outage)
        await smsc.start()  # ... and the SMSC comes back on the same port
        await s.wait_closed("rio", timeout=120)
        texts = [x.text for x in smsc.submits]
        assert texts.count("during the outage") == 1
        assert [m["status"] for m in await s.messages("rio")].count("failed") == 0


async def _submits_to(peer: Smpp34Peer, destination: str, count: int) -> list[RecordedSubmit]:
    found = [x for x in peer.submits if x.destination == destination]
    return found if len(found) >= count else []


LONG_REPLY = "Delivery was quick but the box was damaged on one side, " * 6  # 3 parts


@pytest.mark.parametrize("sar", [False, True], ids=["udh", "sar_tlvs"])
async def test_a_long_reply_arrives_as_one_event(
    postgres_url: str, temporal_client: Client, task_queue: str, smsc: Smpp34Peer, sar: bool
) -> None:
    """Its parts come out of order (UDH or sar_* TLVs); the run waiting for the reply gets
    the whole text, once."""
    async with stack(
        postgres_url, temporal_client, task_queue, smsc, t_sms={"wait_reply": "1h"}
    ) as s:
        await subscriber(s, "lou", "+14155550107")
        await s.track("lou", "Sms Start", {"text": "How was your delivery?"})
        await s.wait_step("lou", "wait:SMS Received")
        total = await smsc.send_mo_parts(
            "+14155550107", "NUDGE", LONG_REPLY, reference=7, sar=sar, only=(2, 1)
        )
        assert total == 3
        await s.wait_step("lou", "wait:SMS Received", events_seen=0)  # held: no event yet
        await smsc.send_mo_parts(
            "+14155550107", "NUDGE", LONG_REPLY, reference=7, sar=sar, only=(3, 2)
        )
        runs = await s.wait_closed("lou")
        assert runs[0]["outcome"] == "first=sent reply=None second=sent:None"
        async with s.context.sessions() as db:
            from sqlalchemy import select

            from engine.store.models import Event

            received = list(await db.scalars(select(Event).where(Event.name == "SMS Received")))
        assert [e.properties["text"] for e in received] == [LONG_REPLY]
        assert "incomplete" not in received[0].properties


async def test_a_long_reply_missing_a_part_is_delivered_flagged_after_the_hold(
    postgres_url: str, temporal_client: Client, task_queue: str, smsc: Smpp34Peer
) -> None:
    async with stack(
        postgres_url,
        temporal_client,
        task_queue,
        smsc,
        channels_sms={"concat_timeout": "1s"},
        t_sms={"wait_reply": "1h"},
    ) as s:
        await subscriber(s, "max", "+14155550108")
        await s.track("max", "Sms Start", {"text": "How was your delivery?"})
        await s.wait_step("max", "wait:SMS Received")
        await smsc.send_mo_parts("+14155550108", "NUDGE", LONG_REPLY, reference=9, only=(1, 3))
        await s.wait_closed("max")
        async with s.context.sessions() as db:
            from sqlalchemy import select

            from engine.store.models import Event

            [event] = list(await db.scalars(select(Event).where(Event.name == "SMS Received")))
        assert event.properties["incomplete"] is True
        assert event.properties["missing_parts"] == 1
        assert event.properties["text"].startswith(LONG_REPLY[:100])
        assert len(event.properties["text"]) < len(LONG_REPLY)
