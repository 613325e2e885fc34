"""Payload encryption for everything Nudge puts into Temporal histories.

Workflow inputs, signals, activity arguments and results (and, with the failure converter set
by `data_converter`, failure messages and stack traces) are encrypted with AES-256-GCM before
they leave the process, so the Temporal server and its database only ever hold ciphertext.
Workflow ids, task queues, type names and search attributes are NOT payloads and stay in
plain text: keep personal data out of them.

Keys come from `NUDGE_ENCRYPTION_KEYS` = "kid:base64key,kid2:base64key". The first key
encrypts; every listed key can decrypt, which is how a key is rotated: put the new key first,
keep the old one until no retained history uses it, then drop it.

Per-user keys (crypto-shredding): with a `UserKeys` source, a payload of a journey run (the
workflow id names the user, see `engine.ids.user_of_workflow`) is encrypted with a key derived
for that user, HKDF-SHA256(master key, salt = the user's random salt, info = user id), and
says so in its metadata (`nudge-user`). Erasing the user deletes the salt: from then on no
process can decrypt anything Temporal holds about them. Payloads of no user (webhook
deliveries, ...) use the master key itself.
"""

from __future__ import annotations

import base64
import binascii
import copy
import dataclasses
import os
import re
from collections.abc import Mapping, Sequence
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import SecretStr
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadCodec,
    SerializationContext,
    WithSerializationContext,
)

from engine.ids import user_of_workflow

USER_METADATA = "nudge-user"
"""Metadata entry naming the user whose derived key encrypted a payload (an internal id)."""
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


class ErasedUserError(CodecError):
    """The payload belongs to a user whose key was shredded at erasure."""


class UserKeys(Protocol):
    """Where per-user salts come from (`engine.store.data_keys.StoreUserKeys`)."""

    async def salt(self, user_id: str, *, create: bool) -> bytes | None:
        """The user's salt (made on first use with `create`); None when erased."""


