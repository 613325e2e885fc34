"""The send pipeline behind `Journey.send`: the policy gate, then delivery.

Order: address → consent → quiet hours → frequency caps (reserve) → render → rate limit →
deliver. The gate runs in one transaction that locks the user's row (Postgres `FOR UPDATE`;
SQLite serialises writers with `BEGIN IMMEDIATE`), so two journeys sending to one user can
never both pass a cap: a passing send reserves its slot by inserting `pending` rows.

Idempotent per send: rows are keyed by the send's idempotency key. A retry finds them;
final rows are answered from the table, pending rows are (re)delivered, and every provider
call is recorded in `message_attempts`.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from engine import devices, ids, sms
from engine import messages as message_rows
from engine.channels.base import (
    Address,
    Content,
    InvalidRequestError,
    OutboundMessage,
    PermanentAddressError,
    RetryableError,
    ThrottledError,
)
from engine.channels.registry import NoProvider, Providers
from engine.config import NudgeConfig
from engine.db.models import Device, Message, MessageAttempt, User
from engine.db.session import dialect_name
from engine.metrics import DEVICE_DEACTIVATIONS, PROVIDER_LATENCY, SENDS, SUPPRESSIONS
from engine.policy import consent
from engine.policy.caps import applicable_caps, next_free_at, window_start
from engine.policy.quiet_hours import quiet_until, release_time
from engine.templates import TemplateError, TemplateStore
from engine.users import profile_context
from schemas.common import Channel, MessageStatus, Platform, SendStatus
from schemas.journeys import DeliverOutcome, DeliverRequest, SendResult

log = logging.getLogger(__name__)


class DeliveryRetry(Exception):
    """A provider answer worth retrying (transient or throttled); `delay` in seconds."""

    def __init__(self, code: str, *, delay: float | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.delay = delay


@dataclass
class _Clock:
    """The journey's clock for this call. Under Temporal time skipping the workflow's time
    runs ahead of the wall clock; stamps and policy windows follow the journey's time."""

    offset: timedelta

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset


