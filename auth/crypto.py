"""Encryption of secrets at rest: AES-256-GCM with key ids, so keys can be rotated.

Sealed format (ASCII, fits a TEXT column): ``v1:<key_id>:<base64url(nonce || ciphertext || tag)>``.
The record's id is bound as associated data, so a ciphertext copied onto another record fails to
open instead of leaking that record's secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_VERSION = "v1"
_NONCE_BYTES = 12  # 96-bit random nonce, as NIST SP 800-38D recommends for GCM.


class CryptoError(Exception):
    """A key is malformed, or a ciphertext cannot be opened with any configured key."""


@dataclass(frozen=True, slots=True)
class _Key:
    key_id: str
    aead: AESGCM


def generate_key() -> str:
    """A fresh base64 AES-256 key, as TENDRIL_MASTER_KEY expects."""
    return base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()


def key_id_of(raw_key: bytes) -> str:
    # A fingerprint, not the key: 8 hex chars of SHA-256 identify it without revealing it.
    return hashlib.sha256(b"tendril-key-id:" + raw_key).hexdigest()[:8]


class Keyring:
    """One or more AES-256 keys. The first seals; every key opens."""

    def __init__(self, encoded_keys: Sequence[str]) -> None:
        keys: list[_Key] = []
        raws: list[bytes] = []
        for position, encoded in enumerate(k.strip() for k in encoded_keys if k.strip()):
            try:
                raw = base64.b64decode(encoded, validate=True)
            except binascii.Error as exc:
                raise CryptoError(f"master key #{position + 1} is not valid base64") from exc
            if len(raw) != 32:
                raise CryptoError(f"master key #{position + 1} must decode to 32 bytes, got {len(raw)}")
            keys.append(_Key(key_id_of(raw), AESGCM(raw)))
            raws.append(raw)
        if not keys:
            raise CryptoError("no master key configured")
        self._keys = keys
        self._raw = raws
        self._by_id = {key.key_id: key for key in keys}

    @classmethod
    def from_setting(cls, value: str) -> Keyring:
        return cls(value.split(","))

    def derive(self, info: bytes, length: int = 32) -> bytes:
        """A sub-key for another purpose (HKDF-SHA256 over the primary key): same on every replica."""
        return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(self._raw[0])

    @property
    def primary_key_id(self) -> str:
        return self._keys[0].key_id

    def seal(self, plaintext: bytes, *, associated_data: str) -> str:
        key = self._keys[0]
        nonce = os.urandom(_NONCE_BYTES)
        ciphertext = key.aead.encrypt(nonce, plaintext, associated_data.encode())
        body = base64.urlsafe_b64encode(nonce + ciphertext).decode()
        return f"{_VERSION}:{key.key_id}:{body}"

    def open(self, sealed: str, *, associated_data: str) -> bytes:
        try:
            version, key_id, body = sealed.split(":", 2)
            blob = base64.urlsafe_b64decode(body)
        except (ValueError, binascii.Error) as exc:
            raise CryptoError("ciphertext is malformed") from exc
        if version != _VERSION:
            raise CryptoError(f"unsupported ciphertext version {version!r}")
        key = self._by_id.get(key_id)
        if key is None:
            raise CryptoError(f"ciphertext was sealed with key {key_id}, which is not in TENDRIL_MASTER_KEY")
        try:
            return key.aead.decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], associated_data.encode())
        except InvalidTag as exc:
            raise CryptoError(f"ciphertext does not open with key {key_id} (wrong key or record)") from exc

    def sealed_key_id(self, sealed: str) -> str:
        return sealed.split(":", 2)[1]
