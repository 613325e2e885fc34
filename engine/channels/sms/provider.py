"""`SmppProvider`: the SMS channel over SMPP 3.4 (`provider = "smpp"` in nudge.toml).

Idempotency of retries: a message is split into parts and each part is one submit_sm.
The provider remembers, per (message_id, part index), the SMSC id of every part the SMSC
acknowledged, so a retry of the same message (same `message_id`, `attempt` > 1) submits only
the parts that were not acknowledged yet. That memory lives in this worker process (bounded,
most recent first); across processes the message row's `provider_id`, written once the whole
message went out, is what stops a second send.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import zlib
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from typing import Any

from engine.channels.base import (
    ChannelProvider,
    InvalidRequestError,
    OutboundMessage,
    PermanentAddressError,
    ProviderResult,
    RetryableError,
    ThrottledError,
)
from engine.channels.ratelimit import TokenBucket
from engine.channels.sms.bridge import InboundHandler, ReceiptHandler, SmppBridge, SmppStatusError
from engine.channels.sms.client import ESME_RINVDSTADR, ESME_RMSGQFUL, ESME_RTHROTTLED
from engine.channels.sms.encoding import EncodedSms, TooLong, encode_sms
from engine.config.nudge_toml import SmsChannel

log = logging.getLogger("nudge.smpp")

THROTTLING = {ESME_RTHROTTLED, ESME_RMSGQFUL}
ADDRESS_DEAD = {ESME_RINVDSTADR}
TRANSIENT = {0x08, 0x04, 0x64}  # ESME_RSYSERR, ESME_RINVBNDSTS, ESME_RX_T_APPN
ACKED_PARTS_KEPT = 100_000


class SmsProviderResult(ProviderResult):
    """`ProviderResult` plus the SMSC id of every part (receipts arrive per part)."""

    part_ids: list[str] = []


class SmppProvider(ChannelProvider):
    """Sends `content.sms` to `address.phone` (E.164) through one `SmppBridge`.

    `start()` binds (raises `BindError` for refused credentials); `send` is bounded by the
    bridge's `submit_timeout` per part plus at most `throttle_retries` back-offs per part
    (`throttle_backoff` seconds, doubled each time) when the SMSC says it is throttling.
    """

    name = "smpp"
    paces_itself = True  # the bridge takes one token per submitted part

    def __init__(
        self,
        settings: SmsChannel,
        password: str,
        *,
        on_receipt: ReceiptHandler,
        on_inbound: InboundHandler,
        limiter: TokenBucket | None = None,
        housekeeping: Callable[[], Coroutine[Any, Any, None]] | None = None,
        throttle_retries: int = 3,
        throttle_backoff: float = 0.2,
    ) -> None:
        self.settings = settings
        self.bridge = SmppBridge(
            settings, password, on_receipt=on_receipt, on_inbound=on_inbound, limiter=limiter
        )
        self._throttle_retries = throttle_retries
        self._throttle_backoff = throttle_backoff
        self._acked: OrderedDict[tuple[str, int], str] = OrderedDict()
        self._housekeeping = housekeeping
        self._chores: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.bridge.start()
        if self._housekeeping is not None:
            self._chores = asyncio.create_task(self._housekeeping(), name="smpp-housekeeping")

    async def close(self) -> None:
        if self._chores is not None:
            self._chores.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._chores
        await self.bridge.close()

    async def send(self, message: OutboundMessage) -> SmsProviderResult:
        """Deliver one message; `provider_id` is the SMSC id of its first part."""
        if not message.content.sms:
            raise InvalidRequestError("empty_sms", "the template rendered no SMS text")
        if not message.address.phone:
            raise InvalidRequestError("no_phone", "the address has no phone number")
        return await self._send(
            message.address.phone,
            message.content.sms,
            key=message.message_id,
            priority=message.transactional,
        )

    async def send_text(self, phone: str, text: str) -> SmsProviderResult:
        """Send a one-off text (keyword auto-replies); no retry memory."""
        return await self._send(phone, text, key=None)

    async def _send(
        self, phone: str, text: str, *, key: str | None, priority: bool = False
    ) -> SmsProviderResult:
        destination = _destination(phone)
        # A stable reference per message keeps resent parts joinable with the first ones.
        reference = zlib.crc32(key.encode()) & 0xFF if key else random.randrange(256)
        try:
            sms = encode_sms(text, max_parts=self.settings.max_parts, reference=reference)
        except TooLong as exc:
            raise InvalidRequestError("too_long", str(exc)) from exc
        part_ids: list[str] = []
        for index, part in enumerate(sms.parts):
            known = self._acked.get((key, index)) if key else None
            if known is None:
                known = await self._submit_part(destination, part, sms, priority=priority)
                if key:
                    self._remember((key, index), known)
            part_ids.append(known)
        log.info(
            "SMPP message %s accepted: %d %s part(s), smsc ids %s",
            key or "(reply)",
            sms.part_count,
            sms.encoding,
            part_ids,
        )
        return SmsProviderResult(
            provider=self.name,
            provider_id=part_ids[0],
            encoding=sms.encoding,
            parts=sms.part_count,
            part_ids=part_ids,
        )

    async def _submit_part(
        self, destination: str, part: bytes, sms: EncodedSms, *, priority: bool
    ) -> str:
        delay = self._throttle_backoff
        for attempt in range(self._throttle_retries + 1):
            try:
                return await self.bridge.submit(
                    destination=destination,
                    short_message=part,
                    data_coding=sms.data_coding,
                    esm_class=sms.esm_class,
                    priority=priority,
                )
            except SmppStatusError as exc:
                if exc.status in THROTTLING:
                    if attempt == self._throttle_retries:
                        raise ThrottledError(
                            exc.name, "SMSC still throttling", retry_after=delay
                        ) from exc
                    await asyncio.sleep(delay * random.uniform(1.0, 1.5))
                    delay *= 2
                    continue
                if exc.status in ADDRESS_DEAD:
                    raise PermanentAddressError(exc.name, "the SMSC rejected the number") from exc
                if exc.status in TRANSIENT:
                    raise RetryableError(exc.name, "SMSC error") from exc
                raise InvalidRequestError(exc.name, "the SMSC refused the message") from exc
        raise AssertionError("unreachable")

    def acked_parts(self, message_id: str) -> int:
        """How many parts of this message the SMSC acknowledged (in this process)."""
        return sum((message_id, i) in self._acked for i in range(self.settings.max_parts))

    def _remember(self, key: tuple[str, int], smsc_id: str) -> None:
        self._acked[key] = smsc_id
        self._acked.move_to_end(key)
        while len(self._acked) > ACKED_PARTS_KEPT:
            self._acked.popitem(last=False)


def _destination(phone: str) -> str:
    """destination_addr for TON 1 / NPI 1: the E.164 digits without `+`."""
    digits = phone.removeprefix("+")
    if not phone.startswith("+") or not digits.isdigit() or not 7 <= len(digits) <= 15:
        raise PermanentAddressError("invalid_number", "phone is not in E.164 form")
    return digits


__all__ = ["ProviderResult", "SmppProvider", "SmsProviderResult"]
