"""EncryptionCodec: AES-256-GCM round trip, rotation, tamper and unknown-key errors."""

from __future__ import annotations

import base64

import pytest
from pydantic import BaseModel
from temporalio.api.common.v1 import Payload
from temporalio.api.failure.v1 import Failure
from temporalio.converter import DefaultFailureConverterWithEncodedAttributes

from engine.temporal.codec import (
    ENCODING,
    KEY_ID_METADATA,
    CodecError,
    EncryptionCodec,
    UnknownKeyError,
    codec_from_secret,
    data_converter,
    generate_key,
    parse_keys,
)

PHONE = "+15555550123"


def _key() -> bytes:
    return base64.b64decode(generate_key())


def _plain(text: str) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=f'"{text}"'.encode())


async def test_round_trip_hides_plaintext_and_tags_key_id() -> None:
    codec = EncryptionCodec({"k1": _key()})
    original = _plain(PHONE)
    [sealed] = await codec.encode([original])
    assert sealed.metadata["encoding"] == ENCODING
    assert sealed.metadata[KEY_ID_METADATA] == b"k1"
    assert PHONE.encode() not in sealed.SerializeToString()
    assert await codec.decode([sealed]) == [original]


async def test_nonce_is_fresh_per_payload() -> None:
    codec = EncryptionCodec({"k1": _key()})
    first, second = await codec.encode([_plain("same"), _plain("same")])
    assert first.data != second.data


async def test_rotation_old_key_decrypts_new_key_encrypts() -> None:
    old, new = _key(), _key()
    before = EncryptionCodec({"old": old})
    [written_before] = await before.encode([_plain(PHONE)])

    after = EncryptionCodec({"new": new, "old": old})
    assert after.active_key_id == "new"
    assert await after.decode([written_before]) == [_plain(PHONE)]
    [written_after] = await after.encode([_plain(PHONE)])
    assert written_after.metadata[KEY_ID_METADATA] == b"new"
    # The old-only codec cannot read what the rotated one wrote.
    with pytest.raises(UnknownKeyError):
        await before.decode([written_after])


async def test_tampered_ciphertext_is_rejected() -> None:
    codec = EncryptionCodec({"k1": _key()})
    [sealed] = await codec.encode([_plain(PHONE)])
    flipped = bytearray(sealed.data)
    flipped[-1] ^= 0x01
    tampered = Payload(metadata=dict(sealed.metadata), data=bytes(flipped))
    with pytest.raises(CodecError, match="failed authentication"):
        await codec.decode([tampered])


async def test_swapped_key_id_metadata_is_rejected() -> None:
    # Same key under two ids: the key id is authenticated data, so relabelling fails.
    key = _key()
    codec = EncryptionCodec({"a": key, "b": key})
    [sealed] = await codec.encode([_plain(PHONE)])
    relabelled = Payload(metadata={**sealed.metadata, KEY_ID_METADATA: b"b"}, data=sealed.data)
    with pytest.raises(CodecError):
        await codec.decode([relabelled])


async def test_unknown_key_id_names_the_id_not_the_key() -> None:
    writer_key = _key()
    [sealed] = await EncryptionCodec({"gone-2025": writer_key}).encode([_plain(PHONE)])
    reader_key = _key()
    reader = EncryptionCodec({"current": reader_key})
    with pytest.raises(UnknownKeyError) as raised:
        await reader.decode([sealed])
    message = str(raised.value)
    assert "gone-2025" in message
    for secret in (writer_key, reader_key):
        assert base64.b64encode(secret).decode() not in message


async def test_plain_payloads_pass_through_decode() -> None:
    codec = EncryptionCodec({"k1": _key()})
    assert await codec.decode([_plain("x")]) == [_plain("x")]


def test_parse_keys_keeps_order_and_accepts_urlsafe() -> None:
    k1, k2 = _key(), _key()
    text = f" new:{base64.urlsafe_b64encode(k1).decode()} , old:{base64.b64encode(k2).decode()}"
    assert list(parse_keys(text).items()) == [("new", k1), ("old", k2)]


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "no encryption keys"),
        ("nokid", "kid:base64key"),
        ("k:not base64!", "not valid base64"),
        (f"k:{base64.b64encode(b'short').decode()}", "32 bytes"),
        ("k:{0},k:{0}".format(base64.b64encode(bytes(32)).decode()), "listed twice"),
        (f"bad id:{base64.b64encode(bytes(32)).decode()}", "invalid key id"),
    ],
)
def test_parse_keys_errors(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_keys(text)


def test_parse_keys_error_never_echoes_the_key() -> None:
    secret = base64.b64encode(b"x" * 31).decode()
    with pytest.raises(ValueError) as raised:
        parse_keys(f"k1:{secret}")
    assert secret not in str(raised.value)


def test_codec_from_secret() -> None:
    assert codec_from_secret(None) is None
    assert codec_from_secret("  ") is None
    codec = codec_from_secret(f"a:{generate_key()},b:{generate_key()}")
    assert codec is not None
    assert codec.key_ids == ["a", "b"]


class Cart(BaseModel):
    phone: str
    items: int


async def test_data_converter_encrypts_pydantic_payloads_and_failures() -> None:
    codec = EncryptionCodec({"k1": _key()})
    converter = data_converter(codec)
    assert isinstance(converter.failure_converter, DefaultFailureConverterWithEncodedAttributes)
    [payload] = await converter.encode([Cart(phone=PHONE, items=2)])
    assert PHONE.encode() not in payload.SerializeToString()
    assert await converter.decode([payload], [Cart]) == [Cart(phone=PHONE, items=2)]

    failure = Failure()
    await converter.encode_failure(RuntimeError(f"cannot text {PHONE}"), failure)
    assert PHONE.encode() not in failure.SerializeToString()
    assert failure.message == "Encoded failure"
    assert PHONE in str(await converter.decode_failure(failure))


def test_data_converter_without_codec_is_plain_pydantic() -> None:
    converter = data_converter(None)
    assert converter.payload_codec is None
