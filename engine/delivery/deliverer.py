"""The send pipeline behind `Journey.send`: the gate, then one provider call per address.

A first attempt runs the gate and claims its rows in one transaction (`engine.delivery.gate`),
calls the providers, and records each outcome in a second one (on Postgres, a sent
message's outcome is one statement, committed as it runs, when no webhook joins it). A
retried attempt (Temporal retries the activity after a crash or a throttled answer) first
reads the rows an earlier attempt wrote: final rows are answered from the table, `pending`
ones are claimed again and (re)delivered. Every provider call is a row in
`message_attempts`.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from engine.channels.base import (
    Address,
    ChannelProvider,
    Content,
    InvalidRequestError,
    OutboundMessage,
    PermanentAddressError,
    ProviderError,
    RetryableError,
    ThrottledError,
    UnknownOutcomeError,
)
from engine.channels.registry import NoProvider, Providers
from engine.channels.sms.route import SmsRoute
from engine.clock import now as wall_now
from engine.config.nudge_toml import NudgeConfig
from engine.delivery import rows
from engine.delivery.gate import Reserved, device_address, run_gate
from engine.delivery.lanes import lanes_for
from engine.delivery.templates import TemplateStore
from engine.observability.metrics import (
    DEVICE_DEACTIVATIONS,
    PROVIDER_LATENCY,
    SENDS,
    count_send,
)
from engine.policy import gate as decide
from engine.store import devices, driver, sms, webhooks
from engine.store import messages as message_rows
from engine.store.models import Device, Message, MessageAttempt, User
from engine.store.rows import lock
from schemas.common import Channel, MessageStatus
from schemas.journeys import DeliverOutcome, DeliverRequest, SmsLanes, SmsLanesRequest

log = logging.getLogger(__name__)


class DeliveryRetry(Exception):
    """A provider answer worth retrying (transient or throttled); `delay` in seconds."""

    def __init__(self, code: str, *, delay: float | None = None, stay: bool = False) -> None:
        super().__init__(code)
        self.code = code
        self.delay = delay
        self.stay = stay  # it may be out there (or is being sent): never fail it over


@dataclass
class _Clock:
    """The journey's clock for this call. Under Temporal time skipping the workflow's time
    runs ahead of the wall clock; stamps and policy windows follow the journey's time."""

    offset: timedelta

    def now(self) -> datetime:
        return wall_now() + self.offset


@dataclass
class _Claim:
    """A row this attempt delivers, where it goes, and the provider that takes it (None:
    no provider serves the address, and the row is failed `no_provider`)."""

    row: Message
    address: Address
    provider: ChannelProvider | None
    pinned: str | None = None


