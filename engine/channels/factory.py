"""Build the worker's providers from `nudge.toml` (`[channels.*]`)."""

from __future__ import annotations

import os

from engine.channels.base import ChannelProvider
from engine.channels.console import ConsoleProvider
from engine.channels.registry import Providers, Route
from engine.context import Context
from schemas.common import Channel, Platform


class ChannelConfigError(ValueError):
    """A channel is configured in a way that cannot start (e.g. a missing password)."""


def build_providers(context: Context) -> Providers:
    """Console for channels configured `provider = "console"`, the real clients otherwise."""
    channels = context.config.channels
    console = ConsoleProvider()
    routes: dict[Route, ChannelProvider] = {}
    rates: dict[str, float] = {}
    if channels.push.provider == "console":
        routes[(Channel.PUSH, Platform.IOS)] = console
        routes[(Channel.PUSH, Platform.ANDROID)] = console
        routes[(Channel.PUSH, Platform.WEB)] = console
        routes[(Channel.WEBPUSH, Platform.WEB)] = console
    else:
        from engine.channels.push import build_push_providers

        for platform, provider in build_push_providers(channels.push).items():
            routes[(Channel.PUSH, platform)] = provider
            if platform is Platform.WEB:
                routes[(Channel.WEBPUSH, platform)] = provider
            rates[provider.name] = channels.push.tps
    if channels.sms.provider == "console":
        routes[(Channel.SMS, None)] = console
    else:
        from engine.channels.sms.provider import SmppProvider
        from triggers.smpp import InboundHandler

        password = os.environ.get(channels.sms.password_env)
        if password is None:
            raise ChannelConfigError(
                f"channels.sms: set the SMSC password in ${channels.sms.password_env}"
            )
        handler = InboundHandler(sessions=context.sessions, config=context.config)
        sms = SmppProvider(
            channels.sms,
            password=password,
            on_receipt=handler.on_receipt,
            on_inbound=handler.on_inbound,
        )
        handler.reply_with(sms)
        routes[(Channel.SMS, None)] = sms
        # The SMPP provider paces itself in message parts (its own token bucket).
        rates[sms.name] = 1e9
    return Providers(routes, rates=rates)
