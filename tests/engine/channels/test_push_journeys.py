"""Push delivery end to end: journeys through the API, the worker and the real clients,
against the APNs (TLS HTTP/2), FCM v1 and Web Push peers. The provider tests of each client
are in `push/`. A worker killed mid-send (the unknown-outcome policy, with the APNs peer
holding the request) is tests/triggers/test_safety.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from temporalio.client import Client

from engine.channels.push.apns import ApnsProvider, apns_id_for
from engine.channels.push.fcm import FcmProvider
from engine.channels.push.webpush import WebPushProvider, generate_vapid_keypair
from engine.channels.registry import Providers
from engine.config.nudge_toml import NudgeConfig, WebPushSettings
from engine.journey import Journeys
from schemas.common import Channel, Platform
from tests.journeys import TEST_JOURNEYS
from tests.kit import Stack, eventually, sent
from tests.peers.apns import ApnsPeer
from tests.peers.fcm import FcmPeer
from tests.peers.webpush import WebPushPeer

VAPID_PRIVATE, VAPID_PUBLIC = generate_vapid_keypair()


@pytest.fixture(scope="module")
def peers() -> Iterator[tuple[ApnsPeer, FcmPeer, WebPushPeer]]:
    with (
        ApnsPeer() as apns,
        FcmPeer() as fcm,
        WebPushPeer(application_server_key=VAPID_PUBLIC) as web,
    ):
        yield apns, fcm, web


def providers(apns: ApnsPeer, fcm: FcmPeer, web: WebPushPeer) -> Providers:
    web_provider = WebPushProvider(
        WebPushSettings(vapid_subject="mailto:ops@nudge.test"), private_key=VAPID_PRIVATE
    )
    return Providers(
        {
            (Channel.PUSH, Platform.IOS): ApnsProvider(apns.settings(timeout="30s")),
            (Channel.PUSH, Platform.ANDROID): FcmProvider(
                fcm.settings(), credentials=fcm.credentials()
            ),
            (Channel.PUSH, Platform.WEB): web_provider,
            (Channel.WEBPUSH, Platform.WEB): web_provider,
        }
    )


def stack(url: str, client: Client, queue: str, peers: Any, **journeys: Any) -> Stack:
    return Stack(
        database_url=url,
        client=client,
        task_queue=queue,
        config=NudgeConfig.model_validate({"journeys": journeys}),
        journeys={**TEST_JOURNEYS, **_shipped()},
        providers=providers(*peers),
    )


def _shipped() -> Journeys:
    from engine.app.journeys import shipped_journeys

    return shipped_journeys()


async def register_all(s: Stack, user: str, web: WebPushPeer, tag: str) -> None:
    await s.call("POST", f"/v1/users/{user}/devices", {"platform": "ios", "token": f"ok-{tag}-ios"})
    await s.call(
        "POST", f"/v1/users/{user}/devices", {"platform": "android", "token": f"ok-{tag}-android"}
    )
    await s.call(
        "POST",
        f"/v1/users/{user}/devices",
        {"platform": "web", "subscription": web.make_subscription(f"ok{tag}")},
    )


async def test_abandoned_cart_reaches_every_device_with_rendered_copy(
    postgres_url: str, temporal_client: Client, task_queue: str, peers: Any
) -> None:
    apns, fcm, web = peers
    async with stack(
        postgres_url,
        temporal_client,
        task_queue,
        peers,
        abandoned_cart={"nudge_after": "1s", "last_call_at": "03:00"},
    ) as s:
        await s.profile("ada", attributes={"first_name": "Ada"})
        await register_all(s, "ada", web, "ada")
        await s.track("ada", "Cart Updated", {"item_count": 2})
        rows = await eventually(lambda: sent(s, "ada", 3))
        assert {m["provider"] for m in rows} == {"apns", "fcm", "webpush"}
        title, body = "Still thinking it over, Ada?", "Your cart with 2 items is waiting for you."
        ios = next(r for r in apns.delivered if r.token == "ok-ada-ios")
        assert ios.payload["aps"]["alert"] == {"title": title, "body": body}
        assert ios.headers["apns-id"] == apns_id_for(
            next(m["id"] for m in rows if m["provider"] == "apns")
        )
        android = next(r for r in fcm.received if r.message.get("token") == "ok-ada-android")
        assert android.message["notification"] == {"title": title, "body": body}
        browser = next(r for r in web.received if r.name == "okada")
        assert browser.payload is not None and browser.payload["title"] == title
        assert browser.vapid_claims["sub"] == "mailto:ops@nudge.test"


async def test_gone_token_is_deactivated_and_never_tried_again(
    postgres_url: str, temporal_client: Client, task_queue: str, peers: Any
) -> None:
    apns, fcm, _ = peers
    async with stack(postgres_url, temporal_client, task_queue, peers) as s:
        await s.device("gil", "ios", "gone-gil-ios")
        await s.device("gil", "android", "gone-gil-android")
        await s.device("gil", "ios", "ok-gil-2")
        await s.track("gil", "Cart Touched", {"cart_id": "1"})
        await s.wait_closed("gil")
        first = await s.messages("gil")
        assert sorted((m["status"], m["reason"]) for m in first) == [
            ("failed", "UNREGISTERED"),
            ("failed", "Unregistered"),
            ("sent", None),
        ]
        devices = (await s.call("GET", "/v1/users/gil/devices"))["items"]
        assert sorted(d["deactivated_reason"] or "" for d in devices) == [
            "",
            "UNREGISTERED",
            "Unregistered",
        ]
        await s.track("gil", "Cart Touched", {"cart_id": "2"})
        await s.wait_closed("gil", count=2)
        assert len(await s.messages("gil")) == 4  # only the live device got the second one
        assert sum(r.token == "gone-gil-ios" for r in apns.received) == 1
        assert sum(r.message.get("token") == "gone-gil-android" for r in fcm.received) == 1


async def test_throttled_send_is_retried_as_one_message_with_two_attempts(
    postgres_url: str, temporal_client: Client, task_queue: str, peers: Any
) -> None:
    async with stack(postgres_url, temporal_client, task_queue, peers) as s:
        await s.device("tim", "ios", "throttle-tim")
        await s.track("tim", "Cart Touched", {"cart_id": "1"})
        await s.wait_closed("tim")
        [message] = await s.messages("tim")
        assert message["status"] == "sent" and message["attempts"] == 2
        detail = await s.call("GET", f"/v1/messages/{message['id']}")
        assert [a["outcome"] for a in detail["attempt_log"]] == ["throttled", "sent"]
        assert detail["attempt_log"][0]["error"] == "TooManyRequests"


async def test_bad_device_registrations_are_refused(
    postgres_url: str, temporal_client: Client, task_queue: str, peers: Any
) -> None:
    async with stack(postgres_url, temporal_client, task_queue, peers) as s:
        for body in (
            {"platform": "blackberry", "token": "x"},
            {"platform": "ios", "token": ""},
            {"platform": "ios", "token": "   "},
            {"platform": "android"},
            {"platform": "web", "subscription": {"endpoint": "not a url", "keys": {}}},
            {"platform": "web", "token": "abc"},
        ):
            response = await s.http.post("/v1/users/bad/devices", json=body)
            assert response.status_code == 422, body
            assert response.json()["type"] == "urn:nudge:problem:invalid-body"
        # Re-registering a token moves it to the new user.
        await s.device("old", "ios", "ok-moving")
        moved = await s.device("new", "ios", "ok-moving")
        assert (await s.call("GET", "/v1/users/old/devices"))["items"] == []
        assert (await s.call("GET", "/v1/users/new/devices"))["items"][0]["id"] == moved["id"]
        await s.call("DELETE", f"/v1/users/new/devices/{moved['id']}")
        assert not (await s.call("GET", "/v1/users/new/devices"))["items"][0]["active"]
