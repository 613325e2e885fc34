"""The gate, in the database: load a send's facts, decide (`engine.policy.gate`), and reserve.

One short transaction per send: lock the user's row (Postgres `FOR UPDATE`; SQLite's
`BEGIN IMMEDIATE` serialises writers) reading the consent state and a push's devices in the
same statement, then the counted sends of the caps that apply (one query for all of them),
render the template, and insert the message rows. Concurrent sends to one user
wait on the lock, so two of them can never both pass a cap: the first one's `pending` rows
are counted by the second. On Postgres the statements run on the driver inside the caller's
`engine.store.driver.transaction`: each statement there costs a third of the CPU it took
through the session.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ScalarSelect, Select, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from engine.channels.base import Address, Content
from engine.config.nudge_toml import Cap, NudgeConfig
from engine.delivery import rows
from engine.delivery.templates import LINKS, LinkBook, TemplateError, TemplateStore
from engine.observability.metrics import SENDS, SUPPRESSIONS, count_send
from engine.policy import consent as consent_rule
from engine.policy import gate as decide
from engine.policy.caps import applicable_caps, counted_times, window_start
from engine.store import consent, devices, driver, messages
from engine.store.models import Device, Link, Message, User
from engine.store.rows import locking, per_dialect
from engine.store.users import profile_context
from schemas.common import Channel, ConsentState, Platform
from schemas.journeys import DeliverRequest

log = logging.getLogger(__name__)


@dataclass
class Reserved:
    """The gate let the send through: its `pending` rows, one per address, and the tracked
    links its content carries (stored after the rows; they point at the first row)."""

    rows: list[tuple[Message, Address]]
    links: list[Link]


Decision = Reserved | decide.Suppress | decide.Defer


async def run_gate(
    session: AsyncSession,
    request: DeliverRequest,
    *,
    now: datetime,
    config: NudgeConfig,
    templates: TemplateStore,
    rand: Callable[[], float],
    link_base: str | None = None,
) -> tuple[Decision, list[Message]]:
    """Decide one send inside the caller's transaction; returns the decision and the rows to
    insert (the reserved rows, or the one suppressed row). Defers write nothing."""
    topic = consent_rule.topic_for(transactional=request.transactional)
    user, raw_state, reached = await _locked(session, request, topic)
    addresses: list[Address] = []
    if user is not None and user.erased_at is None and not request.holdout:
        addresses = _addresses(user, request.channel, config, reached)
    zone = (user.timezone if user else None) or config.timezone
    facts = decide.SendFacts(
        now=now,
        zone=zone,
        channel=request.channel.value,
        transactional=request.transactional,
        holdout=request.holdout,
        reachable=bool(addresses),
        consent=ConsentState(raw_state) if raw_state else ConsentState.UNKNOWN,
    )
    verdict = decide.before_caps(facts, config.quiet_hours, rand=rand())
    if verdict is None:
        caps = applicable_caps(
            config.caps,
            channel=request.channel,
            journey=request.journey,
            transactional=request.transactional,
        )
        if caps:
            verdict = decide.over_caps(
                now,
                await _windows(session, request.user_id, caps, now=now, zone=zone),
                zone=zone,
                deferrals=request.deferrals,
            )
    if isinstance(verdict, decide.Defer):
        return verdict, []
    if verdict is None:
        assert user is not None
        book = LinkBook(base=link_base) if link_base else None
        content = _render(request, user, templates, book)
        if content is None:
            verdict = decide.Suppress("render_failed")
        else:
            several = len(addresses) > 1
            reserved = [
                (rows.reserved(request, address, content, now, several=several), address)
                for address in addresses
            ]
            # A push to several devices carries the same links: they count for its first row.
            links = [
                Link(code=code, message_id=reserved[0][0].id, url=url, created_at=now)
                for code, url in (book.links if book else [])
            ]
            return Reserved(reserved, links), [row for row, _ in reserved]
    SUPPRESSIONS.labels(verdict.reason).inc()
    SENDS.labels(request.channel.value, "suppressed").inc()
    count_send(request.journey, request.step, "suppressed")
    return verdict, [rows.suppressed(request, now, verdict.reason)]


async def _locked(
    session: AsyncSession, request: DeliverRequest, topic: str
) -> tuple[User | None, str | None, list[Device]]:
    """The user's row, locked, with the consent state of the send's topic and, for a push,
    the devices it reaches (newest first), in one statement. The rows come back as
    detached `User` and `Device` objects of the columns the gate reads."""
    values: dict[str, Any] = {
        "user_id": request.user_id,
        "channel": request.channel.value,
        "topic": topic,
    }
    sms = request.channel is Channel.SMS
    if not sms:
        values["platforms"] = devices.platforms_for(request.channel)
    statement = _locked_user(session) if sms else _locked_user_and_devices(session)
    found = await driver.rows(session, statement, values)
    if not found:
        return None, None, []
    users, devices_from = len(_USER_COLUMNS), len(_USER_COLUMNS) + 1
    first = found[0]
    user = driver.detached(User, _USER_COLUMNS, first[:users])
    reached = [
        driver.detached(Device, _DEVICE_COLUMNS, row[devices_from:])
        for row in ([] if sms else found)
        if row[devices_from] is not None
    ]
    return user, first[users], reached


_USER_COLUMNS = (
    User.id,
    User.external_id,
    User.phone,
    User.timezone,
    User.locale,
    User.attributes,
    User.erased_at,
)
"""What the gate reads of the user: who, where, when (`profile_context` and `_addresses`)."""
_DEVICE_COLUMNS = (Device.id, Device.platform, Device.token, Device.subscription, Device.app_id)
"""What the gate reads of a device: its address (`device_address`)."""


def _state() -> ScalarSelect[str]:
    return consent.state_query(
        user_id=bindparam("user_id"), channel=bindparam("channel"), topic=bindparam("topic")
    )


@per_dialect
def _locked_user(dialect: str) -> Select[*tuple[Any, ...]]:
    """The user's row, locked for the transaction, and the consent state the send is checked
    against, in one statement."""
    query = select(*_USER_COLUMNS, _state()).where(User.id == bindparam("user_id"))
    return locking(dialect, query, of=User)


@per_dialect
def _locked_user_and_devices(dialect: str) -> Select[*tuple[Any, ...]]:
    """`_locked_user` and, for a push, the devices it reaches, newest first, in the same
    statement (not a round trip of its own while the user is locked): one row per device,
    or one with no device. Only the user's row is locked."""
    query = (
        select(*_USER_COLUMNS, _state(), *_DEVICE_COLUMNS)
        .select_from(User)
        .outerjoin(Device, devices.reachable(dialect, User.id, "platforms"))
        .where(User.id == bindparam("user_id"))
        .order_by(*devices.NEWEST_FIRST)
    )
    return locking(dialect, query, of=User)


