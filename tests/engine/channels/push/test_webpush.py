"""WebPushProvider against the local push service (real sockets, real encryption)."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from engine.channels.base import (
    Address,
    Content,
    InvalidRequestError,
    OutboundMessage,
    PermanentAddressError,
    PushOptions,
    RetryableError,
    ThrottledError,
)
from engine.channels.push.webpush import WebPushProvider, generate_vapid_keypair, load_vapid_key
from engine.config.nudge_toml import ConfigError, WebPushSettings
from schemas.common import Channel, Platform
from tests.peers.webpush import WebPushPeer, b64url_decode

TIMEOUT = 2.0
SLOW = 60.0  # `slow*` answers: far beyond TIMEOUT, so a Timeout is our own bound
PRIVATE, PUBLIC = generate_vapid_keypair()


@pytest.fixture(scope="module")
def peer() -> Iterator[WebPushPeer]:
    with WebPushPeer(slow_delay=SLOW, application_server_key=PUBLIC) as p:
        yield p


@pytest.fixture
async def provider() -> AsyncIterator[WebPushProvider]:
    settings = WebPushSettings(vapid_subject="mailto:ops@nudge.test", timeout=TIMEOUT)
    p = WebPushProvider(settings, private_key=PRIVATE)
    await p.start()
    yield p
    await p.close()


def msg(subscription: dict[str, Any], **content: object) -> OutboundMessage:
    content.setdefault("title", "Your cart")
    content.setdefault("body", "Still thinking it over?")
    return OutboundMessage(
        message_id=f"m_{uuid.uuid4().hex[:24]}",
        address=Address(channel=Channel.WEBPUSH, platform=Platform.WEB, subscription=subscription),
        content=Content.model_validate(content),
    )


def name(prefix: str = "ok") -> str:
    return f"{prefix}{uuid.uuid4().hex}"


def test_generated_keypair_round_trips() -> None:
    private, public = generate_vapid_keypair()
    assert private.startswith("-----BEGIN PRIVATE KEY-----")
    raw = b64url_decode(public)
    assert len(raw) == 65 and raw[0] == 4 and "=" not in public  # uncompressed P-256 point
    point = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
    assert load_vapid_key(private).public_key.public_numbers() == point.public_numbers()


async def test_payload_and_headers_reach_the_peer(
    peer: WebPushPeer, provider: WebPushProvider
) -> None:
    sub = peer.make_subscription(name())
    push = PushOptions(ttl=120, urgency="high", collapse_id="cart-1")
    m = msg(sub, title="Héllo 🛒", url="https://shop.test/cart", data={"cart": "c1"}, push=push)
    result = await provider.send(m)

    rec = peer.received[-1]
    assert rec.status == 201
    assert result.provider == "webpush"
    assert (result.provider_id or "").startswith(f"{peer.endpoint}/message/")
    assert rec.payload == {
        "title": "Héllo 🛒",
        "body": "Still thinking it over?",
        "url": "https://shop.test/cart",
        "data": {"cart": "c1"},
    }
    assert (rec.ttl, rec.urgency, rec.topic) == (120, "high", "cart-1")
    assert rec.vapid_key == PUBLIC
    assert rec.vapid_claims["sub"] == "mailto:ops@nudge.test"
    assert rec.vapid_claims["aud"] == peer.endpoint


async def test_defaults_and_long_topic(peer: WebPushPeer, provider: WebPushProvider) -> None:
    await provider.send(msg(peer.make_subscription(), push=PushOptions(collapse_id="x" * 40)))
    rec = peer.received[-1]
    assert rec.ttl == 24 * 3600 and rec.urgency is None
    assert rec.topic is not None and len(rec.topic) == 32 and rec.topic != "x" * 32


@pytest.mark.parametrize(
    ("prefix", "error", "code"),
    [
        ("gone", PermanentAddressError, "HTTP410"),
        ("notfound", PermanentAddressError, "HTTP404"),
        ("error", RetryableError, "HTTP500"),
    ],
)
async def test_error_mapping(
    peer: WebPushPeer, provider: WebPushProvider, prefix: str, error: type[Exception], code: str
) -> None:
    with pytest.raises(error) as info:
        await provider.send(msg(peer.make_subscription(name(prefix))))
    assert getattr(info.value, "code", None) == code
    assert not isinstance(info.value, ThrottledError)


async def test_invalid_requests(peer: WebPushPeer, provider: WebPushProvider) -> None:
    with pytest.raises(InvalidRequestError) as info:
        await provider.send(msg(peer.make_subscription(), body="x" * 5000))
    assert info.value.code == "HTTP413"
    with pytest.raises(InvalidRequestError) as info:
        await provider.send(msg(peer.make_subscription(), push=PushOptions(urgency="now")))
    assert info.value.code == "BadUrgency"
    with pytest.raises(InvalidRequestError) as info:
        await provider.send(msg({"endpoint": f"{peer.endpoint}/push/x"}))
    assert info.value.code == "MissingSubscription"
    good = peer.make_subscription()["keys"]
    not_a_point = base64.urlsafe_b64encode(b"\x04" + bytes(range(64))).decode().rstrip("=")
    for keys in (
        {"p256dh": "AAAA", "auth": good["auth"]},
        {"p256dh": not_a_point, "auth": good["auth"]},
        {"p256dh": "!!", "auth": good["auth"]},
        {"p256dh": good["p256dh"], "auth": "AAAA"},
        {"p256dh": good["p256dh"]},
    ):
        with pytest.raises(InvalidRequestError) as info:
            await provider.send(msg({"endpoint": f"{peer.endpoint}/push/x", "keys": keys}))
        assert info.value.code == "InvalidSubscription"


async def test_wrong_vapid_key_is_invalid(peer: WebPushPeer) -> None:
    other, _ = generate_vapid_keypair()
    p = WebPushProvider(WebPushSettings(timeout=TIMEOUT), private_key=other)
    try:
        with pytest.raises(InvalidRequestError) as info:
            await p.send(msg(peer.make_subscription()))
        assert info.value.code == "HTTP403"
    finally:
        await p.close()


async def test_throttled_then_retry_succeeds(peer: WebPushPeer, provider: WebPushProvider) -> None:
    sub = peer.make_subscription(name("throttle"))
    m = msg(sub)
    with pytest.raises(ThrottledError) as info:
        await provider.send(m)
    assert info.value.retry_after == 3
    assert (await provider.send(m)).provider == "webpush"
    statuses = [r.status for r in peer.received if sub["endpoint"].endswith(r.name)]
    assert statuses == [429, 201]


async def test_timeout_is_bounded_then_next_send_works(
    peer: WebPushPeer, provider: WebPushProvider
) -> None:
    with pytest.raises(RetryableError):
        await provider.send(msg(peer.make_subscription(name("slow"))))  # ends at our bound
    assert (await provider.send(msg(peer.make_subscription()))).provider == "webpush"


async def test_unreachable_endpoint_is_retryable(provider: WebPushProvider) -> None:
    sub = {
        "endpoint": "http://127.0.0.1:9/push/x",
        "keys": WebPushPeer().make_subscription()["keys"],
    }
    with pytest.raises(RetryableError):
        await provider.send(msg(sub))


async def test_key_sources(
    tmp_path: Path, peer: WebPushPeer, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_file = tmp_path / "vapid.pem"
    key_file.write_text(PRIVATE)
    raw = load_vapid_key(PRIVATE).private_key.private_numbers().private_value.to_bytes(32, "big")
    monkeypatch.setenv("TEST_VAPID", base64.urlsafe_b64encode(raw).decode().rstrip("="))
    for settings in (
        WebPushSettings(vapid_private_key_file=key_file, timeout=TIMEOUT),
        WebPushSettings(vapid_private_key_env="TEST_VAPID", timeout=TIMEOUT),
    ):
        p = WebPushProvider(settings)
        try:
            assert (await p.send(msg(peer.make_subscription()))).provider == "webpush"
            assert peer.received[-1].vapid_key == PUBLIC
        finally:
            await p.close()
    with pytest.raises(ConfigError):
        WebPushProvider(WebPushSettings())
    monkeypatch.setenv("TEST_VAPID", "garbage!")
    with pytest.raises(ConfigError):
        WebPushProvider(WebPushSettings(vapid_private_key_env="TEST_VAPID"))
