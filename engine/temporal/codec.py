"""Payload encryption for everything Nudge puts into Temporal histories.

Workflow inputs, signals, activity arguments and results (and, with the failure converter set
by `data_converter`, failure messages and stack traces) are encrypted with AES-256-GCM before
they leave the process, so the Temporal server and its database only ever hold ciphertext.
Workflow ids, task queues, type names and search attributes are NOT payloads and stay in
plain text: keep personal data out of them.

Keys come from `NUDGE_ENCRYPTION_KEYS` = "kid:base64key,kid2:base64key". The first key
encrypts; every listed key can decrypt, which is how a key is rotated: put the new key first,
keep the old one until no retained history uses it, then drop it.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
import re
from collections.abc import Mapping, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import SecretStr
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadCodec,
)

ENCODING = b"binary/encrypted"
"""`encoding` metadata of an encrypted payload (what Temporal's samples and UI expect)."""
KEY_ID_METADATA = "encryption-key-id"
"""Metadata entry naming the key a payload was encrypted with."""
KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12  # the GCM standard nonce, random per payload
_TAG_BYTES = 16

_KEY_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_URLSAFE = str.maketrans("-_", "+/")


class CodecError(Exception):
    """A payload could not be decrypted. Messages name key ids, never key material."""


class UnknownKeyError(CodecError):
    """A payload names a key id this process was not given."""

    def __init__(self, key_id: str, known: Sequence[str]) -> None:
        super().__init__(
            f"payload was encrypted with key id {key_id!r}, which is not among the configured "
            f"keys ({', '.join(known)}); add it to NUDGE_ENCRYPTION_KEYS to read this history"
        )
        self.key_id = key_id


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM payload codec with key rotation.

    Each payload is serialised, encrypted with the active key under a fresh random 12-byte
    nonce, and stored as `nonce || ciphertext || tag` with metadata
    `encoding=binary/encrypted` and `encryption-key-id=<kid>`. The key id is also the GCM
    associated data, so a payload whose key-id metadata was altered fails authentication.
    Payloads that are not encrypted (e.g. written before encryption was enabled) pass
    through `decode` unchanged.
    """

    def __init__(self, keys: Mapping[str, bytes], *, active: str | None = None) -> None:
        """`keys`: key id -> 32-byte key; `active`: the id that encrypts (default: the first)."""
        if not keys:
            raise ValueError("EncryptionCodec needs at least one key")
        for kid, key in keys.items():
            _check_key(kid, key)
        self._active = active if active is not None else next(iter(keys))
        if self._active not in keys:
            raise ValueError(f"active key id {self._active!r} is not among the keys")
        self._ciphers = {kid: AESGCM(key) for kid, key in keys.items()}

    @property
    def active_key_id(self) -> str:
        return self._active

    @property
    def key_ids(self) -> list[str]:
        return list(self._ciphers)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(p) for p in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        """Encrypt one payload with the active key (synchronous: microseconds per KB)."""
        nonce = os.urandom(NONCE_BYTES)
        kid = self._active
        sealed = self._ciphers[kid].encrypt(nonce, payload.SerializeToString(), kid.encode())
        return Payload(
            metadata={"encoding": ENCODING, KEY_ID_METADATA: kid.encode()},
            data=nonce + sealed,
        )

    def decrypt(self, payload: Payload) -> Payload:
        """Decrypt one payload with the key it names; non-encrypted payloads pass through."""
        if payload.metadata.get("encoding") != ENCODING:
            return payload
        raw_kid = payload.metadata.get(KEY_ID_METADATA)
        if raw_kid is None:
            raise CodecError(f"encrypted payload has no {KEY_ID_METADATA!r} metadata")
        kid = raw_kid.decode("utf-8", errors="replace")
        cipher = self._ciphers.get(kid)
        if cipher is None:
            raise UnknownKeyError(kid, self.key_ids)
        data = payload.data
        if len(data) < NONCE_BYTES + _TAG_BYTES:
            raise CodecError(f"encrypted payload (key id {kid!r}) is truncated")
        try:
            plain = cipher.decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], kid.encode())
        except InvalidTag:
            raise CodecError(
                f"encrypted payload (key id {kid!r}) failed authentication: it was altered, "
                "or the key configured under this id is not the one that encrypted it"
            ) from None
        return Payload.FromString(plain)


def _check_key(kid: str, key: bytes) -> None:
    if not _KEY_ID.match(kid):
        raise ValueError(f"invalid key id {kid!r}: use 1-64 of A-Z a-z 0-9 . _ -")
    if len(key) != KEY_BYTES:
        raise ValueError(f"key {kid!r} must be {KEY_BYTES} bytes (AES-256), got {len(key)}")


def parse_keys(text: str) -> dict[str, bytes]:
    """Parse "kid:base64key,kid2:base64key" into an ordered {kid: key}; the first encrypts.

    Standard or URL-safe base64 is accepted. Errors name the key id, never the key.
    """
    keys: dict[str, bytes] = {}
    for position, item in enumerate(text.split(","), start=1):
        item = item.strip()
        if not item:
            continue
        kid, sep, encoded = item.partition(":")
        kid = kid.strip()
        if not sep or not kid:
            raise ValueError(f"encryption key #{position} is not of the form 'kid:base64key'")
        if kid in keys:
            raise ValueError(f"encryption key id {kid!r} is listed twice")
        try:
            key = base64.b64decode(encoded.strip().translate(_URLSAFE), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"encryption key {kid!r} is not valid base64") from None
        _check_key(kid, key)
        keys[kid] = key
    if not keys:
        raise ValueError("no encryption keys given")
    return keys


def codec_from_secret(secret: str | SecretStr | None) -> EncryptionCodec | None:
    """The codec for `Settings.encryption_keys`, or None when encryption is not configured."""
    if isinstance(secret, SecretStr):
        secret = secret.get_secret_value()
    if secret is None or not secret.strip():
        return None
    return EncryptionCodec(parse_keys(secret))


def generate_key() -> str:
    """A new random AES-256 key in standard base64 (for `nudge keys codec`)."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode("ascii")


def data_converter(codec: PayloadCodec | None) -> DataConverter:
    """Nudge's data converter: pydantic payloads, encrypted when a codec is given.

    With a codec, failures use `DefaultFailureConverterWithEncodedAttributes`, which moves
    exception messages and stack traces into an encoded payload so they are encrypted too
    (the failure's visible message becomes "Encoded failure"). Without one this is plain
    `pydantic_data_converter`. Client, workers and replayer must use the same keys.
    """
    if codec is None:
        return pydantic_data_converter
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=codec,
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )
