"""build_push_providers: nudge.toml `[channels.push]` -> one provider per platform."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from engine.channels.base import Address, Content, OutboundMessage
from engine.channels.push import build_push_providers
from engine.channels.push.apns import ApnsProvider
from engine.channels.push.fcm import FcmProvider
from engine.channels.push.webpush import WebPushProvider, generate_vapid_keypair
from engine.config.nudge_toml import parse_config
from schemas.common import Channel, Platform
from tests.peers.apns import ApnsPeer


def _service_account(path: Path) -> None:
    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "demo-nudge",
                "private_key_id": "k1",
                "private_key": pem.decode(),
                "client_email": "n@demo-nudge.iam.gserviceaccount.com",
                "client_id": "1",
                "token_uri": "https://oauth2.googleapis.com/token",
            }
        )
    )


async def test_native_config_builds_each_platform(tmp_path: Path) -> None:
    _service_account(tmp_path / "sa.json")
    (tmp_path / "vapid.pem").write_text(generate_vapid_keypair()[0])
    with ApnsPeer() as peer:
        cfg = parse_config(f"""
[channels.push]
provider = "native"
apns = {{ key_file = "{peer.key_file}", key_id = "{peer.key_id}", team_id = "{peer.team_id}", \
topic = "{peer.topic}", endpoint = "{peer.endpoint}", ca_file = "{peer.ca_file}", timeout = "2s" }}
fcm = {{ credentials_file = "{tmp_path / "sa.json"}" }}
webpush = {{ vapid_private_key_file = "{tmp_path / "vapid.pem"}" }}
""")
        providers = build_push_providers(cfg.channels.push)
        assert set(providers) == {Platform.IOS, Platform.ANDROID, Platform.WEB}
        assert isinstance(providers[Platform.IOS], ApnsProvider)
        assert isinstance(providers[Platform.ANDROID], FcmProvider)
        assert isinstance(providers[Platform.WEB], WebPushProvider)
        apns = providers[Platform.IOS]
        await apns.start()
        try:
            result = await apns.send(
                OutboundMessage(
                    message_id="m_1",
                    address=Address(channel=Channel.PUSH, platform=Platform.IOS, token="okdevice"),
                    content=Content(title="t", body="b"),
                )
            )
        finally:
            await apns.close()
        assert result.provider == "apns" and peer.delivered[-1].token == "okdevice"
        for p in providers.values():
            await p.close()


def test_console_or_partial_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_VAPID_KEY", generate_vapid_keypair()[0])
    webpush = '\nwebpush = { vapid_private_key_env = "TEST_VAPID_KEY" }'
    console = parse_config('[channels.push]\nprovider = "console"' + webpush)
    assert build_push_providers(console.channels.push) == {}
    native = parse_config('[channels.push]\nprovider = "native"' + webpush)
    assert list(build_push_providers(native.channels.push)) == [Platform.WEB]
