"""Message rows of one send: built from the request, and read back as a `SendResult`.

One row per address (a push to three devices is three rows), keyed by the send's
idempotency key, so a retried or replayed send finds its rows instead of writing new ones.
"""

from __future__ import annotations

from datetime import datetime

from engine import ids
from engine.channels.base import Address, Content
from engine.store.models import Message
from schemas.common import Channel, MessageStatus, SendStatus
from schemas.journeys import DeliverRequest, SendResult


def base_row(request: DeliverRequest, key: str, now: datetime) -> Message:
    """A row for `request` under idempotency `key`, stamped at the journey's `now`."""
    return Message(
        id=ids.message_id(key),
        idempotency_key=key,
        user_id=request.user_id,
        journey=None if request.test else request.journey,
        workflow_id=request.workflow_id,
        step=request.step,
        channel=request.channel.value,
        template=request.template,
        transactional=request.transactional,
        test=request.test,
        variant=request.variant,
        run_id=request.run_id,
        deferrals=request.deferrals,
        attempts=0,
        created_at=now,
        updated_at=now,
    )


def reserved(
    request: DeliverRequest, address: Address, content: Content, now: datetime, *, several: bool
) -> Message:
    """A `pending` row holding the message for `address`; it counts against caps at once."""
    key = request.idempotency_key
    if address.device_id and (several or request.channel is not Channel.SMS):
        key = ids.device_idempotency_key(key, address.device_id)
    row = base_row(request, key, now)
    row.device_id = address.device_id
    row.status = MessageStatus.PENDING
    row.body = content.model_dump(mode="json", exclude_defaults=True)
    return row


def suppressed(request: DeliverRequest, now: datetime, reason: str) -> Message:
    """The one row that records a send the gate held back for good."""
    row = base_row(request, request.idempotency_key, now)
    row.status = MessageStatus.SUPPRESSED
    row.reason = reason
    return row


def finish(row: Message, status: MessageStatus, reason: str | None, now: datetime) -> None:
    row.status = status
    row.reason = reason
    row.updated_at = now


def result_of(rows: list[Message]) -> SendResult:
    """What the journey's `send` returns for these rows: sent if any address got it."""
    sent = [r.id for r in rows if r.status in (MessageStatus.SENT, MessageStatus.DELIVERED)]
    if sent:
        return SendResult(status=SendStatus.SENT, message_ids=sent)
    unknown = [r.id for r in rows if r.status == MessageStatus.UNKNOWN]
    if unknown:
        return SendResult(status=SendStatus.UNKNOWN, reason="unknown_outcome", message_ids=unknown)
    suppressed_rows = [r for r in rows if r.status == MessageStatus.SUPPRESSED]
    if suppressed_rows and len(suppressed_rows) == len(rows):
        return SendResult(
            status=SendStatus.SUPPRESSED,
            reason=suppressed_rows[0].reason,
            message_ids=[r.id for r in rows],
        )
    failed = [r for r in rows if r.status == MessageStatus.FAILED]
    return SendResult(
        status=SendStatus.FAILED,
        reason=failed[0].reason if failed else "unknown",
        message_ids=[r.id for r in rows],
    )
