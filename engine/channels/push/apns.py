"""Apple Push Notification service over HTTP/2 (aioapns 4.0, token auth with a .p8 key).

aioapns has no host option, no request timeout and a few bugs around cancelled requests
(see /work/shared/notes/channel-libraries.md §1). This module therefore:
- points each client at `ApnsSettings.endpoint` by giving its pool a private protocol
  subclass (no global state is changed);
- bounds every send with `asyncio.wait_for(settings.timeout)`;
- cleans up after a request cancelled by that timeout, so the connection stays usable.
"""

from __future__ import annotations

import asyncio
import ssl
import uuid
from typing import Any
from urllib.parse import urlsplit

from aioapns import APNs, NotificationRequest, PushType
from aioapns.common import NotificationResult
from aioapns.connection import APNsProductionClientProtocol
from aioapns.exceptions import ConnectionError as ApnsConnectionError
from aioapns.exceptions import MaxAttemptsExceeded
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from h2.errors import ErrorCodes
from h2.exceptions import H2Error

from engine.channels.base import (
    ChannelProvider,
    Content,
    InvalidRequestError,
    OutboundMessage,
    PermanentAddressError,
    ProviderResult,
    RetryableError,
    ThrottledError,
    UnknownOutcomeError,
)
from engine.config.nudge_toml import ApnsSettings, ConfigError, read_secret

# Fixed forever: changing it would give a retried message a new apns-id.
_APNS_ID_NAMESPACE = uuid.UUID("5d0f3c1e-7a51-4e0c-9a8e-6e75646765a1")
_DEAD_TOKEN_REASONS = frozenset({"BadDeviceToken", "DeviceTokenNotForTopic", "Unregistered"})
_PRIORITY = {"high": 10, "normal": 5, "low": 1}


def apns_id_for(message_id: str) -> str:
    """The `apns-id` of a message: a UUIDv5 of its `message_id`, the same on every retry."""
    return str(uuid.uuid5(_APNS_ID_NAMESPACE, message_id))


class _Protocol(APNsProductionClientProtocol):
    """aioapns' connection with its 4.0 bugs around cancelled requests worked around."""

    async def send_notification(self, request: NotificationRequest) -> NotificationResult:
        try:
            return await super().send_notification(request)
        except asyncio.CancelledError:
            # A cancelled future left in `requests` makes `connection_lost` raise
            # InvalidStateError and strand every other request on the connection.
            self._forget(request.notification_id)
            raise

    def _forget(self, notification_id: str) -> None:
        self.requests.pop(notification_id, None)
        self.request_statuses.pop(notification_id, None)
        for stream_id, owner in list(self.request_streams.items()):
            if owner != notification_id:
                continue
            del self.request_streams[stream_id]
            try:
                self.conn.reset_stream(stream_id, ErrorCodes.CANCEL)
            except H2Error:
                continue  # already closed: its slot was released when it ended
            if self.transport is not None and not self.transport.is_closing():
                self.flush()
            # A reset stream never ends, so aioapns would never give its slot back.
            self.free_channels.release()

    def on_stream_ended(self, stream_id: int) -> None:
        # aioapns forgets stream->request entries only for errors; a 200 leaked one each.
        self.request_streams.pop(stream_id, None)
        super().on_stream_ended(stream_id)

    def connection_lost(self, exc: Exception | None) -> None:
        for notification_id, future in list(self.requests.items()):
            if future.done():
                del self.requests[notification_id]
        super().connection_lost(exc)


def build_payload(content: Content) -> dict[str, Any]:
    """The APNs JSON body: `aps` from the content and push options, custom data beside it."""
    opts = content.push
    aps: dict[str, Any] = {}
    alert = {k: v for k, v in (("title", content.title), ("body", content.body)) if v}
    if alert:
        aps["alert"] = alert
    optional = {
        "badge": opts.badge,
        "sound": opts.sound,
        "category": opts.category,
        "thread-id": opts.thread_id,
        "interruption-level": opts.interruption_level,
        "relevance-score": opts.relevance_score,
    }
    aps.update({k: v for k, v in optional.items() if v is not None})
    if opts.mutable_content:
        aps["mutable-content"] = 1
    if opts.content_available:
        aps["content-available"] = 1
    payload: dict[str, Any] = dict(content.data)
    if content.url and "url" not in payload:
        payload["url"] = content.url
    payload["aps"] = aps
    return payload


