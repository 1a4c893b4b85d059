"""The master key's use cases: check at start that it opens what is stored, and re-seal every sealed
value with the primary key (`tendril crypto rotate`), so an old key can then be dropped."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from auth.credentials import CredentialVault, Sealed
from auth.crypto import CryptoError
from storage.sealed import SEALED_COLUMNS, SealedValues

Progress = Callable[[int, int], None]  # (done, total), after each value


@dataclass(frozen=True, slots=True)
class Resealed:
    what: str
    resealed: int
    unchanged: int  # already sealed with the primary key (or changed meanwhile by someone else)


class KeysAtRest:
    def __init__(self, vault: CredentialVault, values: SealedValues) -> None:
        self._vault = vault
        self._values = values

    @property
    def primary_key_id(self) -> str:
        """The key new values are sealed with."""
        return self._vault.keyring.primary_key_id

    def seal_for(self, purpose: str, plaintext: bytes) -> str:
        """Sealed with the primary key for one purpose (its associated data): what a browser holds
        for a moment, such as a one-time page's secret. Any replica opens it."""
        return self._vault.keyring.seal(plaintext, associated_data=f"tendril:{purpose}")

    def open_for(self, purpose: str, sealed: str) -> bytes | None:
        """What seal_for sealed for this purpose; None for anything else (forged, another purpose,
        a dropped key)."""
        try:
            return self._vault.keyring.open(sealed, associated_data=f"tendril:{purpose}")
        except CryptoError:
            return None

    async def check(self) -> None:
        """Open one stored value per key id: a wrong or missing master key fails here, loudly
        (CryptoError naming the key id), not at the first tool call."""
        seen: set[str] = set()
        for where in SEALED_COLUMNS:
            for row_id, sealed in await self._values.all(where):
                key_id = self._vault.keyring.sealed_key_id(sealed)
                if key_id not in seen:
                    self._vault.open(row_id, sealed, kind=cast(Sealed, where.kind))
                    seen.add(key_id)

    async def reseal_all(self, progress_for: Callable[[str], Progress] | None = None) -> list[Resealed]:
        """Re-seal every value with the primary key, column by column; `progress_for(what)` gives
        the callback that hears about that column's values."""
        report: list[Resealed] = []
        for where in SEALED_COLUMNS:
            progress = progress_for(where.what) if progress_for else None
            kind = cast(Sealed, where.kind)
            resealed = unchanged = 0
            sealed_ones = await self._values.all(where)
            for done, (row_id, sealed) in enumerate(sealed_ones, 1):
                fresh = self._vault.reseal(row_id, sealed, kind=kind)
                if fresh is not None and await self._values.replace(where, row_id, sealed, fresh):
                    resealed += 1
                else:
                    unchanged += 1
                if progress is not None:
                    progress(done, len(sealed_ones))
            report.append(Resealed(where.what, resealed, unchanged))
        return report
