"""Sealing and opening connection credentials (a JSON object of credential fields)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from uuid import UUID

from auth.crypto import CryptoError, Keyring


class CredentialVault:
    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring

    @staticmethod
    def _associated_data(connection_id: UUID) -> str:
        return f"tendril:connection:{connection_id}"

    def seal(self, connection_id: UUID, fields: Mapping[str, str]) -> str:
        plaintext = json.dumps(dict(fields), separators=(",", ":")).encode()
        return self.keyring.seal(plaintext, associated_data=self._associated_data(connection_id))

    def open(self, connection_id: UUID, sealed: str) -> dict[str, str]:
        plaintext = self.keyring.open(sealed, associated_data=self._associated_data(connection_id))
        try:
            fields = json.loads(plaintext)
        except json.JSONDecodeError as exc:
            raise CryptoError("credential record is not valid JSON after decryption") from exc
        if not isinstance(fields, dict):
            raise CryptoError("credential record is not a JSON object")
        return {str(key): str(value) for key, value in fields.items()}

    def reseal(self, connection_id: UUID, sealed: str) -> str | None:
        """The same credential sealed with the primary key, or None when it already is."""
        if self.keyring.sealed_key_id(sealed) == self.keyring.primary_key_id:
            return None
        plaintext = self.keyring.open(sealed, associated_data=self._associated_data(connection_id))
        return self.keyring.seal(plaintext, associated_data=self._associated_data(connection_id))