class Deliverer:
    """Runs sends for the delivery activity. Holds no per-send state."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        config: NudgeConfig,
        providers: Providers,
        templates: TemplateStore | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._sessions = sessions
        self._config = config
        self._providers = providers
        self._templates = templates or TemplateStore()
        self._rand = rand

    async def deliver(self, request: DeliverRequest) -> DeliverOutcome:
        """Gate and deliver one send; raises `DeliveryRetry` for Temporal to retry."""
        at = request.at or datetime.now(UTC)
        clock = _Clock(max(timedelta(0), at - datetime.now(UTC)))
        async with self._sessions() as session:
            rows = await message_rows.rows_for_send(
                session,
                workflow_id=request.workflow_id,
                step=request.step,
                key=request.idempotency_key,
            )
        if not rows:
            decision = await self._gate(request, clock)
            if isinstance(decision, DeliverOutcome):
                return decision
            rows = decision
        rows = [
            await self._deliver_row(row, clock) if row.status == MessageStatus.PENDING else row
            for row in rows
        ]
        return DeliverOutcome(result=_result(rows))

    # -- the gate ------------------------------------------------------------------------

    async def _gate(self, request: DeliverRequest, clock: _Clock) -> DeliverOutcome | list[Message]:
        async with self._sessions() as session, session.begin():
            user = await _lock_user(session, request.user_id)
            now = clock.now()
            if request.holdout:
                return await _suppress(session, request, now, "holdout")
            if user is None or user.erased_at is not None:
                return await _suppress(session, request, now, "no_address")
            addresses = await self._addresses(session, user, request.channel)
            if not addresses:
                return await _suppress(session, request, now, "no_address")
            if not await consent.allows(
                session,
                user_id=user.id,
                channel=request.channel,
                transactional=request.transactional,
            ):
                return await _suppress(session, request, now, "no_consent")
            zone = user.timezone or self._config.timezone
            quiet = self._config.quiet_hours
            end = quiet_until(
                now,
                zone=zone,
                quiet=quiet,
                channel=request.channel,
                transactional=request.transactional,
            )
            if end is not None:
                if quiet.action == "drop":
                    return await _suppress(session, request, now, "quiet_hours_dropped")
                until = release_time(end, jitter=quiet.release_jitter, rand=self._rand())
                return DeliverOutcome(defer_until=until, defer_reason="quiet_hours")
            for cap in applicable_caps(
                self._config.caps,
                channel=request.channel,
                journey=request.journey,
                transactional=request.transactional,
            ):
                sent_at = await message_rows.counted_sends(
                    session,
                    user_id=user.id,
                    since=window_start(now, cap, zone=zone),
                    channel=None if cap.channel == "any" else cap.channel,
                    journey=cap.journey,
                )
                if len(sent_at) < cap.limit:
                    continue
                if cap.on_capped == "defer" and request.deferrals < cap.max_deferrals:
                    free = next_free_at(now, cap, zone=zone, sent_at=sent_at)
                    if free is not None:
                        return DeliverOutcome(defer_until=free, defer_reason="capped")
                return await _suppress(session, request, now, "capped")
            try:
                content = self._templates.render(
                    request.journey,
                    request.template,
                    locale=user.locale,
                    context={
                        "user": profile_context(user),
                        "event": request.entry_event.model_dump(mode="json")
                        if request.entry_event
                        else {},
                        "settings": request.settings,
                        "variant": request.variant,
                        **request.context,
                    },
                )
            except TemplateError as exc:
                log.warning("render failed for %s: %s", request.idempotency_key, exc)
                return await _suppress(session, request, now, "render_failed")
            if request.channel is Channel.SMS and not content.sms:
                return await _suppress(session, request, now, "render_failed")
            rows = [
                _reserve(request, address, content, now, several=len(addresses) > 1)
                for address in addresses
            ]
            session.add_all(rows)
            return rows

    async def _addresses(
        self, session: AsyncSession, user: User, channel: Channel
    ) -> list[Address]:
        if channel is Channel.SMS:
            return [Address(channel=channel, phone=user.phone)] if user.phone else []
        rows = await devices.active_devices(
            session,
            user_id=user.id,
            channel=channel,
            newest_only=self._config.channels.push.devices == "newest",
        )
        return [_device_address(device, channel) for device in rows]

    # -- delivery ------------------------------------------------------------------------

    async def _deliver_row(self, row: Message, clock: _Clock) -> Message:
        """Deliver one reserved row; returns the row as it now stands."""
        async with self._sessions() as session, session.begin():
            # Claim the row: if another attempt of this send started since we read it (a
            # timed-out attempt still running), leave it to that one and come back later.
            current = await _lock(session, Message, row.id)
            if current is None or current.status != MessageStatus.PENDING:
                return current or row
            if current.attempts != row.attempts:
                raise DeliveryRetry("in_progress", delay=5.0)
            address = await self._row_address(session, row)
            provider = None
            if address is not None:
                try:
                    provider = self._providers.for_address(address)
                except NoProvider:
                    provider = None
            if address is None or provider is None:
                reason = "no_address" if address is None else "no_provider"
                _finish(row, MessageStatus.FAILED, reason, clock.now())
                await session.merge(row)
                return row
            row.attempts += 1
            attempt = MessageAttempt(
                message_id=row.id, attempt=row.attempts, started_at=datetime.now(UTC)
            )
            session.add(attempt)
            await session.merge(row)
        await self._providers.limiter(provider).acquire()
        outbound = OutboundMessage(
            message_id=row.id,
            attempt=row.attempts,
            address=address,
            content=Content.model_validate(row.body or {}),
        )
        outcome, error, retry = "sent", None, None
        started = time.monotonic()
        try:
            result = await provider.send(outbound)
        except PermanentAddressError as exc:
            outcome, error = "permanent", exc.code
            _finish(row, MessageStatus.FAILED, exc.code, clock.now())
        except ThrottledError as exc:
            outcome, error, retry = (
                "throttled",
                exc.code,
                DeliveryRetry(exc.code, delay=exc.retry_after),
            )
        except RetryableError as exc:
            outcome, error, retry = "retryable", exc.code, DeliveryRetry(exc.code)
        except InvalidRequestError as exc:
            outcome, error = "invalid", exc.code
            _finish(row, MessageStatus.FAILED, exc.code, clock.now())
        else:
            row.provider, row.provider_id = result.provider, result.provider_id
            row.encoding, row.parts = result.encoding, result.parts
            _finish(row, MessageStatus.SENT, None, clock.now())
            row.sent_at = clock.now()
        PROVIDER_LATENCY.labels(provider.name).observe(time.monotonic() - started)
        SENDS.labels(row.channel, outcome).inc()
        async with self._sessions() as session, session.begin():
            stored = await session.get(MessageAttempt, attempt.id)
            if stored is not None:
                stored.finished_at = datetime.now(UTC)
                stored.outcome = outcome
                stored.error = error
                stored.provider_id = row.provider_id
            if outcome == "permanent" and row.device_id:
                device = await session.get(Device, row.device_id)
                if device is not None:
                    await devices.deactivate(session, device=device, reason=error or "permanent")
                    DEVICE_DEACTIVATIONS.labels(error or "permanent").inc()
            if outcome != "sent":
                row.provider = provider.name
            await session.merge(row)
            part_ids = getattr(result, "part_ids", None) if outcome == "sent" else None
            if part_ids:
                await session.flush()
                await sms.record_parts(session, message_id=row.id, part_ids=list(part_ids))
        if retry is not None:
            raise retry
        return row

    async def _row_address(self, session: AsyncSession, row: Message) -> Address | None:
        channel = Channel(row.channel)
        if channel is Channel.SMS:
            user = await session.get(User, row.user_id)
            if user is None or not user.phone or user.erased_at is not None:
                return None
            return Address(channel=channel, phone=user.phone)
        device = await session.get(Device, row.device_id) if row.device_id else None
        if device is None or not device.active:
            return None
        return _device_address(device, channel)


def _device_address(device: Device, channel: Channel) -> Address:
    return Address(
        channel=channel,
        device_id=device.id,
        platform=Platform(device.platform),
        token=device.token,
        subscription=device.subscription,
        app_id=device.app_id,
    )


async def _lock_user(session: AsyncSession, user_id: str) -> User | None:
    return await _lock(session, User, user_id)


M = TypeVar("M", User, Message)


async def _lock(session: AsyncSession, model: type[M], key: str) -> M | None:
    """The row, locked for this transaction (Postgres `FOR UPDATE`; SQLite transactions
    already exclude each other with `BEGIN IMMEDIATE`)."""
    query = select(model).where(model.id == key)
    if dialect_name(session) == "postgresql":
        query = query.with_for_update()
    return (await session.scalars(query)).first()


def _base_row(request: DeliverRequest, key: str, now: datetime) -> Message:
    return Message(
        id=ids.message_id(key),
        idempotency_key=key,
        user_id=request.user_id,
        journey=request.journey,
        workflow_id=request.workflow_id,
        step=request.step,
        channel=request.channel.value,
        template=request.template,
        transactional=request.transactional,
        attempts=0,
        created_at=now,
        updated_at=now,
    )


def _reserve(
    request: DeliverRequest, address: Address, content: Content, now: datetime, *, several: bool
) -> Message:
    key = request.idempotency_key
    if address.device_id and (several or request.channel is not Channel.SMS):
        key = ids.device_idempotency_key(key, address.device_id)
    row = _base_row(request, key, now)
    row.device_id = address.device_id
    row.status = MessageStatus.PENDING.value
    row.body = content.model_dump(mode="json", exclude_defaults=True)
    return row


async def _suppress(
    session: AsyncSession, request: DeliverRequest, now: datetime, reason: str
) -> DeliverOutcome:
    row = _base_row(request, request.idempotency_key, now)
    row.status = MessageStatus.SUPPRESSED.value
    row.reason = reason
    session.add(row)
    SUPPRESSIONS.labels(reason).inc()
    SENDS.labels(request.channel.value, "suppressed").inc()
    return DeliverOutcome(
        result=SendResult(status=SendStatus.SUPPRESSED, reason=reason, message_ids=[row.id])
    )


def _finish(row: Message, status: MessageStatus, reason: str | None, now: datetime) -> None:
    row.status = status.value
    row.reason = reason
    row.updated_at = now


def _result(rows: list[Message]) -> SendResult:
    sent = [r.id for r in rows if r.status in (MessageStatus.SENT, MessageStatus.DELIVERED)]
    if sent:
        return SendResult(status=SendStatus.SENT, message_ids=sent)
    suppressed = [r for r in rows if r.status == MessageStatus.SUPPRESSED]
    if suppressed and len(suppressed) == len(rows):
        return SendResult(
            status=SendStatus.SUPPRESSED,
            reason=suppressed[0].reason,
            message_ids=[r.id for r in rows],
        )
    failed = [r for r in rows if r.status == MessageStatus.FAILED]
    return SendResult(
        status=SendStatus.FAILED,
        reason=failed[0].reason if failed else "unknown",
        message_ids=[r.id for r in rows],
    )
