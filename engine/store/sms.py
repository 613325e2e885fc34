"""What comes back from the SMSC, stored: delivery receipts and inbound (MO) messages.

Receipts are stored as received, then applied to their message once its parts are known
(a receipt may arrive before the `submit_sm_resp` of its part is processed). Applying one
updates the message and emits a `Message Delivered` / `Message Failed` event for the user,
so journeys can wait on it. Every function here leaves the commit to the caller.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from engine.clock import now
from engine.store import webhooks
from engine.store.models import Event, Message, MessagePart, SmsInboundPart, SmsReceipt
from engine.store.outbox import add_event
from engine.store.rows import insert_ignore, lock_keys
from schemas.common import MessageStatus
from schemas.sms import InboundSms, Receipt

JOINED_KEPT = timedelta(days=1)
"""How long the parts of a joined message are kept, so a redelivered part is recognised (a
reference is one byte or two per sender: it comes round again, but not within a day)."""

# Receipt states → the message's final status and the event journeys see.
_FAILED_STATES = {
    "undeliverable": "undelivered",
    "expired": "expired",
    "rejected": "rejected",
    "deleted": "undelivered",
    "unknown": "undelivered",
}


async def record_parts(session: AsyncSession, *, message_id: str, part_ids: list[str]) -> None:
    """Remember the SMSC id of every part of a sent message, then apply waiting receipts."""
    await _lock(session, part_ids)
    for index, smsc_id in enumerate(part_ids):
        await insert_ignore(
            session,
            MessagePart,
            {"smsc_id": smsc_id, "message_id": message_id, "part": index + 1},
            conflict=["smsc_id"],
        )
    await session.flush()
    await apply_pending(session, smsc_ids=part_ids)


async def store_receipt(session: AsyncSession, receipt: Receipt) -> None:
    """Store a receipt as the SMSC sent it, and apply it if its part is known."""
    await _lock(session, [receipt.smsc_id])
    session.add(
        SmsReceipt(
            smsc_id=receipt.smsc_id,
            stat=receipt.stat,
            state=receipt.state,
            final=receipt.final,
            error_code=receipt.error_code,
            received_at=receipt.received_at,
        )
    )
    await session.flush()
    await apply_pending(session, smsc_ids=[receipt.smsc_id])


async def _lock(session: AsyncSession, smsc_ids: list[str]) -> None:
    """Serialise a part's recording with its receipt's arrival, so neither transaction
    misses the other's row."""
    await lock_keys(session, [f"sms:{smsc_id}" for smsc_id in smsc_ids])


async def apply_pending(session: AsyncSession, *, smsc_ids: list[str]) -> int:
    """Apply stored, unapplied receipts for these SMSC ids; returns how many were applied."""
    receipts = list(
        await session.scalars(
            select(SmsReceipt)
            .where(SmsReceipt.smsc_id.in_(smsc_ids), SmsReceipt.applied_at.is_(None))
            .order_by(SmsReceipt.id)
        )
    )
    applied = 0
    for receipt in receipts:
        part = await session.get(MessagePart, receipt.smsc_id)
        if part is None:
            continue  # its submit_sm_resp is not processed yet; record_parts applies it later
        receipt.applied_at = now()
        applied += 1
        if not receipt.final:
            continue
        part.state, part.error_code = receipt.state, receipt.error_code
        await _settle(session, part.message_id)
    return applied


async def _settle(session: AsyncSession, message_id: str) -> None:
    """Delivered when every part is; failed as soon as one part finally failed."""
    message = await session.get(Message, message_id)
    if message is None or message.status not in (MessageStatus.SENT, MessageStatus.PENDING):
        return
    parts = list(
        await session.scalars(select(MessagePart).where(MessagePart.message_id == message_id))
    )
    failed = next((p for p in parts if p.state in _FAILED_STATES), None)
    stamp = now()
    if failed is not None:
        message.status = MessageStatus.UNDELIVERED
        message.reason = _FAILED_STATES[failed.state or "unknown"]
        message.error_code = failed.error_code
        name = "Message Failed"
    elif parts and all(p.state == "delivered" for p in parts):
        message.status = MessageStatus.DELIVERED
        message.delivered_at = stamp
        name = "Message Delivered"
    else:
        return
    message.updated_at = stamp
    await webhooks.enqueue(
        session,
        kind="message.delivered" if name == "Message Delivered" else "message.failed",
        payload=webhooks.message_payload(message),
        user_id=message.user_id,
        at=stamp,
    )
    await add_event(
        session,
        user_id=message.user_id,
        name=name,
        message_id=f"receipt:{message.id}",
        properties={
            "message_id": message.id,
            "journey": message.journey,
            "step": message.step,
            "channel": message.channel,
            "status": message.status,
            "reason": message.reason,
            "error_code": message.error_code,
        },
        source="smpp",
        timestamp=stamp,
        received_at=stamp,
    )


