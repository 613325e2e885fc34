"""deliver_sm classification and decoding (pure)."""

from __future__ import annotations

import pytest

from engine.channels.sms.inbound import parse_deliver
from schemas.sms import InboundSms, Receipt

DLR = (
    b"id:abc_12 sub:001 dlvrd:000 submit date:2611280900 done date:2611280901 "
    b"stat:UNDELIV err:034 text:"
)


def test_receipt_prefers_the_tlv_id() -> None:
    r = parse_deliver(
        esm_class=0x04,
        source_addr=b"14155550123",
        source_addr_ton=1,
        destination_addr=b"NUDGE",
        data_coding=0,
        short_message=DLR,
        receipted_message_id=b"ABC12\x00",
        message_state=5,
    )
    assert isinstance(r, Receipt)
    assert (r.smsc_id, r.stat, r.state, r.final, r.error_code) == (
        "ABC12",
        "UNDELIV",
        "undeliverable",
        True,
        "034",
    )


def test_receipt_from_text_only() -> None:
    r = parse_deliver(
        esm_class=0x04,
        source_addr="1",
        source_addr_ton=1,
        destination_addr="",
        data_coding=0,
        short_message=DLR.replace(b"UNDELIV", b"DELIVRD"),
    )
    assert isinstance(r, Receipt)
    assert (r.smsc_id, r.state) == ("abc_12", "delivered")  # "_" kept: read as ASCII


def test_intermediate_receipt_by_state_tlv() -> None:
    r = parse_deliver(
        esm_class=0x20,
        source_addr="1",
        source_addr_ton=1,
        destination_addr="",
        data_coding=0,
        short_message=b"",
        receipted_message_id="m9",
        message_state=1,
    )
    assert isinstance(r, Receipt)
    assert (r.stat, r.state, r.final) == ("ENROUTE", "enroute", False)


def test_receipt_without_id_is_refused() -> None:
    with pytest.raises(ValueError):
        parse_deliver(
            esm_class=0x04,
            source_addr="1",
            source_addr_ton=1,
            destination_addr="",
            data_coding=0,
            short_message=b"stat:DELIVRD",
        )


@pytest.mark.parametrize(
    ("coding", "payload", "text"),
    [
        (0, b"STOP \x1b\x65\x00", "STOP €@"),
        (1, b"STOP", "STOP"),
        (3, "arrêt".encode("latin-1"), "arrêt"),
        (8, "stop 😀".encode("utf-16-be"), "stop 😀"),
    ],
)
def test_mo_decoding(coding: int, payload: bytes, text: str) -> None:
    mo = parse_deliver(
        esm_class=0,
        source_addr=b"14155550123",
        source_addr_ton=1,
        destination_addr=b"NUDGE",
        data_coding=coding,
        short_message=payload,
    )
    assert isinstance(mo, InboundSms)
    assert (mo.sender, mo.destination, mo.text, mo.concat) == ("+14155550123", "NUDGE", text, None)


def test_mo_part_with_udh() -> None:
    mo = parse_deliver(
        esm_class=0x40,
        source_addr="4477",
        source_addr_ton=3,
        destination_addr="NUDGE",
        data_coding=0,
        short_message=bytes((5, 0, 3, 9, 2, 1)) + b"hel",
    )
    assert isinstance(mo, InboundSms)
    assert (mo.sender, mo.text, mo.concat) == ("4477", "hel", (9, 2, 1))
