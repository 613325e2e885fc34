"""SMS inbound: delivery receipts and mobile-originated messages, from the SMSC (SMPP) and
from HTTP providers' webhooks (`triggers/api/sms.py`), handled alike.

The SMPP bridge awaits these callbacks before it answers `deliver_sm_resp`, so what they
store survives a crash (the SMSC redelivers anything not acknowledged).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from engine import ids
from engine.channels.base import ProviderError, ProviderResult
from engine.channels.sms.keywords import classify
from engine.clock import now
from engine.config.nudge_toml import NudgeConfig
from engine.store import consent, sms
from engine.store.models import Message, User
from engine.store.outbox import add_event
from engine.store.users import ensure_user
from schemas.common import Channel, MessageStatus
from schemas.sms import InboundSms, Receipt

log = logging.getLogger(__name__)


class TextSender(Protocol):
    """What keyword replies go out through: an SMPP bind, an HTTP provider or a route."""

    async def send_text(self, phone: str, text: str) -> ProviderResult: ...


async def _pending(session: AsyncSession, user_id: str) -> bool:
    state = await consent.current(
        session, user_id=user_id, channel=Channel.SMS, topic=consent.MARKETING
    )
    return state is consent.ConsentState.PENDING


class InboundHandler:
    """Stores receipts and inbound SMS, applies keywords (STOP/START/HELP) and replies."""

    def __init__(self, *, sessions: async_sessionmaker[AsyncSession], config: NudgeConfig) -> None:
        self._sessions = sessions
        self._config = config
        self._sms: TextSender | None = None

    def reply_with(self, provider: TextSender) -> None:
        """The provider keyword replies go out through (the same bind, or the route)."""
        self._sms = provider

    async def on_receipt(self, receipt: Receipt) -> None:
        async with self._sessions() as session, session.begin():
            await sms.store_receipt(session, receipt)
        log.info("receipt stored", extra={"smsc_id": receipt.smsc_id, "stat": receipt.stat})

    async def on_inbound(self, message: InboundSms, *, source: str = "smpp") -> None:
        """One inbound SMS, or one part of a long one: parts are held (in the database,
        shared by every bind) until the message is complete, then become one event."""
        async with self._sessions() as session, session.begin():
            if message.concat is not None and message.concat[1] > 1:
                whole = await sms.hold_part(session, message)
                if whole is None:
                    return  # more parts to come (or a part seen before)
                message = whole
            stored = await self._store(session, message, source)
        if stored is not None:
            await self._reply(*stored)

    async def flush_parts(self, *, older_than: float) -> int:
        """Deliver the long messages whose parts have waited `older_than` seconds without
        all arriving: what arrived, flagged `incomplete`. Returns how many."""
        async with self._sessions() as session, session.begin():
            before = now() - timedelta(seconds=older_than)
            stale = await sms.expired_parts(session, before=before)
            replies = [await self._store(session, message, "smpp") for message in stale]
        for reply in replies:
            if reply is not None:
                await self._reply(*reply)
        return len(stale)

    async def sweep(self, *, hold: float) -> None:
        """Forever: deliver long messages whose parts have waited `hold` seconds (run by the
        SMPP provider while it is started; every worker may run one, they share the rows)."""
        while True:
            await asyncio.sleep(max(0.5, hold / 4))
            try:
                await self.flush_parts(older_than=hold)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("holding inbound parts: sweep failed; retrying")

    async def _store(
        self, session: AsyncSession, message: InboundSms, source: str
    ) -> tuple[str, str, str, str, str] | None:
        """Store the `SMS Received` event and apply its keyword; the reply to send, if any."""
        settings = self._config.channels.sms
        keyword = classify(message.text, settings.keywords or None)
        user = await self._owner(session, message.sender)
        if await sms.seen_recently(
            session,
            user_id=user.id,
            sender=message.sender,
            text=message.text,
            at=message.received_at,
        ):
            return None  # the SMSC redelivered a deliver_sm we stored already
        event_id = sms.inbound_message_id(message.sender, message.text, message.received_at)
        properties: dict[str, object] = {
            "text": message.text,
            "keyword": keyword,
            "from": message.sender,
            "to": message.destination,
        }
        if message.missing:
            properties.update(incomplete=True, missing_parts=message.missing)
        stored = await add_event(
            session,
            user_id=user.id,
            name="SMS Received",
            message_id=event_id,
            properties=properties,
            source=source,
            timestamp=message.received_at,
        )
        if not stored:
            return None  # a redelivered deliver_sm: already handled
        reply = await self._apply_keyword(session, message, keyword)
        if reply is None:
            return None
        return user.id, message.sender, reply, event_id, keyword or "reply"

    async def _owner(self, session: AsyncSession, phone: str) -> User:
        """The user the number belongs to: the most recently updated one that has it."""
        query = select(User).where(User.phone == phone, User.erased_at.is_(None))
        user = (await session.scalars(query.order_by(User.updated_at.desc()))).first()
        if user is not None:
            return user
        # An unknown number: keep the message under a user of its own, found by the number.
        user = await ensure_user(
            session, external_id=None, anonymous_id=ids.inbound_sender_key(phone)
        )
        user.phone = phone
        return user

    async def _apply_keyword(
        self, session: AsyncSession, message: InboundSms, keyword: str | None
    ) -> str | None:
        """STOP and START speak for the number: every user holding it is updated. A bare
        YES only confirms a pending double opt-in; anywhere else it is an ordinary reply."""
        settings = self._config.channels.sms
        holders = list(
            await session.scalars(
                select(User).where(User.phone == message.sender, User.erased_at.is_(None))
            )
        )
        if keyword == "help":
            return settings.help_reply
        if keyword == "stop":
            state, reply = consent.ConsentState.UNSUBSCRIBED, settings.stop_reply
        elif keyword == "start":
            state, reply = consent.ConsentState.SUBSCRIBED, settings.start_reply
            if message.text.strip().split()[0].upper().strip(".!") == "YES":
                holders = [u for u in holders if await _pending(session, u.id)]
                if not holders:
                    return None
        else:
            return None
        for user in holders:
            await consent.record(
                session,
                user_id=user.id,
                channel=Channel.SMS,
                topic=consent.ALL_TOPICS,
                state=state,
                source=consent.ConsentSource.SMS_KEYWORD,
                evidence=message.text,
                actor="subscriber",
            )
        return reply

    async def _reply(self, user_id: str, phone: str, text: str, event_id: str, kind: str) -> None:
        """Keyword replies are transactional: no consent, cap or quiet-hours gate."""
        if self._sms is None:
            return
        key = f"reply/{event_id}"
        stamp = now()
        row = Message(
            id=ids.message_id(key),
            idempotency_key=key,
            user_id=user_id,
            channel="sms",
            template=f"keyword:{kind}",
            transactional=True,
            status=MessageStatus.PENDING,
            body={"sms": text},
            attempts=1,
            created_at=stamp,
            updated_at=stamp,
        )
        try:
            result = await self._sms.send_text(phone, text)
        except ProviderError as exc:
            row.status, row.reason = MessageStatus.FAILED, exc.code
        except Exception:  # a reply must never fail the stored inbound message
            log.exception("keyword reply failed")
            row.status, row.reason = MessageStatus.FAILED, "reply_failed"
        else:
            row.status, row.sent_at = MessageStatus.SENT, now()
            row.provider, row.provider_id = result.provider, result.provider_id
            row.encoding, row.parts = result.encoding, result.parts
        async with self._sessions() as session, session.begin():
            session.add(row)
            part_ids = (
                getattr(result, "part_ids", None) if row.status == MessageStatus.SENT else None
            )
            if part_ids:
                await session.flush()
                await sms.record_parts(session, message_id=row.id, part_ids=list(part_ids))
