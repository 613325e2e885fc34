"""The provider interface every channel client implements, and the error vocabulary.

Providers never touch the database: the delivery pipeline (`engine/delivery.py`) records
attempts and outcomes; a provider only talks to its service and maps the answer.
"""

from __future__ import annotations

import email.utils
from abc import ABC, abstractmethod
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from schemas.common import Channel, Platform


class Address(BaseModel):
    """Where one message goes: a device (push) or a phone number (SMS, E.164)."""

    channel: Channel
    device_id: str | None = None
    platform: Platform | None = None
    token: str | None = None
    subscription: dict[str, Any] | None = None  # Web Push: {endpoint, keys: {p256dh, auth}}
    app_id: str | None = None  # APNs topic / FCM app, when the device names one
    phone: str | None = None


class PushOptions(BaseModel):
    """Push knobs a template may set (all optional; providers map what they support)."""

    badge: int | None = None
    sound: str | None = None
    category: str | None = None
    thread_id: str | None = None
    interruption_level: str | None = None  # passive | active | time-sensitive | critical
    relevance_score: float | None = None
    mutable_content: bool = False
    content_available: bool = False
    push_type: str | None = None  # apns-push-type; default alert (background if no alert)
    priority: str | None = None  # "high" | "normal"
    collapse_id: str | None = None
    ttl: int | None = None  # seconds
    image: str | None = None
    android_channel_id: str | None = None
    urgency: str | None = None  # Web Push: very-low | low | normal | high


class Content(BaseModel):
    """A rendered message: every part one template file produced."""

    title: str | None = None
    body: str | None = None
    sms: str | None = None
    url: str | None = None
    data: dict[str, str] = Field(default_factory=dict)
    push: PushOptions = Field(default_factory=PushOptions)


class OutboundMessage(BaseModel):
    """What a provider is asked to send. `message_id` is stable across retries and is the
    provider-side id where the protocol has one (APNs `apns-id` is derived from it)."""

    message_id: str
    attempt: int = 1
    address: Address
    content: Content
    transactional: bool = False
    """An OTP or another transactional send: it overtakes marketing sends queued for the
    provider's rate limit (`TokenBucket.acquire(priority=...)`)."""
    pinned: str | None = None
    """Only this provider may take it: an earlier attempt's outcome there is unknown, so
    another provider could deliver it twice (SMS routes over several providers)."""


class ProviderResult(BaseModel):
    """A provider accepted the message."""

    provider: str
    provider_id: str | None = None
    encoding: str | None = None
    parts: int | None = None


class ProviderError(Exception):
    """Base of the error vocabulary. `code` is the provider's own status name (no PII)."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail
        self.provider: str | None = None  # which provider of a route answered, when known


class PermanentAddressError(ProviderError):
    """The address is dead (APNs 410, FCM UNREGISTERED, Web Push 404/410): deactivate it."""


class RetryableError(ProviderError):
    """Transient (5xx, connection loss, timeout): retry with back-off."""


class UnknownOutcomeError(RetryableError):
    """The request may have reached the provider, but no answer came (a timeout after it was
    written): sending again may deliver twice. The delivery policy decides (`[delivery]`)."""


class ThrottledError(RetryableError):
    """The provider asked us to slow down; `retry_after` in seconds when it said."""

    def __init__(self, code: str, detail: str = "", retry_after: float | None = None) -> None:
        super().__init__(code, detail)
        self.retry_after = retry_after


class InvalidRequestError(ProviderError):
    """The request itself is wrong (payload too big, bad field): failed, never retried."""


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from an HTTP `Retry-After` header (seconds or an HTTP date), if any."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class ChannelProvider(ABC):
    """One delivery client (APNs, FCM, Web Push, SMPP, console).

    `start` runs inside the worker's event loop (clients such as aioapns must be built
    there); `send` must be bounded by a timeout; `close` releases connections.
    """

    name: str = "provider"
    paces_itself: bool = False
    """True when the provider applies its own rate limit (e.g. per SMS part); the delivery
    pipeline then takes no token for it."""

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Open connections; called once in the running loop before the first send."""

    @abstractmethod
    async def send(self, message: OutboundMessage) -> ProviderResult:
        """Deliver one message or raise one of the `ProviderError` subclasses."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
