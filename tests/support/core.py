"""Tendril's core outside a server, the way the CLI uses it; and the database itself, for tests
that check what is stored at rest (ciphertext, digests) rather than what the use cases answer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

from auth.credentials import CredentialVault
from server.app import build_core
from server.core import Core
from server.keys import load_keyring
from server.settings import Settings
from storage import db
from storage.repositories import Store, utcnow


@asynccontextmanager
async def prepared_core(settings: Settings) -> AsyncIterator[Core]:
    core = build_core(settings)
    try:
        await core.prepare()
        yield core
    finally:
        await core.aclose()


@asynccontextmanager
async def stored_rows(settings: Settings) -> AsyncIterator[Store]:
    """The tables, read directly (a migrated database, as `prepared_core` or a server leaves it)."""
    engine = db.create_engine(settings.resolved_database_url)
    try:
        yield Store(engine)
    finally:
        await engine.dispose()


def vault_of(settings: Settings) -> CredentialVault:
    """Seals and opens stored secrets with the master key the server under test uses."""
    return CredentialVault(load_keyring(settings).keyring)


class MovableClock:
    """The wall clock, plus however far a test has moved it (state and session expiry)."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return utcnow() + self.offset

    def advance(self, by: timedelta) -> None:
        self.offset += by
