"""SMPP inbound: delivery receipts and mobile-originated messages from the SMSC.

The SMPP bridge awaits these callbacks before it answers `deliver_sm_resp`, so what they
store survives a crash (the SMSC redelivers anything not acknowledged).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from engine import ids, sms
from engine.channels.base import ProviderError
from engine.channels.sms.inbound import InboundSms, Receipt
from engine.channels.sms.keywords import classify
from engine.channels.sms.provider import SmppProvider
from engine.config import NudgeConfig
from engine.db.models import Event, Message, User
from engine.db.upsert import insert_ignore
from engine.policy import consent
from engine.users import ensure_user
from schemas.common import Channel, MessageStatus

log = logging.getLogger(__name__)


class InboundHandler:
    """Stores receipts and inbound SMS, applies keywords (STOP/START/HELP) and replies."""

    def __init__(self, *, sessions: async_sessionmaker[AsyncSession], config: NudgeConfig) -> None:
        self._sessions = sessions
        self._config = config
        self._sms: SmppProvider | None = None

    def reply_with(self, provider: SmppProvider) -> None:
        """The provider keyword replies go out through (the same bind)."""
        self._sms = provider

    async def on_receipt(self, receipt: Receipt) -> None:
        async with self._sessions() as session, session.begin():
            await sms.store_receipt(session, receipt)
        log.info("receipt stored", extra={"smsc_id": receipt.smsc_id, "stat": receipt.stat})

    async def on_inbound(self, message: InboundSms) -> None:
        settings = self._config.channels.sms
        keyword = classify(message.text, settings.keywords or None)
        async with self._sessions() as session, session.begin():
            user = await self._owner(session, message.sender)
            event_id = sms.inbound_message_id(message.sender, message.text, message.received_at)
            stored = await insert_ignore(
                session,
                Event,
                {
                    "message_id": event_id,
                    "user_id": user.id,
                    "type": "track",
                    "name": "SMS Received",
                    "properties": {
                        "text": message.text,
                        "keyword": keyword,
                        "from": message.sender,
                        "to": message.destination,
                    },
                    "context": {"source": "smpp"},
                    "timestamp": message.received_at,
                    "received_at": datetime.now(UTC),
                    "route_attempts": 0,
                },
                conflict=["message_id"],
            )
            if not stored:
                return  # a redelivered deliver_sm: already handled
            reply = await self._apply_keyword(session, user, keyword, message.text)
        if reply is not None:
            await self._reply(user.id, message.sender, reply, event_id, keyword or "reply")

    async def _owner(self, session: AsyncSession, phone: str) -> User:
        user = (await session.scalars(select(User).where(User.phone == phone))).first()
        if user is not None:
            return user
        # An unknown number: keep the message under a user of its own, found by the number.
        digest = ids.erasure_hash("sms", phone, "inbound")[:24]
        user = await ensure_user(session, external_id=None, anonymous_id=f"sms:{digest}")
        user.phone = phone
        return user

    async def _apply_keyword(
        self, session: AsyncSession, user: User, keyword: str | None, text: str
    ) -> str | None:
        settings = self._config.channels.sms
        if keyword == "stop":
            state, reply = consent.ConsentState.UNSUBSCRIBED, settings.stop_reply
        elif keyword == "start":
            # Also confirms a pending double opt-in.
            state, reply = consent.ConsentState.SUBSCRIBED, settings.start_reply
        elif keyword == "help":
            return settings.help_reply
        else:
            return None
        await consent.record(
            session,
            user_id=user.id,
            channel=Channel.SMS.value,
            topic=consent.ALL_TOPICS,
            state=state,
            source=consent.ConsentSource.SMS_KEYWORD,
            evidence=text,
            actor="subscriber",
        )
        return reply

    async def _reply(self, user_id: str, phone: str, text: str, event_id: str, kind: str) -> None:
        """Keyword replies are transactional: no consent, cap or quiet-hours gate."""
        if self._sms is None:
            return
        key = f"reply/{event_id}"
        now = datetime.now(UTC)
        row = Message(
            id=ids.message_id(key),
            idempotency_key=key,
            user_id=user_id,
            channel="sms",
            template=f"keyword:{kind}",
            transactional=True,
            status=MessageStatus.PENDING.value,
            body={"sms": text},
            attempts=1,
            created_at=now,
            updated_at=now,
        )
        try:
            result = await self._sms.send_text(phone, text)
        except ProviderError as exc:
            row.status, row.reason = MessageStatus.FAILED.value, exc.code
        else:
            row.status, row.sent_at = MessageStatus.SENT.value, datetime.now(UTC)
            row.provider, row.provider_id = result.provider, result.provider_id
            row.encoding, row.parts = result.encoding, result.parts
        async with self._sessions() as session, session.begin():
            session.add(row)
            if row.status == MessageStatus.SENT and result.part_ids:
                await session.flush()
                await sms.record_parts(session, message_id=row.id, part_ids=result.part_ids)
