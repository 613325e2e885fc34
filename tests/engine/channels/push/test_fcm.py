"""FcmProvider against the local FCM v1 peer (real sockets, real firebase-admin)."""

from __future__ import annotations

import json
import socket
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import firebase_admin
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from firebase_admin import messaging

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
from engine.channels.push.fcm import FcmProvider, fcm_send_url
from engine.config.nudge_toml import ConfigError, FcmSettings
from schemas.common import Channel, Platform
from tests.peers.fcm import FcmPeer, StaticTokenCredentials

TIMEOUT = 2.0
SLOW = 60.0  # `slow*` answers: far beyond TIMEOUT, so a Timeout is our own bound


@pytest.fixture(scope="module")
def peer() -> Iterator[FcmPeer]:
    with FcmPeer(slow_delay=SLOW) as p:
        yield p


@pytest.fixture
async def provider(peer: FcmPeer) -> AsyncIterator[FcmProvider]:
    p = FcmProvider(peer.settings(timeout=TIMEOUT), credentials=peer.credentials())
    await p.start()
    yield p
    await p.close()


def msg(token: str, **content: object) -> OutboundMessage:
    content.setdefault("title", "Your cart")
    content.setdefault("body", "Still thinking it over?")
    return OutboundMessage(
        message_id=f"m_{uuid.uuid4().hex[:24]}",
        address=Address(channel=Channel.PUSH, platform=Platform.ANDROID, token=token),
        content=Content.model_validate(content),
    )


def tok(prefix: str = "ok") -> str:
    return f"{prefix}{uuid.uuid4().hex}"


def test_private_fcm_url_attribute_still_exists() -> None:
    """Fails loudly when firebase-admin renames what FcmProvider relies on (notes §2.1)."""
    assert firebase_admin.__version__ == "7.7.0"
    app = firebase_admin.initialize_app(
        StaticTokenCredentials(), {"projectId": "p1"}, name=f"probe-{uuid.uuid4().hex}"
    )
    try:
        service = messaging._get_messaging_service(app)
        assert service._fcm_url == "https://fcm.googleapis.com/v1/projects/p1/messages:send"
        assert hasattr(service, "_async_client")
        assert hasattr(service._async_client, "aclose")
    finally:
        firebase_admin.delete_app(app)  # outside a running loop: the library's own path


async def test_notification_fields_reach_the_peer(peer: FcmPeer, provider: FcmProvider) -> None:
    push = PushOptions(
        priority="high",
        ttl=600,
        collapse_id="cart",
        image="https://x.test/i.png",
        android_channel_id="offers",
        sound="default",
        badge=2,
    )
    m = msg(tok(), url="https://x.test/c", data={"cart": "c1"}, push=push)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # the token warning stays local
        result = await provider.send(m)

    rec = peer.received[-1]
    assert result.provider == "fcm"
    assert (result.provider_id or "").startswith(f"projects/{peer.project_id}/messages/")
    assert rec.headers["authorization"] == "Bearer test-token"
    assert rec.project == peer.project_id
    body = rec.message
    assert body["token"] == m.address.token
    assert body["notification"] == {
        "title": "Your cart",
        "body": "Still thinking it over?",
        "image": "https://x.test/i.png",
    }
    assert body["data"] == {"cart": "c1", "url": "https://x.test/c"}
    android = body["android"]
    assert android["priority"] == "high"
    assert android["ttl"] == "600s"
    assert android["collapse_key"] == "cart"
    assert android["notification"] == {
        "channel_id": "offers",
        "sound": "default",
        "notification_count": 2,
    }
    assert "validate_only" not in rec.body


async def test_data_only_message_has_no_notification(peer: FcmPeer, provider: FcmProvider) -> None:
    await provider.send(
        msg(
            tok(),
            title=None,
            body=None,
            data={"k": "v"},
            push=PushOptions(android_channel_id="offers"),
        )
    )
    body = peer.received[-1].message
    assert "notification" not in body and "notification" not in body.get("android", {})
    assert body["data"] == {"k": "v"}


