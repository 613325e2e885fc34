"""Build the worker's providers from `nudge.toml` (`[channels.*]`)."""

from __future__ import annotations

import functools

from engine.channels.base import ChannelProvider
from engine.channels.console import ConsoleProvider
from engine.channels.registry import PUSH_ROUTES, SMS_ROUTE, Providers, Route
from engine.config.nudge_toml import TwilioProviderSettings, read_secret
from engine.context import Context
from schemas.common import Channel, Platform


def build_providers(context: Context, *, show_bodies: bool = False) -> Providers:
    """Console for channels configured `provider = "console"`, the real clients otherwise.
    `show_bodies`: the console prints message text (`nudge dev` only: it is personal data)."""
    channels = context.config.channels
    console = ConsoleProvider(show_bodies=show_bodies)
    routes: dict[Route, ChannelProvider] = {}
    rates: dict[str, float] = {}
    if channels.push.provider == "console":
        routes.update(dict.fromkeys(PUSH_ROUTES, console))
    else:
        from engine.channels.push import build_push_providers

        for platform, provider in build_push_providers(channels.push).items():
            routes[(Channel.PUSH, platform)] = provider
            if platform is Platform.WEB:
                routes[(Channel.WEBPUSH, platform)] = provider
            rates[provider.name] = channels.push.tps
    if not context.config.sms_providers():
        routes[SMS_ROUTE] = console
    else:
        routes[SMS_ROUTE] = build_sms(context)
    return Providers(routes, rates=rates)


def build_sms(context: Context) -> ChannelProvider:
    """The SMS channel: the one `[channels.sms]` SMPP bind, or the route over every
    `[[sms.providers]]` entry. Keyword replies go out the same way."""
    from engine.channels.ratelimit import TokenBucket
    from engine.channels.sms.provider import SmppProvider
    from engine.channels.sms.route import RouteEntry, SmsRoute
    from engine.channels.sms.twilio import TwilioProvider
    from triggers.smpp import InboundHandler

    config = context.config
    handler = InboundHandler(sessions=context.sessions, config=config)
    entries = []
    for settings in config.sms_providers():
        if isinstance(settings, TwilioProviderSettings):
            token = read_secret(
                f"sms.providers.{settings.name}",
                file=None,
                env=settings.auth_token_env,
                what="the provider's auth token",
            )
            entries.append(
                RouteEntry(settings, TwilioProvider(settings, token), TokenBucket(settings.tps))
            )
            continue
        password = read_secret(
            f"sms.providers.{settings.name}" if config.sms.providers else "channels.sms",
            file=None,
            env=settings.password_env,
            what="the SMSC password",
        )
        smpp = SmppProvider(
            settings,
            password=password,
            on_receipt=handler.on_receipt,
            on_inbound=handler.on_inbound,
            housekeeping=functools.partial(
                handler.sweep, hold=settings.concat_timeout.total_seconds()
            ),
        )
        smpp.name = settings.name if config.sms.providers else smpp.name
        entries.append(RouteEntry(settings, smpp))
    if not config.sms.providers:
        (only,) = entries
        assert isinstance(only.provider, SmppProvider)
        handler.reply_with(only.provider)
        return only.provider
    route = SmsRoute(
        entries,
        circuit_failures=config.sms.circuit_failures,
        circuit_reset=config.sms.circuit_reset.total_seconds(),
    )
    handler.reply_with(route)
    return route