class EncryptionCodec(PayloadCodec, WithSerializationContext):
    """AES-256-GCM payload codec with key rotation.

    Each payload is serialised, encrypted with the active key under a fresh random 12-byte
    nonce, and stored as `nonce || ciphertext || tag` with metadata
    `encoding=binary/encrypted` and `encryption-key-id=<kid>`. The key id is also the GCM
    associated data, so a payload whose key-id metadata was altered fails authentication.
    Payloads that are not encrypted (e.g. written before encryption was enabled) pass
    through `decode` unchanged.
    """

    def __init__(
        self,
        keys: Mapping[str, bytes],
        *,
        active: str | None = None,
        user_keys: UserKeys | None = None,
        user: str | None = None,
    ) -> None:
        """`keys`: key id -> 32-byte key; `active`: the id that encrypts (default: the first);
        `user_keys`: per-user salts (crypto-shredding); `user`: the user whose payloads this
        instance encodes (set by `with_context` from the workflow id)."""
        if not keys:
            raise ValueError("EncryptionCodec needs at least one key")
        for kid, key in keys.items():
            _check_key(kid, key)
        self._active = active if active is not None else next(iter(keys))
        if self._active not in keys:
            raise ValueError(f"active key id {self._active!r} is not among the keys")
        self._keys = dict(keys)
        self._ciphers = {kid: AESGCM(key) for kid, key in keys.items()}
        self._user_keys = user_keys
        self._user = user
        self._derived: dict[tuple[str, str, bytes], AESGCM] = {}

    def with_context(self, context: SerializationContext) -> EncryptionCodec:
        """This codec for the payloads of one workflow (its user's key, if it has one)."""
        user = user_of_workflow(getattr(context, "workflow_id", None))
        if self._user_keys is None or user == self._user:
            return self
        twin = copy.copy(self)
        twin._user = user
        return twin

    @property
    def active_key_id(self) -> str:
        return self._active

    @property
    def key_ids(self) -> list[str]:
        return list(self._ciphers)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        if self._user is None or self._user_keys is None:
            return [self.encrypt(p) for p in payloads]
        salt = await self._user_keys.salt(self._user, create=True)
        if salt is None:
            raise ErasedUserError(f"user {self._user} was erased: nothing more is written")
        cipher = self._user_cipher(self._active, self._user, salt)
        return [self.encrypt(p, cipher=cipher, user=self._user) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        decoded = []
        for payload in payloads:
            raw_user = payload.metadata.get(USER_METADATA)
            if raw_user is None or payload.metadata.get("encoding") != ENCODING:
                decoded.append(self.decrypt(payload))
                continue
            user = raw_user.decode("utf-8", errors="replace")
            if self._user_keys is None:
                raise CodecError("payload uses a per-user key, but no user keys are configured")
            salt = await self._user_keys.salt(user, create=False)
            if salt is None:
                raise ErasedUserError(f"payload of user {user}, erased: it can no longer be read")
            kid = payload.metadata.get(KEY_ID_METADATA, b"").decode("utf-8", errors="replace")
            if kid not in self._keys:
                raise UnknownKeyError(kid, self.key_ids)
            decoded.append(self.decrypt(payload, cipher=self._user_cipher(kid, user, salt)))
        return decoded

    def _user_cipher(self, kid: str, user: str, salt: bytes) -> AESGCM:
        found = self._derived.get((kid, user, salt))
        if found is None:
            key = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=salt, info=user.encode())
            found = AESGCM(key.derive(self._keys[kid]))
            if len(self._derived) > 10_000:
                self._derived.clear()
            self._derived[(kid, user, salt)] = found
        return found

    def encrypt(
        self, payload: Payload, *, cipher: AESGCM | None = None, user: str | None = None
    ) -> Payload:
        """Encrypt one payload with the active key (or a user's `cipher` derived from it)."""
        nonce = os.urandom(NONCE_BYTES)
        kid = self._active
        metadata = {"encoding": ENCODING, KEY_ID_METADATA: kid.encode()}
        if user is not None:
            metadata[USER_METADATA] = user.encode()
        sealed = (cipher or self._ciphers[kid]).encrypt(
            nonce, payload.SerializeToString(), _aad(kid, user)
        )
        return Payload(metadata=metadata, data=nonce + sealed)

    def decrypt(self, payload: Payload, *, cipher: AESGCM | None = None) -> Payload:
        """Decrypt one payload with the key it names; non-encrypted payloads pass through."""
        if payload.metadata.get("encoding") != ENCODING:
            return payload
        raw_user = payload.metadata.get(USER_METADATA)
        user = raw_user.decode("utf-8", errors="replace") if raw_user is not None else None
        raw_kid = payload.metadata.get(KEY_ID_METADATA)
        if raw_kid is None:
            raise CodecError(f"encrypted payload has no {KEY_ID_METADATA!r} metadata")
        kid = raw_kid.decode("utf-8", errors="replace")
        cipher = cipher or self._ciphers.get(kid)
        if cipher is None:
            raise UnknownKeyError(kid, self.key_ids)
        data = payload.data
        if len(data) < NONCE_BYTES + _TAG_BYTES:
            raise CodecError(f"encrypted payload (key id {kid!r}) is truncated")
        try:
            plain = cipher.decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], _aad(kid, user))
        except InvalidTag:
            raise CodecError(
                f"encrypted payload (key id {kid!r}) failed authentication: it was altered, "
                "or the key configured under this id is not the one that encrypted it"
            ) from None
        return Payload.FromString(plain)


def _aad(kid: str, user: str | None) -> bytes:
    """GCM associated data: the key id (and user), so altered metadata fails to decrypt."""
    return kid.encode() if user is None else f"{kid}/{user}".encode()


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


def codec_from_secret(
    secret: str | SecretStr | None, *, user_keys: UserKeys | None = None
) -> EncryptionCodec | None:
    """The codec for `Settings.encryption_keys`, or None when encryption is not configured;
    with `user_keys`, journey payloads use per-user keys (crypto-shredding)."""
    if isinstance(secret, SecretStr):
        secret = secret.get_secret_value()
    if secret is None or not secret.strip():
        return None
    return EncryptionCodec(parse_keys(secret), user_keys=user_keys)


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