async def _windows(
    session: AsyncSession, user_id: str, caps: list[Cap], *, now: datetime, zone: str
) -> list[tuple[Cap, list[datetime]]]:
    """Each cap with the send times its window counts, from one query over the widest."""
    starts = [window_start(now, cap, zone=zone) for cap in caps]
    sends = await messages.counted_sends(session, user_id=user_id, since=min(starts))
    return [(cap, counted_times(cap, sends)) for cap in caps]


def _addresses(
    user: User, channel: Channel, config: NudgeConfig, reached: list[Device]
) -> list[Address]:
    """Where the send goes: the user's phone, or the devices the locked statement found."""
    if channel is Channel.SMS:
        return [Address(channel=channel, phone=user.phone)] if user.phone else []
    if config.channels.push.devices == "newest":
        reached = reached[:1]
    return [device_address(device, channel) for device in reached]


def device_address(device: Device, channel: Channel) -> Address:
    """Where a push for `channel` goes on `device`."""
    return Address(
        channel=channel,
        device_id=device.id,
        platform=Platform(device.platform),
        token=device.token,
        subscription=device.subscription,
        app_id=device.app_id,
    )


def _render(
    request: DeliverRequest, user: User, templates: TemplateStore, book: LinkBook | None
) -> Content | None:
    links = {LINKS: book} if book is not None else {}
    try:
        content = templates.render(
            request.journey,
            request.template,
            locale=user.locale,
            context={
                "user": profile_context(user),
                "event": request.entry_event.model_dump(mode="json") if request.entry_event else {},
                "settings": request.settings,
                "variant": request.variant,
                **request.context,
                **links,
            },
        )
    except TemplateError as exc:
        log.warning("render failed for %s: %s", request.idempotency_key, exc)
        return None
    if request.channel is Channel.SMS and not content.sms:
        return None
    return content
