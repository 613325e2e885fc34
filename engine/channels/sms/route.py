"""`SmsRoute`: several SMS providers behind one, in route order, with failover.

A message goes to the providers that serve its number (`countries` prefixes; the most
specific match first, then `priority`, then the order in nudge.toml). One is skipped for
the next when its bind is down (`available` False), its circuit is open (`purgatory`: after
`circuit_failures` failed sends in a row, for `circuit_reset`), or it throttled us and its
`Retry-After` has not passed. A provider that refused the message before taking it (a
`RetryableError`: connection refused, 5xx, no bind) is failed over to the next one; one
whose outcome is unknown (`UnknownOutcomeError`: written, never answered) is not: sending
elsewhere could deliver twice, so the error goes to the delivery policy as it is. Neither
is a message that a provider took in part (an SMPP bind acknowledged some of its parts):
its retries stay on that provider.

The result's `provider` names the provider that sent it; the message row records it. Before
each submit the route tells the caller which provider it is about to try (`submitting`), so
the attempt names it even if the worker dies mid-call: a resend then goes only there.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from purgatory import AsyncCircuitBreakerFactory
from purgatory.domain.model import OpenedState

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
)
from engine.channels.ratelimit import TokenBucket
from engine.config.nudge_toml import SmppProviderSettings, TwilioProviderSettings

log = logging.getLogger("nudge.sms.route")

STICKY_KEPT = 10_000
THROTTLE_PAUSE = 1.0  # seconds a throttling provider is skipped when it gave no Retry-After


Submitting = Callable[[str], Awaitable[None]]
"""Told the name of the provider a message is about to be submitted to."""


def route_order(
    providers: Sequence[SmppProviderSettings | TwilioProviderSettings], phone: str
) -> list[int]:
    """Indexes of the providers serving `phone`, in the order they are tried: the most
    specific prefix first, then `priority`, then the order given."""
    ranked = []
    for index, settings in enumerate(providers):
        specific = settings.serves(phone)
        if specific is not None:
            ranked.append((-specific, settings.priority, index))
    return [index for *_, index in sorted(ranked)]


class NoSmsProvider(RetryableError):
    """Every provider for the number was skipped or refused: retry later (Temporal)."""


@dataclass
class RouteEntry:
    """One provider in the route: its settings, the client, its own pace (None when the
    client paces itself, as SMPP does per part)."""

    settings: SmppProviderSettings | TwilioProviderSettings
    provider: ChannelProvider
    limiter: TokenBucket | None = None
    throttled_until: float = 0.0


def available(provider: ChannelProvider) -> bool:
    """Whether a provider can take a message now (an SMPP bind is up)."""
    bridge = getattr(provider, "bridge", None)
    return bool(getattr(bridge, "bound", True))


def took_part(provider: ChannelProvider, message_id: str) -> bool:
    """Whether the provider acknowledged some part of this message already."""
    acked = getattr(provider, "acked_parts", None)
    return bool(acked(message_id)) if callable(acked) else False


class SmsRoute(ChannelProvider):
    """The SMS channel when several providers are configured (`[[sms.providers]]`)."""

    name = "sms"
    paces_itself = True  # each entry has its own pace

    def __init__(
        self,
        entries: Sequence[RouteEntry],
        *,
        circuit_failures: int = 3,
        circuit_reset: float = 30.0,
    ) -> None:
        self.entries = list(entries)
        self._breakers = AsyncCircuitBreakerFactory(
            default_threshold=circuit_failures,
            default_ttl=circuit_reset,
            # Only a provider's own faults open its circuit, not a bad number or message.
            exclude=[PermanentAddressError, InvalidRequestError, ThrottledError],
        )
        self._sticky: OrderedDict[str, str] = OrderedDict()  # message id -> provider name

    def order(self, phone: str) -> list[RouteEntry]:
        """The providers serving `phone`, in the order they are tried."""
        return [self.entries[i] for i in route_order([e.settings for e in self.entries], phone)]

    async def usable(self, name: str) -> bool:
        """Whether the provider `name` would be tried now: bind up, circuit not open, not
        throttling (an SMS lane asks before it gates a message)."""
        entry = next((e for e in self.entries if e.settings.name == name), None)
        if entry is None or not self._usable(entry):
            return False
        breaker = await self._breakers.get_breaker(name)
        context = breaker.context
        if context.state != "opened" or context.opened_at is None:
            return True
        return time.time() - context.opened_at >= context.ttl  # purgatory stamps time.time()

    async def start(self) -> None:
        await self._breakers.initialize()
        for entry in self.entries:
            await entry.provider.start()

    async def close(self) -> None:
        for entry in self.entries:
            await entry.provider.close()

    async def send(
        self, message: OutboundMessage, *, submitting: Submitting | None = None
    ) -> ProviderResult:
        phone = message.address.phone
        if not phone:
            raise InvalidRequestError("no_phone", "the address has no phone number")
        entries = self.order(phone)
        if not entries:
            raise InvalidRequestError("no_route", "no SMS provider serves this number")
        sticky = message.pinned or self._sticky.get(message.message_id)
        if sticky is not None:
            entries = [e for e in self.entries if e.settings.name == sticky]
            if not entries:
                raise NoSmsProvider("pinned_provider_gone", "the provider it is pinned to is gone")
        last: RetryableError | None = None
        for entry in entries:
            name = entry.settings.name
            if sticky is None and not self._usable(entry):
                log.info("sms provider skipped", extra={"provider": name})
                continue
            try:
                return await self._try(entry, message, submitting)
            except OpenedState:
                log.info("sms provider circuit open", extra={"provider": name})
                continue
            except ProviderError as exc:
                exc.provider = name
                if isinstance(exc, UnknownOutcomeError):
                    self._stick(message.message_id, name)
                    raise  # it may have been sent: never tried elsewhere
                if not isinstance(exc, RetryableError):
                    raise  # a bad number or message: no other provider would take it
                if isinstance(exc, ThrottledError):
                    entry.throttled_until = time.monotonic() + (exc.retry_after or THROTTLE_PAUSE)
                last = exc
            if took_part(entry.provider, message.message_id):
                self._stick(message.message_id, name)
                assert last is not None
                raise last  # part of it went out there: retries stay on that provider
            log.warning(
                "sms provider failed over",
                extra={"provider": name, "code": last.code if last else None},
            )
        if last is not None:
            raise last
        raise NoSmsProvider("no_provider_available", "every SMS provider is down or throttled")

    async def send_text(self, phone: str, text: str) -> ProviderResult:
        """A keyword reply, through the first provider that takes it."""
        last: Exception | None = None
        for entry in self.order(phone):
            send_text = getattr(entry.provider, "send_text", None)
            if send_text is None or not self._usable(entry):
                continue
            try:
                result: ProviderResult = await send_text(phone, text)
                return result
            except UnknownOutcomeError:
                raise
            except RetryableError as exc:
                last = exc
        raise last or NoSmsProvider("no_provider_available", "no SMS provider can reply")

    def _usable(self, entry: RouteEntry) -> bool:
        return available(entry.provider) and entry.throttled_until <= time.monotonic()

    async def _try(
        self, entry: RouteEntry, message: OutboundMessage, submitting: Submitting | None
    ) -> ProviderResult:
        breaker = await self._breakers.get_breaker(entry.settings.name)
        async with breaker:
            if entry.limiter is not None:
                await entry.limiter.acquire(priority=message.transactional)
            if submitting is not None:
                await submitting(entry.settings.name)
            return await entry.provider.send(message)

    def _stick(self, message_id: str, provider: str) -> None:
        self._sticky[message_id] = provider
        while len(self._sticky) > STICKY_KEPT:
            self._sticky.popitem(last=False)
