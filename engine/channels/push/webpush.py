"""Web Push (RFC 8030 / 8291 aes128gcm / RFC 8292 VAPID) with pywebpush's `webpush_async`.

The push service is whatever `subscription["endpoint"]` names (FCM, Mozilla autopush,
Apple, or a local test peer); VAPID's `aud` claim is derived from that URL.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
from typing import Any

import aiohttp
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid
from pywebpush import WebPushException, webpush_async

from engine.channels.base import (
    ChannelProvider,
    InvalidRequestError,
    OutboundMessage,
    PermanentAddressError,
    ProviderError,
    ProviderResult,
    RetryableError,
    ThrottledError,
    UnknownOutcomeError,
    parse_retry_after,
)
from engine.config.nudge_toml import ConfigError, WebPushSettings, read_secret

DEFAULT_TTL = 24 * 3600  # seconds a push service keeps an undelivered message
_URGENCIES = frozenset({"very-low", "low", "normal", "high"})
_TOPIC = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def generate_vapid_keypair() -> tuple[str, str]:
    """A new VAPID key pair: (private key as PKCS#8 PEM text, public key as base64url).

    The private PEM is what `vapid_private_key_file` / `vapid_private_key_env` hold; the
    public key is the uncompressed P-256 point (65 bytes, base64url without padding) that
    browsers take as `applicationServerKey` in `pushManager.subscribe`.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return private_pem, _b64url(public)


def load_vapid_key(text: str) -> Vapid:
    """A `Vapid` signer from PEM text (PKCS#8 or SEC1), or base64url raw / DER key text."""
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_private_key(text.encode(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
                raise ConfigError("webpush: the VAPID key must be an EC P-256 key")
            return Vapid(key)
        return Vapid.from_string(text)
    except ConfigError:
        raise
    except Exception as exc:  # py_vapid raises assorted errors for bad key text
        raise ConfigError("webpush: the VAPID private key cannot be loaded") from exc


def _check_keys(keys: Any) -> None:
    """Refuse subscription keys pywebpush would choke on (it raises assorted errors)."""
    try:
        p256dh = base64.urlsafe_b64decode(keys["p256dh"] + "=" * (-len(keys["p256dh"]) % 4))
        auth = base64.urlsafe_b64decode(keys["auth"] + "=" * (-len(keys["auth"]) % 4))
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), p256dh)
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidRequestError("InvalidSubscription", "unusable p256dh/auth keys") from exc
    if len(auth) != 16:
        raise InvalidRequestError("InvalidSubscription", "auth secret is not 16 bytes")


def _topic(collapse_id: str) -> str:
    """RFC 8030 `Topic` (<= 32 URL-safe chars); longer ids are hashed to fit, stably."""
    if _TOPIC.match(collapse_id):
        return collapse_id
    return _b64url(hashlib.sha256(collapse_id.encode()).digest())[:32]


class WebPushProvider(ChannelProvider):
    """Sends Web Push messages. Timeout per send: `settings.timeout` (seconds).

    Body: JSON `{"title", "body", "url", "data"}`, encrypted for the subscription.
    TTL: `PushOptions.ttl` seconds (default one day); `Urgency` from `PushOptions.urgency`;
    `Topic` from `PushOptions.collapse_id`. `private_key` (PEM or base64url) overrides the
    key named by the settings.
    """

    name = "webpush"

    def __init__(self, settings: WebPushSettings, *, private_key: str | None = None) -> None:
        self.settings = settings
        self._vapid = load_vapid_key(
            private_key
            if private_key is not None
            else read_secret(
                "webpush",
                file=settings.vapid_private_key_file,
                env=settings.vapid_private_key_env,
                what="the VAPID private key",
            )
        )
        self._timeout = settings.timeout.total_seconds()
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession()

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _request(self, message: OutboundMessage) -> tuple[dict[str, Any], str, dict[str, str]]:
        sub = message.address.subscription
        if not sub or not isinstance(sub.get("endpoint"), str) or not sub.get("keys"):
            raise InvalidRequestError("MissingSubscription", "no endpoint/keys in the address")
        _check_keys(sub["keys"])
        content, opts = message.content, message.content.push
        headers: dict[str, str] = {}
        if opts.urgency is not None:
            if opts.urgency not in _URGENCIES:
                raise InvalidRequestError("BadUrgency", opts.urgency)
            headers["Urgency"] = opts.urgency
        if opts.collapse_id:
            headers["Topic"] = _topic(opts.collapse_id)
        body = {
            "title": content.title,
            "body": content.body,
            "url": content.url,
            "data": dict(content.data),
        }
        return sub, json.dumps(body, ensure_ascii=False), headers

    async def send(self, message: OutboundMessage) -> ProviderResult:
        sub, data, headers = self._request(message)
        ttl = message.content.push.ttl
        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            response = await asyncio.wait_for(
                webpush_async(
                    subscription_info=sub,
                    data=data,
                    vapid_private_key=self._vapid,
                    vapid_claims={"sub": self.settings.vapid_subject},  # fresh: it is mutated
                    ttl=DEFAULT_TTL if ttl is None else ttl,
                    headers=dict(headers),
                    timeout=self._timeout,
                    aiohttp_session=self._session,
                ),
                timeout=self._timeout,
            )
        except TimeoutError as exc:
            raise UnknownOutcomeError("Timeout", f"no answer within {self._timeout:g}s") from exc
        except WebPushException as exc:
            raise _map_error(exc) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise RetryableError("NetworkError", type(exc).__name__) from exc
        location = getattr(response, "headers", {}).get("Location")
        return ProviderResult(provider=self.name, provider_id=location)


def _map_error(exc: WebPushException) -> ProviderError:
    status = exc.status_code
    if status is None:  # raised before any request: the subscription keys are unusable
        return InvalidRequestError("InvalidSubscription", "pywebpush refused the subscription")
    code, detail = f"HTTP{status}", f"push service answered {status}"
    if status in (404, 410):
        return PermanentAddressError(code, detail)
    if status == 429:
        return ThrottledError(code, detail, retry_after=parse_retry_after(exc.retry_after))
    if status >= 500:
        return RetryableError(code, detail)
    return InvalidRequestError(code, detail)