@pytest.mark.parametrize(
    ("prefix", "error", "code"),
    [
        ("gone", PermanentAddressError, "UNREGISTERED"),
        ("mismatch", PermanentAddressError, "SENDER_ID_MISMATCH"),
        ("invalid", InvalidRequestError, "INVALID_ARGUMENT"),
        ("down", RetryableError, "UNAVAILABLE"),
    ],
)
async def test_error_mapping(
    provider: FcmProvider, prefix: str, error: type[Exception], code: str
) -> None:
    with pytest.raises(error) as info:
        await provider.send(msg(tok(prefix)))
    assert getattr(info.value, "code", None) == code
    assert not isinstance(info.value, ThrottledError)


async def test_throttled_then_retry_succeeds(peer: FcmPeer, provider: FcmProvider) -> None:
    m = msg(tok("throttle"))
    with pytest.raises(ThrottledError) as info:
        await provider.send(m)
    assert info.value.code == "QUOTA_EXCEEDED" and info.value.retry_after == 2
    assert (await provider.send(m)).provider == "fcm"
    assert [r.status for r in peer.received if r.token == m.address.token] == [429, 200]


async def test_library_retries_a_503(peer: FcmPeer, provider: FcmProvider) -> None:
    m = msg(tok("flaky"))
    assert (await provider.send(m)).provider == "fcm"
    assert [r.status for r in peer.received if r.token == m.address.token] == [503, 200]


async def test_timeout_is_bounded_then_next_send_works(provider: FcmProvider) -> None:
    with pytest.raises(RetryableError):
        await provider.send(msg(tok("slow")))  # ends at our bound, not the peer's answer
    assert (await provider.send(msg(tok()))).provider == "fcm"


async def test_wrong_credentials_are_not_retried(peer: FcmPeer) -> None:
    p = FcmProvider(peer.settings(timeout=TIMEOUT), credentials=StaticTokenCredentials("nope"))
    try:
        with pytest.raises(InvalidRequestError) as info:
            await p.send(msg(tok()))
        assert info.value.code == "UNAUTHENTICATED"
    finally:
        await p.close()


async def test_unreachable_endpoint_is_retryable(peer: FcmPeer) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = peer.settings(timeout=TIMEOUT, endpoint=f"http://127.0.0.1:{port}")
    p = FcmProvider(settings, credentials=peer.credentials())
    try:
        with pytest.raises(RetryableError):
            await p.send(msg(tok()))
    finally:
        await p.close()


async def test_invalid_options_are_invalid_requests(provider: FcmProvider) -> None:
    with pytest.raises(InvalidRequestError):
        await provider.send(msg(tok(), push=PushOptions(priority="urgent")))
    with pytest.raises(InvalidRequestError):
        await provider.send(msg(tok(), push=PushOptions(ttl=-5)))


async def test_service_account_file_and_close_in_loop(tmp_path: Path, peer: FcmPeer) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    sa = tmp_path / "sa.json"
    sa.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "from-file",
                "private_key_id": "k1",
                "private_key": pem,
                "client_email": "nudge@from-file.iam.gserviceaccount.com",
                "client_id": "1",
                "token_uri": "https://oauth2.googleapis.com/token",
            }
        )
    )
    p = FcmProvider(FcmSettings(credentials_file=sa, endpoint=peer.endpoint))
    assert p.project_id == "from-file"
    await p.start()
    assert p._app is not None
    service = messaging._get_messaging_service(p._app)
    assert service._fcm_url == fcm_send_url(peer.endpoint, "from-file")
    name = p._app.name
    await p.close()  # inside the running loop: must not raise
    with pytest.raises(ValueError):
        firebase_admin.get_app(name)
    with pytest.raises(ConfigError):
        FcmProvider(FcmSettings())
    with pytest.raises(ConfigError):
        FcmProvider(FcmSettings(credentials_file=tmp_path / "missing.json"))
    with pytest.raises(ConfigError):
        FcmProvider(FcmSettings(), credentials=StaticTokenCredentials())  # no project id
