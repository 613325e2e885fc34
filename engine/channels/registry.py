"""Which provider delivers to which address, and the rate limiter of each connection."""

from __future__ import annotations

from collections.abc import Mapping

from engine.channels.base import Address, ChannelProvider, ProviderError
from engine.channels.console import ConsoleProvider
from engine.channels.ratelimit import RateLimiters, TokenBucket
from schemas.common import Channel, Platform

Route = tuple[Channel, Platform | None]
PUSH_ROUTES: tuple[Route, ...] = (
    (Channel.PUSH, Platform.IOS),
    (Channel.PUSH, Platform.ANDROID),
    (Channel.PUSH, Platform.WEB),  # PUSH reaches every push address, browsers too
    (Channel.WEBPUSH, Platform.WEB),
)
SMS_ROUTE: Route = (Channel.SMS, None)


class NoProvider(ProviderError):
    """No provider is configured for an address (e.g. FCM without credentials)."""


class Providers:
    """The worker's providers, started once in its event loop and shared by all runs."""

    def __init__(
        self,
        routes: Mapping[Route, ChannelProvider],
        *,
        rates: Mapping[str, float] | None = None,
        limiters: RateLimiters | None = None,
    ) -> None:
        self._routes = dict(routes)
        self._rates = dict(rates or {})
        self._limiters = limiters or RateLimiters()

    @classmethod
    def console(cls, console: ChannelProvider | None = None) -> Providers:
        """Every channel to one console provider (the embedded default of `nudge dev`);
        tests pass their own recording one."""
        provider = console or ConsoleProvider()
        return cls(dict.fromkeys([*PUSH_ROUTES, SMS_ROUTE], provider))

    def for_address(self, address: Address) -> ChannelProvider:
        platform = None if address.channel is Channel.SMS else address.platform
        provider = self._routes.get((address.channel, platform))
        if provider is None:
            raise NoProvider("no_provider", f"{address.channel}/{platform}")
        return provider

    def limiter(self, provider: ChannelProvider) -> TokenBucket | None:
        """The token bucket of a provider connection (shared by every run in this worker), or
        None for a provider that paces itself (SMPP counts message parts, not messages)."""
        if provider.paces_itself:
            return None
        return self._limiters.get(provider.name, self._rates.get(provider.name, 1000.0))

    def unique(self) -> list[ChannelProvider]:
        seen: dict[int, ChannelProvider] = {}
        for provider in self._routes.values():
            seen.setdefault(id(provider), provider)
        return list(seen.values())

    async def start(self) -> None:
        for provider in self.unique():
            await provider.start()

    async def close(self) -> None:
        for provider in self.unique():
            await provider.close()
