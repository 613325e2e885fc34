"""SMS text encoding and segmentation: GSM 03.38 (unpacked) or UCS-2, with concatenation UDH.

We do this ourselves rather than with `smpplib.gsm.make_parts`, which splits a GSM escape
pair (`0x1B` + char) and a UTF-16 surrogate pair (emoji) across parts.

Units: a GSM part holds septets, sent unpacked (one octet per septet, `data_coding` 0: the
SMSC packs them); a UCS-2 part holds UTF-16 code units (two octets each). Limits are the
3GPP ones: 160 septets / 70 units in a single part, 153 / 67 per part of a multipart message
(the 6-octet UDH `05 00 03 ref total seq` takes the rest of the 140-octet payload).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

Encoding = Literal["gsm7", "ucs2"]

# GSM 03.38 default alphabet, position = septet value (0x1B is the escape, never a char).
_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x00ÆæßÉ"
    " !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
ESC = 0x1B
# The extension table: each of these costs two septets (ESC + code).
_EXTENSION = {
    "\f": 0x0A,
    "^": 0x14,
    "{": 0x28,
    "}": 0x29,
    "\\": 0x2F,
    "[": 0x3C,
    "~": 0x3D,
    "]": 0x3E,
    "|": 0x40,
    "€": 0x65,
}

GSM_BASIC: dict[str, int] = {ch: i for i, ch in enumerate(_BASIC) if i != ESC}
GSM_EXTENSION: dict[str, int] = dict(_EXTENSION)
_BASIC_REVERSE = {i: ch for ch, i in GSM_BASIC.items()}
_EXTENSION_REVERSE = {code: ch for ch, code in GSM_EXTENSION.items()}

DATA_CODING_GSM = 0x00
DATA_CODING_UCS2 = 0x08
ESM_CLASS_DEFAULT = 0x00
ESM_CLASS_UDHI = 0x40  # short_message starts with a user data header

SINGLE_GSM_SEPTETS = 160
MULTI_GSM_SEPTETS = 153
SINGLE_UCS2_UNITS = 70
MULTI_UCS2_UNITS = 67
MAX_PAYLOAD_OCTETS = 140
UDH_LENGTH = 6


class TooLong(ValueError):
    """The text needs more parts than allowed; `reason` is the stable code `too_long`."""

    reason = "too_long"

    def __init__(self, parts: int, max_parts: int) -> None:
        super().__init__(f"too_long: needs {parts} parts, at most {max_parts} allowed")
        self.parts = parts
        self.max_parts = max_parts


@dataclass(frozen=True)
class EncodedSms:
    """A text ready for `submit_sm`: each part is a complete `short_message` (UDH included
    when `part_count > 1`), to be sent with this `data_coding` and `esm_class`."""

    encoding: Encoding
    data_coding: int
    esm_class: int
    parts: list[bytes]

    @property
    def part_count(self) -> int:
        return len(self.parts)


def is_gsm(text: str) -> bool:
    """True when every character is in the GSM default alphabet or its extension table."""
    return all(ch in GSM_BASIC or ch in GSM_EXTENSION for ch in text)


def _gsm_units(text: str) -> list[bytes]:
    """One entry per character: its septet(s), unpacked (escape pairs stay together)."""
    return [
        bytes((GSM_BASIC[ch],)) if ch in GSM_BASIC else bytes((ESC, GSM_EXTENSION[ch]))
        for ch in text
    ]


def _ucs2_units(text: str) -> list[bytes]:
    """One entry per character: 2 octets, or 4 for a surrogate pair (kept together)."""
    return [ch.encode("utf-16-be") for ch in text]


def _pack(units: list[bytes], limit: int, size: int) -> list[bytes]:
    """Greedy split of whole units into chunks of at most `limit` elements of `size` octets."""
    chunks: list[bytes] = []
    current = bytearray()
    for unit in units:
        if (len(current) + len(unit)) // size > limit:
            chunks.append(bytes(current))
            current = bytearray()
        current += unit
    if current or not chunks:
        chunks.append(bytes(current))
    return chunks


def encode_sms(text: str, *, max_parts: int = 10, reference: int) -> EncodedSms:
    """Encode `text` as GSM 03.38 when it fits the alphabet, else UCS-2, and split it.

    `reference` (0-255) is the concatenation reference shared by all parts; keep it stable
    across retries of one message so that resent parts still join up on the handset.
    Raises `TooLong` when more than `max_parts` parts (never more than 255) are needed.
    """
    if not 0 <= reference <= 255:
        raise ValueError("reference must be in 0..255")
    if is_gsm(text):
        encoding: Encoding = "gsm7"
        units, size, single, multi = _gsm_units(text), 1, SINGLE_GSM_SEPTETS, MULTI_GSM_SEPTETS
        data_coding = DATA_CODING_GSM
    else:
        encoding = "ucs2"
        units, size, single, multi = _ucs2_units(text), 2, SINGLE_UCS2_UNITS, MULTI_UCS2_UNITS
        data_coding = DATA_CODING_UCS2
    total = sum(len(u) for u in units) // size
    if total <= single:
        return EncodedSms(encoding, data_coding, ESM_CLASS_DEFAULT, [b"".join(units)])
    chunks = _pack(units, multi, size)
    if len(chunks) > min(max_parts, 255):
        raise TooLong(len(chunks), max_parts)
    count = len(chunks)
    parts = [
        bytes((5, 0, 3, reference, count, seq)) + chunk for seq, chunk in enumerate(chunks, start=1)
    ]
    return EncodedSms(encoding, data_coding, ESM_CLASS_UDHI, parts)


def split_udh(payload: bytes, esm_class: int) -> tuple[bytes, bytes]:
    """Split `short_message` into (udh, body) when `esm_class` says a UDH is present."""
    if esm_class & ESM_CLASS_UDHI and payload:
        end = 1 + payload[0]
        return payload[:end], payload[end:]
    return b"", payload


def concat_info(udh: bytes) -> tuple[int, int, int] | None:
    """(reference, total, seq) from an 8-bit (IEI 0) or 16-bit (IEI 8) concatenation UDH."""
    pos = 1
    while pos + 1 < len(udh):
        iei, length = udh[pos], udh[pos + 1]
        data = udh[pos + 2 : pos + 2 + length]
        if iei == 0x00 and length == 3:
            return data[0], data[1], data[2]
        if iei == 0x08 and length == 4:
            return (data[0] << 8) | data[1], data[2], data[3]
        pos += 2 + length
    return None


def decode_gsm(septets: bytes) -> str:
    """Decode unpacked GSM 03.38 septets; an unknown extension code falls back per spec to
    the basic character, unknown values to `?`."""
    out: list[str] = []
    escaped = False
    for value in septets:
        if escaped:
            out.append(_EXTENSION_REVERSE.get(value, _BASIC_REVERSE.get(value & 0x7F, "?")))
            escaped = False
        elif value == ESC:
            escaped = True
        else:
            out.append(_BASIC_REVERSE.get(value & 0x7F, "?"))
    return "".join(out)


def decode_body(body: bytes, data_coding: int) -> str:
    """Text of a `short_message` body (UDH removed) per its `data_coding`:
    0 GSM default, 1 IA5/ASCII, 3 Latin-1, 8 UCS-2; other schemes are read as Latin-1."""
    coding = data_coding & 0xFF
    if coding == DATA_CODING_GSM:
        return decode_gsm(body)
    if coding == 0x01:
        return body.decode("ascii", errors="replace")
    if coding == DATA_CODING_UCS2:
        return body.decode("utf-16-be", errors="replace")
    return body.decode("latin-1")


def decode_parts(sms: EncodedSms) -> str:
    """Join the parts back into text (the inverse of `encode_sms`, for checks and tests)."""
    return "".join(decode_body(split_udh(p, sms.esm_class)[1], sms.data_coding) for p in sms.parts)


def air_octets(part: bytes, encoding: Encoding, *, has_udh: bool) -> int:
    """Octets a part occupies on the air interface (GSM septets packed 7 bits each, the UDH
    padded to a septet boundary); at most 140 for every part `encode_sms` makes."""
    if encoding == "ucs2":
        return len(part)
    udh_len = 1 + part[0] if has_udh else 0
    udh_septets = math.ceil(udh_len * 8 / 7)
    return math.ceil((udh_septets + len(part) - udh_len) * 7 / 8)
