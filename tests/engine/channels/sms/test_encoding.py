"""GSM 03.38 / UCS-2 encoding and segmentation: examples at the limits, then properties."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.channels.sms.encoding import (
    ESC,
    GSM_BASIC,
    GSM_EXTENSION,
    TooLong,
    air_octets,
    concat_info,
    decode_parts,
    encode_sms,
    split_udh,
)

GSM_CHARS = sorted(GSM_BASIC) + sorted(GSM_EXTENSION)
OTHER_CHARS = [*"ïçЖ中", "😀", "🎉", "\U0001f1eb"]


def septets(text: str) -> int:
    return sum(2 if ch in GSM_EXTENSION else 1 for ch in text)


def utf16_units(text: str) -> int:
    return sum(2 if ord(ch) > 0xFFFF else 1 for ch in text)


def expected_parts(text: str) -> int:
    """Independent count: whole characters packed greedily into 153 septets / 67 units."""
    gsm = all(ch in GSM_BASIC or ch in GSM_EXTENSION for ch in text)

    def cost(ch: str) -> int:
        wide = ch in GSM_EXTENSION if gsm else ord(ch) > 0xFFFF
        return 2 if wide else 1

    single, multi = (160, 153) if gsm else (70, 67)
    if sum(map(cost, text)) <= single:
        return 1
    parts, used = 1, 0
    for ch in text:
        if used + cost(ch) > multi:
            parts, used = parts + 1, 0
        used += cost(ch)
    return parts


def bodies(text: str) -> list[bytes]:
    sms = encode_sms(text, reference=7, max_parts=255)
    return [split_udh(p, sms.esm_class)[1] for p in sms.parts]


def test_plain_gsm_single_part_is_unpacked_septets() -> None:
    sms = encode_sms("Hello @ £5 {ok}", reference=1)
    assert (sms.encoding, sms.data_coding, sms.esm_class, sms.part_count) == ("gsm7", 0, 0, 1)
    assert sms.parts[0] == b"Hello \x00 \x015 \x1b(ok\x1b)"


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("€" * 80, 1),
        ("€" * 81, 2),
        ("Ж" * 70, 1),
        ("Ж" * 71, 2),
        ("Ж" * 134, 2),
        ("Ж" * 135, 3),
        ("😀" * 35, 1),
        ("😀" * 36, 2),
    ],
)
def test_part_count_limits(text: str, parts: int) -> None:
    assert encode_sms(text, reference=0).part_count == parts


def test_escape_pair_at_boundary_moves_to_next_part() -> None:
    text = "a" * 152 + "€{}" + "b" * 10
    first, second = bodies(text)
    assert first == b"a" * 152  # "€" would need septets 153 and 154
    assert second.startswith(bytes((ESC, 0x65, ESC, 0x28, ESC, 0x29)))


def test_surrogate_pair_at_boundary_moves_to_next_part() -> None:
    text = "Ж" * 66 + "😀" + "Ж" * 10
    first, second = bodies(text)
    assert len(first) == 66 * 2
    assert second.decode("utf-16-be").startswith("😀")


def test_udh_and_flags_of_multipart() -> None:
    sms = encode_sms("x" * 400, reference=0xAB)
    assert sms.esm_class == 0x40
    assert [p[:6] for p in sms.parts] == [bytes((5, 0, 3, 0xAB, 3, i)) for i in (1, 2, 3)]
    assert [concat_info(split_udh(p, 0x40)[0]) for p in sms.parts] == [
        (0xAB, 3, 1),
        (0xAB, 3, 2),
        (0xAB, 3, 3),
    ]


def test_too_long() -> None:
    with pytest.raises(TooLong) as info:
        encode_sms("a" * (153 * 10 + 1), reference=0)
    assert info.value.reason == "too_long" and info.value.parts == 11
    assert encode_sms("a" * (153 * 10 + 1), reference=0, max_parts=11).part_count == 11


def test_non_gsm_latin_goes_ucs2() -> None:
    sms = encode_sms("naïve", reference=0)
    assert (sms.encoding, sms.data_coding, sms.parts) == ("ucs2", 8, ["naïve".encode("utf-16-be")])


texts = st.one_of(
    st.text(alphabet=st.sampled_from(GSM_CHARS), max_size=800),
    st.text(alphabet=st.sampled_from(GSM_CHARS + OTHER_CHARS), max_size=400),
    st.text(max_size=300).filter(lambda t: "\ud800" not in t),
)


@settings(max_examples=300, deadline=None)
@given(text=texts, reference=st.integers(0, 255))
def test_properties(text: str, reference: int) -> None:
    expected = expected_parts(text)
    try:
        sms = encode_sms(text, reference=reference, max_parts=10)
    except TooLong as exc:
        assert expected > 10 and exc.parts == expected
        return
    except UnicodeEncodeError:
        assert any(0xD800 <= ord(ch) <= 0xDFFF for ch in text)  # lone surrogates: not text
        return
    assert decode_parts(sms) == text
    assert sms.part_count == expected
    multipart = sms.part_count > 1
    for seq, part in enumerate(sms.parts, start=1):
        assert air_octets(part, sms.encoding, has_udh=multipart) <= 140
        udh, body = split_udh(part, sms.esm_class)
        if multipart:
            assert concat_info(udh) == (reference, sms.part_count, seq)
        if sms.encoding == "gsm7":
            assert not body.endswith(bytes((ESC,)))  # an escape pair is never split
            assert len(body) <= (153 if multipart else 160)
        else:
            body.decode("utf-16-be")  # strict: no half surrogate pair at either end
            assert len(body) <= (134 if multipart else 140)
    if sms.encoding == "gsm7" and not any(ch in GSM_EXTENSION for ch in text) and multipart:
        assert sms.part_count == math.ceil(septets(text) / 153)
    if sms.encoding == "ucs2" and multipart and utf16_units(text) == len(text):
        assert sms.part_count == math.ceil(len(text) / 67)
