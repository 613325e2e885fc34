"""What an SMSC's `deliver_sm` carries: a delivery receipt or a mobile-originated SMS.

`parse_deliver` is pure (plain values in, a model out) so it can be tested without a wire.
Both models (`schemas.sms`) hold personal data (numbers, text): never log them, log `smsc_id` only.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from engine.channels.sms.encoding import concat_info, decode_body, split_udh
from engine.clock import now
from schemas.sms import InboundSms, Receipt, ReceiptState

# SMPP 3.4 appendix B `stat:` words, and the message_state TLV values (5.3.2.35).
_STAT_STATE: dict[str, ReceiptState] = {
    "ENROUTE": "enroute",
    "DELIVRD": "delivered",
    "EXPIRED": "expired",
    "DELETED": "deleted",
    "UNDELIV": "undeliverable",
    "ACCEPTD": "accepted",
    "UNKNOWN": "unknown",
    "REJECTD": "rejected",
}
_TLV_STATE: dict[int, str] = {
    1: "ENROUTE",
    2: "DELIVRD",
    3: "EXPIRED",
    4: "DELETED",
    5: "UNDELIV",
    6: "ACCEPTD",
    7: "UNKNOWN",
    8: "REJECTD",
}
_NOT_FINAL = {"enroute", "accepted"}

_ID = re.compile(r"\bid:(\S+)", re.IGNORECASE)
_STAT = re.compile(r"\bstat:(\w+)", re.IGNORECASE)
_ERR = re.compile(r"\berr:(\w+)", re.IGNORECASE)

ESM_RECEIPT_MASK = 0x3C
ESM_SMSC_RECEIPT = 0x04
ESM_INTERMEDIATE_NOTIFICATION = 0x20  # also a receipt, usually ENROUTE/ACCEPTD


def _clean(value: bytes | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    return value.rstrip("\x00").strip()


def parse_deliver(
    *,
    esm_class: int,
    source_addr: bytes | str | None,
    source_addr_ton: int,
    destination_addr: bytes | str | None,
    data_coding: int,
    short_message: bytes | None,
    receipted_message_id: bytes | str | None = None,
    message_state: int | None = None,
    sar: tuple[int | None, int | None, int | None] = (None, None, None),
    received_at: datetime | None = None,
) -> Receipt | InboundSms:
    """Classify and decode one deliver_sm. Raises ValueError for a receipt that names no
    message id (nothing could ever match it). A part of a long message names its place by
    a concatenation UDH, or by the `sar_msg_ref_num`, `sar_total_segments` and
    `sar_segment_seqnum` TLVs (`sar`)."""
    when = received_at or now()
    payload = short_message or b""
    if esm_class & ESM_RECEIPT_MASK in (ESM_SMSC_RECEIPT, ESM_INTERMEDIATE_NOTIFICATION):
        # Receipt text is ASCII whatever data_coding says (GSM would turn "_" into "§").
        text = payload.decode("latin-1")
        smsc_id = _clean(receipted_message_id)
        if not smsc_id and (found := _ID.search(text)):
            smsc_id = found.group(1)
        if not smsc_id:
            raise ValueError("delivery receipt without a message id")
        stat_match = _STAT.search(text)
        stat = (
            stat_match.group(1).upper()
            if stat_match
            else _TLV_STATE.get(message_state or 0, "UNKNOWN")
        )
        state = _STAT_STATE.get(stat, "unknown")
        err = _ERR.search(text)
        return Receipt(
            smsc_id=smsc_id,
            stat=stat,
            state=state,
            final=state not in _NOT_FINAL,
            error_code=err.group(1) if err else None,
            received_at=when,
        )
    udh, body = split_udh(payload, esm_class)
    concat = concat_info(udh) if udh else None
    reference, total, seq = sar
    if concat is None and reference is not None and total and seq:
        concat = (int(reference), int(total), int(seq))
    sender = _clean(source_addr)
    if source_addr_ton == 1 and sender.isdigit():
        sender = "+" + sender
    return InboundSms(
        sender=sender,
        destination=_clean(destination_addr),
        text=decode_body(body, data_coding),
        data_coding=data_coding,
        concat=concat,
        received_at=when,
    )


def parse_deliver_pdu(pdu: Any) -> Receipt | InboundSms:
    """`parse_deliver` on a `smpplib.command.DeliverSM` (TLVs are attributes there)."""
    return parse_deliver(
        esm_class=int(pdu.esm_class or 0),
        source_addr=pdu.source_addr,
        source_addr_ton=int(pdu.source_addr_ton or 0),
        destination_addr=pdu.destination_addr,
        data_coding=int(pdu.data_coding or 0),
        short_message=pdu.short_message,
        receipted_message_id=getattr(pdu, "receipted_message_id", None),
        message_state=getattr(pdu, "message_state", None),
        sar=(
            getattr(pdu, "sar_msg_ref_num", None),
            getattr(pdu, "sar_total_segments", None),
            getattr(pdu, "sar_segment_seqnum", None),
        ),
    )
