"""ApnsProvider against the local HTTP/2 + TLS APNs peer (real sockets, real aioapns).

`slow*` tokens are answered after a minute, far beyond the provider's `TIMEOUT`: a send that
raises `Timeout` was ended by the provider's own bound, whatever the machine's speed.
`TIMEOUT` itself is long enough for an ordinary send on a loaded machine."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from cryptography.hazmat.primitives import serialization
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
from engine.channels.push.apns import ApnsProvider, apns_id_for
from engine.config.nudge_toml import ApnsSettings, ConfigError
from schemas.common import Channel, Platform
from tests.peers.apns import ApnsPeer

TIMEOUT = 2.0
SLOW = 60.0


@pytest.fixture(scope="module")
def peer() -> Iterator[ApnsPeer]:
    with ApnsPeer(slow_delay=SLOW) as p:
        yield p


@pytest.fixture
async def provider(peer: ApnsPeer) -> AsyncIterator[ApnsProvider]:
    p = ApnsProvider(peer.settings(timeout=TIMEOUT))
    await p.start()
    yield p
    await p.close()


def msg(
    token: str,
    *,
    message_id: str | None = None,
    app_id: str | None = None,
    **content: object,
) -> OutboundMessage:
    content.setdefault("title", "Your cart")
    content.setdefault("body", "Still thinking it over?")
    return OutboundMessage(
        message_id=message_id or f"m_{uuid.uuid4().hex[:24]}",
        address=Address(channel=Channel.PUSH, platform=Platform.IOS, token=token, app_id=app_id),
        content=Content.model_validate(content),
    )


def tok(prefix: str = "ok") -> str:
    return f"{prefix}{uuid.uuid4().hex}"


async def test_alert_fields_reach_the_peer(peer: ApnsPeer, provider: ApnsProvider) -> None:
    push = PushOptions(
        badge=3,
        sound="chime.caf",
        category="CART",
        thread_id="cart-1",
        interruption_level="time-sensitive",
        relevance_score=0.5,
        mutable_content=True,
        collapse_id="cart-1",
        ttl=3600,
    )
    m = msg(
        tok(),
        title="Héllo",
        body="Your cart 🛒",
        url="https://x.test/c",
        push=push,
        data={"cart": "c1"},
    )
    before = int(time.time())
    result = await provider.send(m)
    after = int(time.time()) + 1

    assert result.provider == "apns"
    assert result.provider_id == apns_id_for(m.message_id)
    rec = peer.received[-1]
    assert rec.token == m.address.token and rec.status == 200
    h = rec.headers
    assert h["apns-id"] == result.provider_id
    assert h["apns-topic"] == peer.topic
    assert h["apns-push-type"] == "alert"
    assert h["apns-priority"] == "10"
    assert h["apns-collapse-id"] == "cart-1"
    assert before + 3600 <= int(h["apns-expiration"]) <= after + 3600  # now + ttl, at send
    assert rec.jwt_header["kid"] == peer.key_id and rec.jwt_claims["iss"] == peer.team_id
    assert rec.payload == {
        "cart": "c1",
        "url": "https://x.test/c",
        "aps": {
            "alert": {"title": "Héllo", "body": "Your cart 🛒"},
            "badge": 3,
            "sound": "chime.caf",
            "category": "CART",
            "thread-id": "cart-1",
            "interruption-level": "time-sensitive",
            "relevance-score": 0.5,
            "mutable-content": 1,
        },
    }


async def test_background_push_defaults(peer: ApnsPeer, provider: ApnsProvider) -> None:
    m = msg(tok(), title=None, body=None, push=PushOptions(content_available=True))
    await provider.send(m)
    rec = peer.received[-1]
    assert rec.headers["apns-push-type"] == "background"
    assert rec.headers["apns-priority"] == "5"
    assert "apns-expiration" not in rec.headers and "apns-collapse-id" not in rec.headers
    assert rec.payload == {"aps": {"content-available": 1}}


async def test_apns_id_is_stable_per_message(peer: ApnsPeer, provider: ApnsProvider) -> None:
    m = msg(tok())
    first, second = await provider.send(m), await provider.send(m)
    other = await provider.send(msg(tok()))
    assert first.provider_id == second.provider_id == str(uuid.UUID(first.provider_id or ""))
    assert [r.headers["apns-id"] for r in peer.received[-3:-1]] == [first.provider_id] * 2
    assert other.provider_id != first.provider_id


@pytest.mark.parametrize(
    ("prefix", "error", "code"),
    [
        ("bad", PermanentAddressError, "BadDeviceToken"),
        ("gone", PermanentAddressError, "Unregistered"),
        ("othertopic", PermanentAddressError, "DeviceTokenNotForTopic"),
        ("error", RetryableError, "InternalServerError"),
        ("unavailable", RetryableError, "ServiceUnavailable"),
    ],
)
async def test_error_mapping(
    provider: ApnsProvider, prefix: str, error: type[Exception], code: str
) -> None:
    with pytest.raises(error) as info:
        await provider.send(msg(tok(prefix)))
    assert getattr(info.value, "code", None) == code
    assert not isinstance(info.value, ThrottledError)


async def test_invalid_requests(provider: ApnsProvider) -> None:
    with pytest.raises(InvalidRequestError) as info:
        await provider.send(msg(tok(), app_id="com.example.other"))
    assert info.value.code == "BadTopic"
    with pytest.raises(InvalidRequestError) as info:
        await provider.send(msg(tok(), data={"blob": "x" * 5000}))
    assert info.value.code == "PayloadTooLarge"
    with pytest.raises(InvalidRequestError):
        await provider.send(msg(tok(), push=PushOptions(push_type="carrier-pigeon")))


async def test_throttled_then_retry_succeeds(peer: ApnsPeer, provider: ApnsProvider) -> None:
    m = msg(tok("throttle"))
    with pytest.raises(ThrottledError) as info:
        await provider.send(m)
    assert info.value.code == "TooManyRequests"
    result = await provider.send(m)
    assert result.provider_id == apns_id_for(m.message_id)
    assert [r.status for r in peer.received if r.token == m.address.token] == [429, 200]


async def test_timeout_is_bounded_and_connection_stays_usable(
    peer: ApnsPeer, provider: ApnsProvider
) -> None:
    with pytest.raises(RetryableError) as info:
        await provider.send(msg(tok("slow")))
    assert info.value.code == "Timeout"  # our bound, not the peer's answer a minute later
    before = peer.connections
    assert (await provider.send(msg(tok()))).provider == "apns"
    assert peer.connections == before  # same connection, not a rebuilt client
    assert provider._client is not None
    for conn in provider._client.pool.connections:
        assert not conn.requests and not conn.request_streams  # nothing left behind


async def test_connection_drop_after_timeout_fails_fast(provider: ApnsProvider) -> None:
    """aioapns 4.0 alone: the cancelled request makes connection_lost raise and the next
    request on that connection hangs until our timeout (notes §1.5, bug 1)."""
    with pytest.raises(RetryableError):
        await provider.send(msg(tok("slow")))
    with pytest.raises(RetryableError) as info:
        await provider.send(msg(tok("goaway")))
    # Fails on the dropped connection itself: a hang until our timeout would be "Timeout".
    assert info.value.code == "ConnectionFailed"
    assert (await provider.send(msg(tok()))).provider == "apns"


async def test_timed_out_stream_gives_its_slot_back() -> None:
    """One connection allowed, one stream per connection: a timed-out request must free
    its stream slot, or every later send would wait for a slot that never comes back."""
    async with ApnsPeer(slow_delay=SLOW, max_concurrent_streams=1) as peer:
        p = ApnsProvider(peer.settings(timeout=TIMEOUT), max_connections=1)
        try:
            assert (await p.send(msg(tok()))).provider == "apns"  # learns the limit
            with pytest.raises(RetryableError):
                await p.send(msg(tok("slow")))
            for _ in range(3):
                assert (await p.send(msg(tok()))).provider == "apns"
            assert peer.connections == 1
        finally:
            await p.close()


async def test_wrong_signing_key_is_rejected(peer: ApnsPeer) -> None:
    other = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    p = ApnsProvider(peer.settings(timeout=TIMEOUT), key=other.decode())
    try:
        with pytest.raises(InvalidRequestError) as info:
            await p.send(msg(tok()))
        assert info.value.code == "InvalidProviderToken"
    finally:
        await p.close()


async def test_unreachable_endpoint_is_retryable(peer: ApnsPeer) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = ApnsProvider(peer.settings(timeout=TIMEOUT, endpoint=f"https://localhost:{port}"))
    try:
        with pytest.raises(RetryableError):
            await p.send(msg(tok()))
    finally:
        await p.close()


async def test_key_from_env_and_config_errors(
    peer: ApnsPeer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_APNS_KEY", peer.private_key_pem)
    p = ApnsProvider(peer.settings(timeout=TIMEOUT, key_file=None, key_env="TEST_APNS_KEY"))
    try:
        assert (await p.send(msg(tok()))).provider == "apns"
    finally:
        await p.close()
    base = dict(key_id="K", team_id="T", topic="t")
    with pytest.raises(ConfigError):
        ApnsProvider(ApnsSettings(**base))  # no key at all
    monkeypatch.setenv("TEST_APNS_KEY", "not a key")
    with pytest.raises(ConfigError):
        ApnsProvider(ApnsSettings(key_env="TEST_APNS_KEY", **base))
    with pytest.raises(ConfigError):
        ApnsProvider(ApnsSettings(endpoint="http://x", **base), key=peer.private_key_pem)
