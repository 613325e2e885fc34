"""The device registry: push tokens and Web Push subscriptions."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, and_, select
from sqlalchemy.ext.asyncio import AsyncSession

from engine import ids
from engine.clock import now
from engine.store import consent
from engine.store.models import Device, User
from engine.store.rows import one_of
from schemas.common import Channel, Platform


def channel_of(platform: Platform | str) -> Channel:
    return Channel.WEBPUSH if Platform(platform) is Platform.WEB else Channel.PUSH


async def register(
    session: AsyncSession,
    *,
    user: User,
    platform: Platform,
    token: str,
    subscription: dict[str, Any] | None = None,
    app_id: str | None = None,
    locale: str | None = None,
    timezone: str | None = None,
) -> Device:
    """Register (or re-register) a device. A token seen before moves to `user` and is
    re-activated. Registering a device is the OS-level push opt-in, so marketing push
    consent becomes `subscribed` unless the user opted out before."""
    stamp = now()
    device = await session.scalar(select(Device).where(Device.token == token))
    if device is None:
        device = Device(id=ids.new_device_id(), token=token, created_at=stamp)
        session.add(device)
    device.user_id = user.id
    device.platform = platform
    device.subscription = subscription
    device.app_id = app_id
    device.locale = locale
    device.timezone = timezone
    device.active = True
    device.deactivated_at = None
    device.deactivated_reason = None
    device.updated_at = stamp
    await session.flush()
    channels = {Channel.PUSH, channel_of(platform)}
    for channel in sorted(channels):
        state = await consent.current(
            session, user_id=user.id, channel=channel, topic=consent.MARKETING
        )
        if state is consent.ConsentState.UNKNOWN:
            await consent.record(
                session,
                user_id=user.id,
                channel=channel,
                topic=consent.MARKETING,
                state=consent.ConsentState.SUBSCRIBED,
                source=consent.ConsentSource.DEVICE,
                evidence=f"device {device.id} registered ({platform.value})",
            )
    return device


async def unregister(session: AsyncSession, *, user: User, device_id: str) -> bool:
    device = await session.get(Device, device_id)
    if device is None or device.user_id != user.id:
        return False
    await deactivate(session, device=device, reason="unregistered")
    return True


async def deactivate(session: AsyncSession, *, device: Device, reason: str) -> None:
    """Never try this device again (dead token, unregistered); keeps the reason and time."""
    device.active = False
    device.deactivated_at = now()
    device.deactivated_reason = reason[:100]
    device.updated_at = device.deactivated_at


def platforms_for(channel: Channel) -> list[Platform]:
    """The devices a send on `channel` reaches: PUSH every push address the user has (apps
    and browsers); WEBPUSH, browsers."""
    if channel is Channel.PUSH:
        return [Platform.WEB, Platform.IOS, Platform.ANDROID]
    return [Platform.WEB]


def reachable(dialect: str, user_id: Any, platforms: str) -> ColumnElement[bool]:
    """The user's active devices on the platforms bound as `platforms` (a list,
    `platforms_for`); read newest first (`NEWEST_FIRST`), the gate reads them in its locked
    statement."""
    return and_(
        Device.user_id == user_id,
        Device.active.is_(True),
        one_of(dialect, Device.platform, platforms),
    )


NEWEST_FIRST = (Device.updated_at.desc(), Device.id)


async def list_devices(session: AsyncSession, *, user_id: str) -> list[Device]:
    return list(
        await session.scalars(
            select(Device).where(Device.user_id == user_id).order_by(Device.created_at)
        )
    )
