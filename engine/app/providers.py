"""Build the worker's providers from `nudge.toml` (`[channels.*]`)."""

from __future__ import annotations

from engine.channels.base import ChannelProvider
from engine.channels.console import ConsoleProvider
from engine.channels.registry import PUSH_ROUTES, SMS_ROUTE, Providers, Route
from engine.config.nudge_toml import read_secret
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
    if channels.sms.provider == "console":
        routes[SMS_ROUTE] = console
    else:
        from engine.channels.sms.provider import SmppProvider
        from triggers.smpp import InboundHandler

        password = read_secret(
            "channels.sms", file=None, env=channels.sms.password_env, what="the SMSC password"
        )
        handler = InboundHandler(sessions=context.sessions, config=context.config)
        sms = SmppProvider(
            channels.sms,
            password=password,
            on_receipt=handler.on_receipt,
            on_inbound=handler.on_inbound,
        )
        handler.reply_with(sms)
        routes[SMS_ROUTE] = sms
    return Providers(routes, rates=rates)
