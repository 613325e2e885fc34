"""SMS over the Twilio-shaped HTTP provider and the route over several providers, end to end:
journeys through the API and the worker with the production wiring (`build_providers`,
`triggers/api/sms.py`), against `tests/peers/twilio.py` and the in-process smpp34 SMSC.

The Stack's API is served in-process (ASGI), so the peer cannot reach it: its status
callbacks go to a closed port, are recorded there with their signatures, and the test
hands them to the API exactly as they were signed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select
from temporalio.client import Client

from engine.channels.base import ChannelProvider, OutboundMessage, ProviderResult
from engine.channels.sms.route import RouteEntry, SmsRoute
from engine.channels.sms.twilio import valid_signature
from engine.config.nudge_toml import NudgeConfig
from engine.store.models import Event, Message, MessageAttempt
from tests.kit import Stack, eventually
from tests.kit.sms import (
    INBOUND_URL,
    SERVICE_NUMBER,
    STATUS_URL,
    sms_stack,
    smsc_provider,
    subscriber,
    twilio_provider,
)
from tests.peers.smpp34_peer import Smpp34Peer
from tests.peers.twilio import Failure, TwilioPeer, twilio_signature

FOLLOWUP = "Anything else? Reply STOP to opt out."  # tests/templates/t_sms/followup.liquid


@pytest.fixture
async def twilio() -> AsyncIterator[TwilioPeer]:
    async with TwilioPeer() as peer:
        yield peer


@pytest.fixture(autouse=True)
def secrets(monkeypatch: pytest.MonkeyPatch, twilio: TwilioPeer) -> None:
    monkeypatch.setenv("NUDGE_TWILIO_AUTH_TOKEN", twilio.auth_token)
    monkeypatch.setenv("NUDGE_SMPP_PASSWORD", "test-password")


async def post_signed(s: Stack, path: str, params: dict[str, str], signature: str | None) -> Any:
    headers = {} if signature is None else {"X-Twilio-Signature": signature}
    return await s.http.post(path, data=params, headers=headers)


async def test_twilio_send_status_callbacks_and_a_signed_stop(
    postgres_url: str, temporal_client: Client, task_queue: str, twilio: TwilioPeer
) -> None:
    phone = "+14155550142"
    async with sms_stack(
        postgres_url,
        temporal_client,
        task_queue,
        [twilio_provider(twilio)],
        t_sms={"wait_reply": "1h"},
    ) as s:
        await subscriber(s, "tia", phone)
        await s.track("tia", "Sms Start", {"text": "How was it? Reply STOP to opt out"})
        [submit] = await twilio.wait_for_messages(1, within=30)
        assert (submit.to, submit.from_, submit.status_callback) == (
            phone,
            SERVICE_NUMBER,
            STATUS_URL,
        )
        assert submit.auth_user == twilio.account_sid  # Basic auth with the account

        async def recorded() -> dict[str, Any] | None:
            [row] = await s.messages("tia")
            return row if row["status"] != "pending" else None

        row = await eventually(recorded)
        assert (row["provider"], row["provider_id"], row["status"]) == (
            "twilio",
            submit.sid,
            "sent",
        )

        # The peer's callbacks, as signed ("sent", then "delivered"), reach the API.
        callbacks = await twilio.wait_for_callbacks(2, within=30)
        forged = dict(callbacks[-1].params, MessageStatus="undelivered")
        for params, signature in ((callbacks[-1].params, None), (forged, callbacks[-1].signature)):
            refused = await post_signed(s, "/v1/sms/twilio/status", params, signature)
            assert refused.status_code == 403, refused.text
            assert refused.json()["type"] == "urn:nudge:problem:bad-signature"
        for callback in callbacks:
            answer = await post_signed(
                s, "/v1/sms/twilio/status", callback.params, callback.signature
            )
            assert answer.status_code == 204, answer.text

        async def delivered() -> bool:
            return bool((await s.messages("tia"))[0]["status"] == "delivered")

        await eventually(delivered)

        # An inbound STOP, signed for the inbound URL: the same keywords and consent as SMPP.
        await s.wait_step("tia", "wait:SMS Received")
        inbound = {
            "AccountSid": twilio.account_sid,
            "Body": "Stop",
            "From": phone,
            "MessageSid": "SM" + "1" * 32,
            "To": SERVICE_NUMBER,
        }
        unknown = dict(inbound, AccountSid="AC" + "0" * 32)
        sig = twilio_signature(twilio.auth_token, INBOUND_URL, unknown)
        assert (await post_signed(s, "/v1/sms/twilio/inbound", unknown, sig)).status_code == 401
        sig = twilio_signature(twilio.auth_token, INBOUND_URL, inbound)
        answer = await post_signed(s, "/v1/sms/twilio/inbound", inbound, sig)
        assert answer.status_code == 204, answer.text
        runs = await s.wait_closed("tia")
        assert runs[0]["outcome"] == "first=sent reply=stop second=suppressed:no_consent"
        # The STOP confirmation went out through the same provider.
        submits = await twilio.wait_for_messages(2, within=30)
        assert submits[1].to == phone and "unsubscribed" in submits[1].body
        async with s.context.sessions() as db:
            received = select(Event.context).where(Event.name == "SMS Received")
            sources = [c["source"] for c in await db.scalars(received)]
        assert sources == ["twilio"]


async def test_smsc_down_every_due_sms_goes_through_twilio_once(
    postgres_url: str, temporal_client: Client, task_queue: str, twilio: TwilioPeer
) -> None:
    smsc = Smpp34Peer()
    await smsc.start()
    providers = [smsc_provider(smsc.port), twilio_provider(twilio, priority=2)]
    try:
        async with sms_stack(postgres_url, temporal_client, task_queue, providers) as s:
            route = s.providers.unique()
            [sms] = [p for p in route if isinstance(p, SmsRoute)]
            bridge = sms.entries[0].provider.bridge  # type: ignore[attr-defined]

            async def bound() -> bool:
                return bool(bridge.bound)

            async def unbound() -> bool:
                return not bridge.bound

            await eventually(bound)
            await smsc.stop()  # the SMSC crashes before any step comes due
            await eventually(unbound)
            users = [f"u{n:02d}" for n in range(25)]
            for n, user in enumerate(users):
                await subscriber(s, user, f"+1415555{n:04d}")
                await s.track(user, "Sms Start", {"text": f"hello {n}"})  # two SMS steps each
            for user in users:
                await s.wait_closed(user)
            submits = await twilio.wait_for_messages(50, within=30)
            assert len(submits) == 50 and not smsc.submits
            per_number = sorted(
                {sub.to: sum(x.to == sub.to for x in submits) for sub in submits}.values()
            )
            assert per_number == [2] * 25  # each step once: never twice, never on both
            async with s.context.sessions() as db:
                rows = list(await db.scalars(select(Message)))
            assert len(rows) == 50
            assert {(r.provider, str(r.status)) for r in rows} == {("twilio", "sent")}
            assert {r.provider_id for r in rows} == {sub.sid for sub in submits}
    finally:
        await smsc.close()


def test_route_order_by_prefix_then_priority() -> None:
    config = NudgeConfig.model_validate(
        {
            "sms": {
                "providers": [
                    {"kind": "twilio", "name": "any", "account_sid": "AC1", "priority": 1},
                    {"kind": "twilio", "name": "us", "account_sid": "AC2", "countries": ["+1"]},
                    {"kind": "smpp", "name": "fr", "countries": ["+33"], "priority": 5},
                    {"kind": "smpp", "name": "fr-mobile", "countries": ["+336"], "priority": 9},
                ]
            }
        }
    )

    class Idle(ChannelProvider):
        async def send(self, message: OutboundMessage) -> ProviderResult:
            raise AssertionError("not sent in this test")

    route = SmsRoute([RouteEntry(p, Idle()) for p in config.sms_providers()])
    names = {
        phone: [e.settings.name for e in route.order(phone)]
        for phone in ("+33612345678", "+33123456789", "+14155550100", "+4930123456")
    }
    assert names == {
        "+33612345678": ["fr-mobile", "fr", "any"],
        "+33123456789": ["fr", "any"],
        "+14155550100": ["us", "any"],
        "+4930123456": ["any"],
    }


def test_signatures_cover_url_and_every_parameter() -> None:
    params = {"MessageSid": "SM1", "MessageStatus": "delivered", "To": "+14155550100"}
    good = twilio_signature("token", STATUS_URL, params)
    assert valid_signature("token", STATUS_URL, params, good)
    assert not valid_signature("other", STATUS_URL, params, good)
    assert not valid_signature("token", STATUS_URL + "?x=1", params, good)
    assert not valid_signature("token", STATUS_URL, {**params, "To": "+1"}, good)
    assert not valid_signature("token", STATUS_URL, params, None)


async def test_a_refusal_fails_over_and_an_unknown_outcome_never_does(
    postgres_url: str, temporal_client: Client, task_queue: str, twilio: TwilioPeer
) -> None:
    """Primary answers 503: the message goes through the backup. Primary takes the message
    and never answers: its outcome is unknown, so the backup must not send it (marketing:
    left `unknown`)."""
    async with TwilioPeer(auth_token=twilio.auth_token) as backup:
        providers = [
            twilio_provider(twilio, priority=1, timeout="1s"),
            twilio_provider(backup, name="backup", priority=2),
        ]
        async with sms_stack(postgres_url, temporal_client, task_queue, providers) as s:
            twilio.failure = Failure.ERROR_503
            await subscriber(s, "rae", "+14155550161")
            await s.track("rae", "Sms Start", {"text": "one"})
            await s.wait_closed("rae")
            assert len(backup.submits) == 2 and not twilio.submits
            twilio.failure = Failure.HANG_AFTER_ACCEPT
            await subscriber(s, "ugo", "+14155550162")
            await s.track("ugo", "Sms Start", {"text": "two"})
            runs = await s.wait_closed("ugo")
            # Its third failure in a row opened the primary's circuit: the follow-up went
            # straight to the backup.
            assert runs[0]["outcome"] == "first=unknown reply=None second=sent:None"
            assert [sub.to for sub in twilio.submits] == ["+14155550162"]
            assert [sub.body for sub in backup.submits] == ["one", FOLLOWUP, FOLLOWUP]
            rows = [(m["provider"], m["status"]) for m in await s.messages("ugo")]
            assert rows == [("twilio", "unknown"), ("backup", "sent")]
            rae = {(m["provider"], m["status"]) for m in await s.messages("rae")}
            assert rae == {("backup", "sent")}
            async with s.context.sessions() as db:
                attempts = list(await db.scalars(select(MessageAttempt.outcome)))
            # Every provider call is an attempt: rae's two refusals by the primary too.
            assert sorted(str(a) for a in attempts) == [
                *("retryable", "retryable"),
                *("sent", "sent", "sent"),
                "unknown",
            ]
