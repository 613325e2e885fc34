"""A Web Push service for tests (aiohttp, plain http on 127.0.0.1).

`make_subscription(name)` plays the browser: it makes a P-256 key pair and auth secret and
returns the subscription dict a page would send to its server. The peer decrypts each
aes128gcm body with that key (`http_ece`), verifies the `Authorization: vapid t=...,k=...`
JWT against the k= key (and `aud` = this origin), and records TTL, Urgency and Topic.

Subscription name prefix selects the answer:
  gone*      410 Gone                  notfound*  404 Not Found
  throttle*  429 (Retry-After: 3) once per subscription, then 201
  error*     500                       slow*      201 after `slow_delay` seconds
Other checks: body > 4096 bytes 413; bad VAPID 401 (403 if the key is not the expected
`application_server_key`); undecryptable body or bad headers 400; unknown name 404.

Use:  async with WebPushPeer() as peer:  sub = peer.make_subscription("alice")
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import http_ece
import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.peers._base import ThreadedPeer

MAX_BODY = 4096


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class WebPushReceived:
    """One push the peer saw (headers lower-cased); `payload` is the decrypted JSON."""

    name: str
    headers: dict[str, str]
    status: int
    ttl: int | None = None
    urgency: str | None = None
    topic: str | None = None
    payload: dict[str, Any] | None = None
    vapid_claims: dict[str, Any] = field(default_factory=dict)
    vapid_key: str | None = None


class WebPushPeer(ThreadedPeer):
    """Local push service. After start: `endpoint`, `make_subscription()`; `received`."""

    def __init__(
        self, *, slow_delay: float = 3.0, application_server_key: str | None = None
    ) -> None:
        super().__init__()
        self.slow_delay = slow_delay
        self.application_server_key = application_server_key
        self.received: list[WebPushReceived] = []
        self._subs: dict[str, tuple[ec.EllipticCurvePrivateKey, bytes]] = {}
        self._throttled: set[str] = set()
        self._runner: web.AppRunner | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def delivered(self) -> list[WebPushReceived]:
        return [r for r in self.received if r.status == 201]

    def make_subscription(self, name: str | None = None) -> dict[str, Any]:
        """A browser-style PushSubscription JSON: {endpoint, keys: {p256dh, auth}}."""
        name = name or uuid.uuid4().hex
        key = ec.generate_private_key(ec.SECP256R1())
        auth = os.urandom(16)
        self._subs[name] = (key, auth)
        public = key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {
            "endpoint": f"{self.endpoint}/push/{name}",
            "keys": {"p256dh": b64url(public), "auth": b64url(auth)},
        }

    async def _serve(self) -> None:
        app = web.Application(client_max_size=1 << 20)
        app.router.add_post("/push/{name}", self._push)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0, backlog=1024).start()
        self.port = self._runner.addresses[0][1]

    async def _shutdown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _check_vapid(self, rec: WebPushReceived) -> int | None:
        """Verify the RFC 8292 header; returns an error status or None."""
        auth = rec.headers.get("authorization", "")
        scheme, _, params = auth.partition(" ")
        parts = dict(p.strip().split("=", 1) for p in params.split(",") if "=" in p)
        if scheme.lower() != "vapid" or "t" not in parts or "k" not in parts:
            return 401
        try:
            public = ec.EllipticCurvePublicKey.from_encoded_point(
                ec.SECP256R1(), b64url_decode(parts["k"])
            )
            rec.vapid_claims = jwt.decode(
                parts["t"], public, algorithms=["ES256"], audience=self.endpoint
            )
        except (ValueError, jwt.PyJWTError):
            return 401
        rec.vapid_key = parts["k"]
        exp = int(rec.vapid_claims.get("exp", 0))
        if not rec.vapid_claims.get("sub") or exp > time.time() + 24 * 3600:
            return 401
        if self.application_server_key and parts["k"] != self.application_server_key:
            return 403
        return None

    async def _push(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        rec = WebPushReceived(name, headers, 201)
        self.received.append(rec)
        rec.urgency, rec.topic = headers.get("urgency"), headers.get("topic")
        try:
            rec.ttl = int(headers["ttl"])
        except (KeyError, ValueError):
            rec.status = 400  # TTL is mandatory (RFC 8030 §5.2)
        vapid_error = self._check_vapid(rec)
        if rec.status != 201:
            pass
        elif vapid_error:
            rec.status = vapid_error
        elif name.startswith("gone"):
            rec.status = 410
        elif name.startswith("notfound") or name not in self._subs:
            rec.status = 404
        elif len(body) > MAX_BODY:
            rec.status = 413
        elif name.startswith("throttle") and name not in self._throttled:
            self._throttled.add(name)
            rec.status = 429
        elif name.startswith("error"):
            rec.status = 500
        else:
            rec.status = self._decrypt(rec, body)
        if rec.status == 201 and name.startswith("slow"):
            await asyncio.sleep(self.slow_delay)
        out = {"Retry-After": "3"} if rec.status == 429 else {}
        if rec.status == 201:
            out["Location"] = f"{self.endpoint}/message/{uuid.uuid4().hex}"
        return web.Response(status=rec.status, headers=out)

    def _decrypt(self, rec: WebPushReceived, body: bytes) -> int:
        if rec.headers.get("content-encoding") != "aes128gcm":
            return 400
        key, auth = self._subs[rec.name]
        try:
            plain = http_ece.decrypt(body, private_key=key, auth_secret=auth, version="aes128gcm")
            rec.payload = json.loads(plain)
        except Exception:  # http_ece raises assorted errors for a bad body
            return 400
        return 201