class Deliverer:
    """Runs sends for the delivery activity. Holds no per-send state."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        config: NudgeConfig,
        providers: Providers,
        templates: TemplateStore,
        rand: Callable[[], float] = random.random,
        link_base: str | None = None,
    ) -> None:
        self._link_base = link_base
        self._sessions = sessions
        self._config = config
        self._providers = providers
        self._templates = templates
        self._rand = rand

    async def deliver(
        self, request: DeliverRequest, *, first_attempt: bool = True
    ) -> DeliverOutcome:
        """Gate and deliver one send; raises `DeliveryRetry` for Temporal to retry.

        `first_attempt`: no earlier attempt of this activity can have written rows, so the
        gate runs at once (if rows exist after all, it falls back to them).
        """
        if request.provider is not None and not request.last_lane:
            if not await self._lane_usable(request.provider):
                return DeliverOutcome(skipped=True)
            try:
                return await self._deliver(request, first_attempt=first_attempt)
            except DeliveryRetry as retry:
                if retry.stay:
                    raise
                return DeliverOutcome(skipped=True)  # refused, nothing sent: the next lane
        return await self._deliver(request, first_attempt=first_attempt)

    async def sms_lanes(self, request: SmsLanesRequest, *, task_queue: str) -> SmsLanes:
        """The lanes a user's SMS tries (`engine.delivery.lanes`)."""
        if not self._config.sms.lanes:
            return SmsLanes()
        async with self._sessions() as session:
            user = await session.get(User, request.user_id)
        phone = user.phone if user is not None and user.erased_at is None else None
        return lanes_for(
            self._config, phone, task_queue=task_queue, transactional=request.transactional
        )

    async def _lane_usable(self, name: str) -> bool:
        try:
            route = self._providers.for_address(Address(channel=Channel.SMS))
        except NoProvider:
            return False
        return await route.usable(name) if isinstance(route, SmsRoute) else True

    async def _deliver(self, request: DeliverRequest, *, first_attempt: bool) -> DeliverOutcome:
        at = request.at or wall_now()
        clock = _Clock(max(timedelta(0), at - wall_now()))
        if first_attempt:
            claimed = await self._gate_and_claim(request, clock)
            if isinstance(claimed, DeliverOutcome):
                return claimed
            if claimed is not None:
                return DeliverOutcome(result=rows.result_of(await self._send_all(claimed, clock)))
        async with self._sessions() as session:
            found = await message_rows.rows_for_send(
                session,
                workflow_id=request.workflow_id,
                step=request.step,
                key=request.idempotency_key,
            )
        if not found:
            claimed = await self._gate_and_claim(request, clock)
            if isinstance(claimed, DeliverOutcome):
                return claimed
            assert claimed is not None, "rows vanished between two reads"
            return DeliverOutcome(result=rows.result_of(await self._send_all(claimed, clock)))
        done = [
            await self._redeliver(row, clock, lane=request.provider)
            if row.status == MessageStatus.PENDING
            else row
            for row in found
        ]
        return DeliverOutcome(result=rows.result_of(done))

    async def _gate_and_claim(
        self, request: DeliverRequest, clock: _Clock
    ) -> DeliverOutcome | list[_Claim] | None:
        """Run the gate; a send it lets through is claimed for this attempt in the same
        transaction. None when rows for this send exist already (an earlier attempt)."""
        try:
            async with self._sessions() as session, driver.transaction(session):
                now = clock.now()
                decision, new_rows = await run_gate(
                    session,
                    request,
                    now=now,
                    config=self._config,
                    templates=self._templates,
                    rand=self._rand,
                    link_base=self._link_base,
                )
                claims = []
                if isinstance(decision, Reserved):
                    claims = [
                        self._claim(row, address, clock, lane=request.provider)
                        for row, address in decision.rows
                    ]
                await message_rows.reserve(
                    session,
                    new_rows,
                    [
                        MessageAttempt(
                            message_id=c.row.id, attempt=1, started_at=wall_now(), provider=c.pinned
                        )
                        for c in claims
                        if c.provider is not None
                    ],
                )
                if isinstance(decision, Reserved) and decision.links:
                    session.add_all(decision.links)  # they point at the rows
                if isinstance(decision, decide.Suppress) and webhooks.wanted(
                    session, "message.suppressed"
                ):
                    for row in new_rows:
                        await webhooks.enqueue(
                            session,
                            kind="message.suppressed",
                            payload=webhooks.message_payload(row),
                            user_id=row.user_id,
                        )
        except IntegrityError:
            return None
        if isinstance(decision, decide.Defer):
            return DeliverOutcome(defer_until=decision.until, defer_reason=decision.reason)
        if isinstance(decision, decide.Suppress):
            return DeliverOutcome(result=rows.result_of(new_rows))
        return claims

    def _claim(
        self, row: Message, address: Address, clock: _Clock, *, lane: str | None = None
    ) -> _Claim:
        """Mark a fresh row as attempt 1 of its provider, or failed when none serves it."""
        try:
            provider = self._providers.for_address(address)
        except NoProvider:
            rows.finish(row, MessageStatus.FAILED, "no_provider", clock.now())
            return _Claim(row, address, None)
        row.attempts = 1
        return _Claim(row, address, provider, lane)

    async def _send_all(self, claims: list[_Claim], clock: _Clock) -> list[Message]:
        return [
            claim.row if claim.provider is None else await self._send(claim, clock)
            for claim in claims
        ]

    async def _redeliver(self, row: Message, clock: _Clock, *, lane: str | None) -> Message:
        """Claim a `pending` row again for this attempt and deliver it."""
        async with self._sessions() as session, session.begin():
            # If another attempt of this send started since we read the row (a timed-out
            # attempt still running), leave it to that one and come back later.
            current = await lock(session, Message, row.id)
            if current is None or current.status != MessageStatus.PENDING:
                return current or row
            if current.attempts != row.attempts:
                raise DeliveryRetry("in_progress", delay=5.0, stay=True)
            dangling = await message_rows.unfinished_attempt(session, message_id=current.id)
            submitted_to = None
            if dangling is not None:
                # The previous attempt died mid-call: it may have been delivered.
                attempt, submitted_to = dangling
                resend = self._on_unknown(current) == "resend"
                await message_rows.close_attempt(
                    session,
                    message_id=current.id,
                    attempt=attempt,
                    outcome="unknown_resent" if resend else "unknown",
                    at=wall_now(),
                )
                if not resend:
                    rows.finish(current, MessageStatus.UNKNOWN, "unknown_outcome", clock.now())
                    await self._unknown(session, current)
                    return current
            address = await _row_address(session, current)
            provider = None
            if address is not None:
                try:
                    provider = self._providers.for_address(address)
                except NoProvider:
                    provider = None
            if address is None or provider is None:
                reason = "no_address" if address is None else "no_provider"
                rows.finish(current, MessageStatus.FAILED, reason, clock.now())
                return current
            # An unknown outcome on one provider of a route: only that one may try again.
            pinned = submitted_to or lane
            if current.provider and await message_rows.last_outcome(
                session, message_id=current.id
            ) in ("unknown", "unknown_resent"):
                pinned = current.provider
            current.attempts += 1
            session.add(
                MessageAttempt(
                    message_id=current.id,
                    attempt=current.attempts,
                    started_at=wall_now(),
                    provider=pinned,
                )
            )
        return await self._send(_Claim(current, address, provider, pinned), clock)

    async def _submitting(self, row: Message, provider: str) -> None:
        """Name the provider on the attempt before the submit (`engine.channels.sms.route`)."""
        async with self._sessions() as session, session.begin():
            await message_rows.submitting(
                session, message_id=row.id, attempt=row.attempts, provider=provider
            )

    def _on_unknown(self, row: Message) -> str:
        return self._config.delivery.unknown_outcome.decide(
            channel=str(row.channel), transactional=row.transactional
        )

    async def _unknown(self, session: AsyncSession, row: Message) -> None:
        """A message left `unknown`: counted, reported (webhooks see it as failed)."""
        SENDS.labels(row.channel, "unknown").inc()
        count_send(row.journey, row.step, "unknown")
        await webhooks.enqueue(
            session,
            kind="message.failed",
            payload=webhooks.message_payload(row),
            user_id=row.user_id,
        )

    async def _send(self, claim: _Claim, clock: _Clock) -> Message:
        """One provider call for a claimed row, then its outcome recorded."""
        row, provider = claim.row, claim.provider
        assert provider is not None
        limiter = self._providers.limiter(provider)
        if limiter is not None:
            await limiter.acquire(priority=row.transactional)
        outbound = OutboundMessage(
            message_id=row.id,
            attempt=row.attempts,
            address=claim.address,
            content=Content.model_validate(row.body or {}),
            transactional=row.transactional,
            pinned=claim.pinned,
        )
        outcome, error, retry, part_ids = "sent", None, None, None
        answered_by: str | None = None
        started = time.monotonic()
        try:
            try:
                if isinstance(provider, SmsRoute) and claim.pinned is None:
                    # The route picks the provider: the attempt names it before the submit.
                    result = await provider.send(
                        outbound, submitting=functools.partial(self._submitting, row)
                    )
                else:
                    result = await provider.send(outbound)
            except ProviderError as exc:
                answered_by = exc.provider
                raise
        except PermanentAddressError as exc:
            outcome, error = "permanent", exc.code
            rows.finish(row, MessageStatus.FAILED, exc.code, clock.now())
        except ThrottledError as exc:
            outcome, error = "throttled", exc.code
            retry = DeliveryRetry(exc.code, delay=exc.retry_after)
        except UnknownOutcomeError as exc:
            outcome, error = "unknown", exc.code
            if self._on_unknown(row) == "resend":
                retry = DeliveryRetry(exc.code, stay=True)
            else:
                rows.finish(row, MessageStatus.UNKNOWN, "unknown_outcome", clock.now())
        except RetryableError as exc:
            outcome, error, retry = "retryable", exc.code, DeliveryRetry(exc.code)
        except InvalidRequestError as exc:
            outcome, error = "invalid", exc.code
            rows.finish(row, MessageStatus.FAILED, exc.code, clock.now())
        else:
            row.provider, row.provider_id = result.provider, result.provider_id
            row.encoding, row.parts = result.encoding, result.parts
            rows.finish(row, MessageStatus.SENT, None, clock.now())
            row.sent_at = clock.now()
            part_ids = getattr(result, "part_ids", None)
        if outcome != "sent":
            row.provider = answered_by or provider.name
        PROVIDER_LATENCY.labels(provider.name).observe(time.monotonic() - started)
        SENDS.labels(row.channel, outcome).inc()
        count_send(row.journey, row.step, outcome)
        async with self._sessions() as session:
            kind = "message.sent" if outcome == "sent" else "message.failed"
            if outcome == "sent" and not part_ids:
                # The attempt's end is all there is to store, with a webhook's event at most.
                await webhooks.autocommit_unless_wanted(session, kind)
            await message_rows.finish_attempt(
                session,
                row=row,
                outcome=outcome,
                error=error,
                finished_at=wall_now(),
            )
            if outcome == "permanent" and row.device_id:
                device = await session.get(Device, row.device_id)
                if device is not None:
                    await devices.deactivate(session, device=device, reason=error or "permanent")
                    DEVICE_DEACTIVATIONS.labels(error or "permanent").inc()
            if part_ids:
                await sms.record_parts(session, message_id=row.id, part_ids=list(part_ids))
            if outcome == "unknown" and retry is None:
                await self._unknown(session, row)
            if outcome in ("sent", "permanent", "invalid"):
                await webhooks.enqueue(
                    session, kind=kind, payload=webhooks.message_payload(row), user_id=row.user_id
                )
            await session.commit()
        if retry is not None:
            raise retry
        return row


async def _row_address(session: AsyncSession, row: Message) -> Address | None:
    """Where a reserved row goes now (the device may have died since it was reserved)."""
    channel = Channel(row.channel)
    if channel is Channel.SMS:
        user = await session.get(User, row.user_id)
        if user is None or not user.phone or user.erased_at is not None:
            return None
        return Address(channel=channel, phone=user.phone)
    device = await session.get(Device, row.device_id) if row.device_id else None
    if device is None or not device.active:
        return None
    return device_address(device, channel)
