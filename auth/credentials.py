"""Sealing and opening credentials (a JSON object of credential fields): a connection's own, or a
credential object's. Each is bound to its row (kind and id are the associated data), so a sealed
value copied into another row does not open."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Literal
from uuid import UUID

from auth.crypto import CryptoError, Keyring

# What a sealed value is: a connection's credential, a credential object's, an outgoing webhook's
# signing secret or its custom headers.
Sealed = Literal["connection", "credential", "outgoing_webhook", "outgoing_headers"]


class CredentialVault:
    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring

    @staticmethod
    def _associated_data(row_id: UUID, kind: Sealed) -> str:
        return f"tendril:{kind}:{row_id}"

    def seal(self, row_id: UUID, fields: Mapping[str, str], *, kind: Sealed = "connection") -> str:
        plaintext = json.dumps(dict(fields), separators=(",", ":")).encode()
        return self.keyring.seal(plaintext, associated_data=self._associated_data(row_id, kind))

    def open(self, row_id: UUID, sealed: str, *, kind: Sealed = "connection") -> dict[str, str]:
        plaintext = self.keyring.open(sealed, associated_data=self._associated_data(row_id, kind))
        try:
            fields = json.loads(plaintext)
        except json.JSONDecodeError as exc:
            raise CryptoError("credential record is not valid JSON after decryption") from exc
        if not isinstance(fields, dict):
            raise CryptoError("credential record is not a JSON object")
        return {str(key): str(value) for key, value in fields.items()}

    def reseal(self, row_id: UUID, sealed: str, *, kind: Sealed = "connection") -> str | None:
        """The same credential sealed with the primary key, or None when it already is."""
        if self.keyring.sealed_key_id(sealed) == self.keyring.primary_key_id:
            return None
        associated_data = self._associated_data(row_id, kind)
        return self.keyring.seal(
            self.keyring.open(sealed, associated_data=associated_data), associated_data=associated_data
        )
