"""Native push providers by device platform, from `[channels.push]` in nudge.toml."""

from __future__ import annotations

from engine.channels.base import ChannelProvider
from engine.channels.push.apns import ApnsProvider
from engine.channels.push.fcm import FcmProvider
from engine.channels.push.webpush import WebPushProvider
from engine.config.nudge_toml import PushChannel
from schemas.common import Platform


def build_push_providers(cfg: PushChannel) -> dict[Platform, ChannelProvider]:
    """ios -> APNs, android -> FCM, web -> Web Push, for each service configured.

    Empty unless `cfg.provider == "native"` (the console provider is wired elsewhere).
    Construction reads key files and validates them (raises `ConfigError`); network
    clients are only built by each provider's `start()`, inside the running loop.
    """
    if cfg.provider != "native":
        return {}
    providers: dict[Platform, ChannelProvider] = {}
    if cfg.apns is not None:
        providers[Platform.IOS] = ApnsProvider(cfg.apns)
    if cfg.fcm is not None:
        providers[Platform.ANDROID] = FcmProvider(cfg.fcm)
    if cfg.webpush is not None:
        providers[Platform.WEB] = WebPushProvider(cfg.webpush)
    return providers
