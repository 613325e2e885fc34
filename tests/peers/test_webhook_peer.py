"""The Standard Webhooks receiver: its verifier against the spec's vector and edge cases, and
the receiver driven with plain httpx (acceptance, rejection, failures, slowness, down/up)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.peers.webhooks import (
    Rejection,
    WebhookReceiver,
    new_secret,
    sign,
    signed_headers,
    verify,
)

# The test vector the Standard Webhooks reference libraries share.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID, SPEC_TS, SPEC_BODY = "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with WebhookReceiver() as r:
        yield r


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False, timeout=10) as c:
        yield c


def payload(n: int = 1) -> bytes:
    return json.dumps({"type": "journey.step.completed", "data": {"n": n}}).encode()


async def deliver(
    client: httpx.AsyncClient,
    receiver: WebhookReceiver,
    msg_id: str,
    body: bytes | None = None,
) -> httpx.Response:
    raw = payload() if body is None else body
    headers = signed_headers(receiver.secret, msg_id, raw) | {"content-type": "application/json"}
    return await client.post(receiver.url, content=raw, headers=headers)


def test_sign_matches_the_spec_vector() -> None:
    assert sign(SPEC_SECRET, SPEC_ID, SPEC_TS, SPEC_BODY) == SPEC_SIGNATURE


def spec_headers(**changes: str) -> dict[str, str]:
    headers = {
        "webhook-id": SPEC_ID,
        "webhook-timestamp": str(SPEC_TS),
        "webhook-signature": SPEC_SIGNATURE,
    }
    return headers | {f"webhook-{k}": v for k, v in changes.items()}


@pytest.mark.parametrize(
    ("headers", "now", "expected"),
    [
        (spec_headers(), SPEC_TS, None),
        ({k.upper(): v for k, v in spec_headers().items()}, SPEC_TS, None),
        (spec_headers(), SPEC_TS + 300, None),  # exactly 5 minutes late is still fine
        (spec_headers(), SPEC_TS - 300, None),
        (spec_headers(), SPEC_TS + 301, Rejection.STALE_TIMESTAMP),
        (spec_headers(), SPEC_TS - 301, Rejection.STALE_TIMESTAMP),  # from the future
        (spec_headers(signature=f"v1a,xyz garbage v1,!!! {SPEC_SIGNATURE}"), SPEC_TS, None),
        (spec_headers(signature="v2," + SPEC_SIGNATURE[3:]), SPEC_TS, Rejection.BAD_SIGNATURE),
        (spec_headers(signature="v1,AAAA"), SPEC_TS, Rejection.BAD_SIGNATURE),
        (spec_headers(id="msg_other"), SPEC_TS, Rejection.BAD_SIGNATURE),
        (spec_headers(timestamp=str(SPEC_TS + 1)), SPEC_TS, Rejection.BAD_SIGNATURE),
        (spec_headers(timestamp="1614265330.0"), SPEC_TS, Rejection.BAD_TIMESTAMP),
        (spec_headers(timestamp="-1"), SPEC_TS, Rejection.BAD_TIMESTAMP),
        (spec_headers(signature=""), SPEC_TS, Rejection.MISSING_HEADERS),
        (
            {"webhook-id": SPEC_ID, "webhook-signature": SPEC_SIGNATURE},
            SPEC_TS,
            Rejection.MISSING_HEADERS,
        ),
    ],
)
def test_verify(headers: dict[str, str], now: int, expected: Rejection | None) -> None:
    assert verify([SPEC_SECRET], headers, SPEC_BODY, now=now) == expected


def test_verify_body_secrets_and_rotation() -> None:
    headers = spec_headers()
    assert verify([SPEC_SECRET], headers, SPEC_BODY + b" ", now=SPEC_TS) is Rejection.BAD_SIGNATURE
    assert verify([new_secret()], headers, SPEC_BODY, now=SPEC_TS) is Rejection.BAD_SIGNATURE
    assert verify([new_secret(), SPEC_SECRET], headers, SPEC_BODY, now=SPEC_TS) is None
    unprefixed = SPEC_SECRET.removeprefix("whsec_")
    assert sign(unprefixed, SPEC_ID, SPEC_TS, SPEC_BODY) == SPEC_SIGNATURE


async def test_accepts_and_records_a_delivery(
    receiver: WebhookReceiver, client: httpx.AsyncClient
) -> None:
    waiter = asyncio.ensure_future(receiver.wait_for_ids(["msg_1"]))
    resp = await deliver(client, receiver, "msg_1")
    assert resp.status_code == 200
    [d] = await waiter
    assert (d.msg_id, d.path, d.status) == ("msg_1", "/webhooks", 200)
    assert d.body == json.loads(payload())
    assert d.headers["webhook-id"] == "msg_1"
    assert d.timestamp == int(d.headers["webhook-timestamp"])
    assert abs(d.timestamp - time.time()) < 300
    assert (receiver.unique_ids(), receiver.duplicates(), receiver.rejections) == (
        ["msg_1"],
        {},
        [],
    )


async def test_duplicates_and_waiting_by_count(
    receiver: WebhookReceiver, client: httpx.AsyncClient
) -> None:
    for msg_id in ("a", "b", "a", "c", "a"):
        assert (await deliver(client, receiver, msg_id)).status_code == 200
    firsts = await receiver.wait_for_ids(3)
    assert [d.msg_id for d in firsts] == ["a", "b", "c"]
    assert receiver.unique_ids() == ["a", "b", "c"]
    assert receiver.duplicates() == {"a": 3}
    assert receiver.arrivals() == {"a": 3, "b": 1, "c": 1}


@pytest.mark.parametrize(
    ("case", "status", "reason"),
    [
        ("no signature", 401, Rejection.MISSING_HEADERS),
        ("tampered body", 401, Rejection.BAD_SIGNATURE),
        ("other secret", 401, Rejection.BAD_SIGNATURE),
        ("an hour old", 401, Rejection.STALE_TIMESTAMP),
        ("an hour ahead", 401, Rejection.STALE_TIMESTAMP),
        ("not json", 400, Rejection.NOT_JSON),
    ],
)
async def test_rejections(
    receiver: WebhookReceiver,
    client: httpx.AsyncClient,
    case: str,
    status: int,
    reason: Rejection,
) -> None:
    raw, now = payload(), int(time.time())
    headers = signed_headers(receiver.secret, "msg_x", raw)
    if case == "no signature":
        del headers["webhook-signature"]
    elif case == "tampered body":
        raw = payload(2)
    elif case == "other secret":
        headers = signed_headers(new_secret(), "msg_x", raw)
    elif case == "an hour old":
        headers = signed_headers(receiver.secret, "msg_x", raw, timestamp=now - 3600)
    elif case == "an hour ahead":
        headers = signed_headers(receiver.secret, "msg_x", raw, timestamp=now + 3600)
    else:
        raw = b"<xml/>"
        headers = signed_headers(receiver.secret, "msg_x", raw)
    resp = await client.post(receiver.url, content=raw, headers=headers)
    assert resp.status_code == status
    [rejection] = await receiver.wait_for_rejections(1)
    assert (rejection.reason, rejection.status, rejection.raw) == (reason, status, raw)
    assert receiver.deliveries == []
    assert receiver.unique_ids() == []


async def test_fail_with_then_recover(receiver: WebhookReceiver, client: httpx.AsyncClient) -> None:
    receiver.fail_with, receiver.fail_times = 500, 2
    statuses = [(await deliver(client, receiver, "m")).status_code for _ in range(3)]
    assert statuses == [500, 500, 200]
    assert receiver.fail_with is None
    assert receiver.arrivals() == {"m": 3}
    assert (receiver.unique_ids(), receiver.duplicates()) == (["m"], {})  # retries, not dupes
    receiver.fail_with = 503  # until switched off
    assert [(await deliver(client, receiver, "n")).status_code for _ in range(2)] == [503, 503]
    assert receiver.unique_ids() == ["m"]


async def test_slow_answer_is_recorded_before_it_is_sent(
    receiver: WebhookReceiver, client: httpx.AsyncClient
) -> None:
    receiver.slow = 60.0
    pending: asyncio.Future[Any] = asyncio.ensure_future(deliver(client, receiver, "m"))
    [d] = await receiver.wait_for_ids(["m"])
    assert d.ok and not pending.done()  # processed, but the sender has no answer yet
    pending.cancel()  # the sender gives up, as on its timeout, and will retry
    with pytest.raises(asyncio.CancelledError):
        await pending
    receiver.slow = 0.0
    assert (await deliver(client, receiver, "m")).status_code == 200
    assert receiver.duplicates() == {"m": 2}


async def test_down_then_up_on_the_same_port(
    receiver: WebhookReceiver, client: httpx.AsyncClient
) -> None:
    assert (await deliver(client, receiver, "before")).status_code == 200
    port = receiver.port
    await receiver.down()
    assert receiver.is_down
    with pytest.raises(httpx.TransportError):
        await deliver(client, receiver, "during")
    await receiver.up()
    assert (receiver.port, receiver.is_down) == (port, False)
    assert (await deliver(client, receiver, "after")).status_code == 200
    assert receiver.unique_ids() == ["before", "after"]


async def test_wait_for_ids_times_out(receiver: WebhookReceiver) -> None:
    with pytest.raises(TimeoutError, match="never"):
        await receiver.wait_for_ids(["never"], within=0.05)