class ApnsProvider(ChannelProvider):
    """Sends to APNs with token auth. Timeout per send: `settings.timeout` (seconds).

    The aioapns client is built inside the running loop (in `start()` or on the first send);
    `ssl_context` overrides the one made from `settings.ca_file` (for a self-signed peer).
    """

    name = "apns"

    def __init__(
        self,
        settings: ApnsSettings,
        *,
        key: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        max_connections: int = 10,
        max_connection_attempts: int = 3,
    ) -> None:
        self.settings = settings
        self._key = (
            key
            if key is not None
            else read_secret(
                "apns", file=settings.key_file, env=settings.key_env, what="the .p8 signing key"
            )
        )
        try:
            loaded = load_pem_private_key(self._key.encode(), password=None)
        except ValueError as exc:
            raise ConfigError("apns: the signing key is not a PEM private key") from exc
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise ConfigError("apns: the signing key must be an EC P-256 (.p8) key")
        url = urlsplit(settings.endpoint)
        if url.scheme != "https" or not url.hostname:
            raise ConfigError(f"apns: endpoint must be https://host[:port], not {url.geturl()!r}")
        # The host is also the TLS server name and the HTTP/2 `host` header.
        self._protocol = type(
            "NudgeApnsProtocol",
            (_Protocol,),
            {"APNS_SERVER": url.hostname, "APNS_PORT": url.port or 443},
        )
        if ssl_context is None:
            cafile = str(settings.ca_file) if settings.ca_file else None
            ssl_context = ssl.create_default_context(cafile=cafile)
        self._ssl_context = ssl_context
        self._max_connections = max_connections
        self._max_attempts = max_connection_attempts
        self._timeout = settings.timeout.total_seconds()
        self._client: APNs | None = None

    def _build_client(self) -> APNs:
        async def _quiet(request: NotificationRequest, result: NotificationResult) -> None:
            """Results are mapped by `send`; this stops aioapns logging each one again."""

        client = APNs(
            key=self._key,
            key_id=self.settings.key_id,
            team_id=self.settings.team_id,
            topic=self.settings.topic,
            max_connections=self._max_connections,
            max_connection_attempts=self._max_attempts,
            ssl_context=self._ssl_context,
            err_func=_quiet,
        )
        client.pool.protocol_class = self._protocol
        return client

    async def start(self) -> None:
        if self._client is None:
            self._client = self._build_client()

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.pool.close()
            await asyncio.sleep(0)  # let connection_lost callbacks run

    def request_for(self, message: OutboundMessage) -> NotificationRequest:
        """The aioapns request for `message` (headers and body); raises InvalidRequestError."""
        token = message.address.token
        if not token:
            raise InvalidRequestError("MissingDeviceToken", "the address has no APNs token")
        content = message.content
        opts = content.push
        has_alert = bool(content.title or content.body)
        try:
            push_type = PushType(opts.push_type or ("alert" if has_alert else "background"))
        except ValueError as exc:
            raise InvalidRequestError("BadPushType", str(opts.push_type)) from exc
        if opts.priority is not None and opts.priority not in _PRIORITY:
            raise InvalidRequestError("BadPriority", opts.priority)
        # Apple requires priority 5 for background pushes; alerts default to 10.
        default = 10 if push_type is not PushType.BACKGROUND else 5
        priority = _PRIORITY[opts.priority] if opts.priority else default
        return NotificationRequest(
            device_token=token,
            message=build_payload(content),
            notification_id=apns_id_for(message.message_id),
            time_to_live=opts.ttl,
            priority=priority,
            collapse_key=opts.collapse_id,
            push_type=push_type,
            apns_topic=message.address.app_id or None,
        )

    async def send(self, message: OutboundMessage) -> ProviderResult:
        request = self.request_for(message)
        if self._client is None:
            self._client = self._build_client()
        try:
            result = await asyncio.wait_for(
                self._client.send_notification(request), timeout=self._timeout
            )
        except TimeoutError as exc:
            raise UnknownOutcomeError("Timeout", f"no answer within {self._timeout:g}s") from exc
        except (MaxAttemptsExceeded, ApnsConnectionError, OSError, H2Error) as exc:
            raise RetryableError("ConnectionFailed", type(exc).__name__) from exc
        return _map_result(result)


def _map_result(result: NotificationResult) -> ProviderResult:
    status = int(result.status) if str(result.status).isdigit() else 0
    reason = result.description or f"HTTP{status}"
    detail = f"APNs answered {status}"
    if status == 200:
        return ProviderResult(provider="apns", provider_id=result.notification_id)
    if status == 410 or reason in _DEAD_TOKEN_REASONS:
        raise PermanentAddressError(reason, detail)
    if status == 429:
        raise ThrottledError(reason, detail)
    if status >= 500 or status == 0:
        raise RetryableError(reason, detail)
    raise InvalidRequestError(reason, detail)