REDELIVERY_WINDOW = timedelta(minutes=5)


async def seen_recently(
    session: AsyncSession, *, user_id: str, sender: str, text: str, at: datetime
) -> bool:
    """Whether the same text from the same number was stored within `REDELIVERY_WINDOW`:
    an MO carries no id of its own, and an SMSC redelivers what was not acknowledged."""
    rows = await session.scalars(
        select(Event.properties).where(
            Event.user_id == user_id,
            Event.name == "SMS Received",
            Event.timestamp >= at - REDELIVERY_WINDOW,
        )
    )
    return any(p.get("from") == sender and p.get("text") == text for p in rows)


def inbound_message_id(sender: str, text: str, received_at: datetime) -> str:
    """A stable id for an MO, so a redelivered `deliver_sm` is stored once."""
    raw = f"{sender}|{text}|{received_at.isoformat()}"
    return "mo:" + hashlib.sha256(raw.encode()).hexdigest()[:32]


async def hold_part(session: AsyncSession, message: InboundSms) -> InboundSms | None:
    """Hold one part of a concatenated inbound SMS; the whole message once its last part
    arrived (None until then, and for a part seen before)."""
    assert message.concat is not None
    reference, total, seq = message.concat
    await lock_keys(session, [f"mo:{message.sender}:{reference}"])
    # A day-old group with the same reference is another message: clear it first.
    await session.execute(
        delete(SmsInboundPart).where(
            SmsInboundPart.sender == message.sender,
            SmsInboundPart.reference == reference,
            SmsInboundPart.received_at < message.received_at - JOINED_KEPT,
        )
    )
    added = await insert_ignore(
        session,
        SmsInboundPart,
        {
            "sender": message.sender,
            "destination": message.destination,
            "reference": reference,
            "total": total,
            "seq": seq,
            "text": message.text,
            "data_coding": message.data_coding,
            "received_at": message.received_at,
        },
        conflict=["sender", "reference", "seq"],
    )
    if not added:
        return None
    parts = await _group(session, message.sender, reference)
    if parts[0].joined_at is not None or {p.seq for p in parts} != set(range(1, total + 1)):
        return None
    return _join(parts, at=message.received_at)


async def expired_parts(session: AsyncSession, *, before: datetime) -> list[InboundSms]:
    """The messages whose parts have waited since before `before` without all arriving:
    each joined from what arrived (`missing` counts the rest), and marked joined."""
    stale = await session.execute(
        select(SmsInboundPart.sender, SmsInboundPart.reference)
        .where(SmsInboundPart.joined_at.is_(None), SmsInboundPart.received_at < before)
        .distinct()
    )
    joined = []
    for sender, reference in stale.all():
        await lock_keys(session, [f"mo:{sender}:{reference}"])
        parts = [p for p in await _group(session, sender, reference) if p.joined_at is None]
        if parts and min(p.received_at for p in parts) < before:
            joined.append(_join(parts, at=now()))
    await session.execute(
        delete(SmsInboundPart).where(SmsInboundPart.joined_at < before - JOINED_KEPT)
    )
    return joined


async def _group(session: AsyncSession, sender: str, reference: int) -> list[SmsInboundPart]:
    query = (
        select(SmsInboundPart)
        .where(SmsInboundPart.sender == sender, SmsInboundPart.reference == reference)
        .order_by(SmsInboundPart.seq)
        .with_for_update()
    )
    return list(await session.scalars(query))


def _join(parts: list[SmsInboundPart], *, at: datetime) -> InboundSms:
    """The message the parts make, in order; they are marked joined."""
    for part in parts:
        part.joined_at = at
    first, total = parts[0], parts[0].total
    return InboundSms(
        sender=first.sender,
        destination=first.destination,
        text="".join(p.text for p in parts),
        data_coding=first.data_coding,
        received_at=min(p.received_at for p in parts),
        missing=total - len(parts),
    )
