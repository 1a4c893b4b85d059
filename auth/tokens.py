"""Fresh OAuth credentials: refresh ahead of expiry, once, whoever asks and from whichever process.

Concurrent calls on one connection share one refresh: an in-process lock per connection keeps a
process's own callers in line, and a short lease on the connection row (compare-and-set, so it
works on SQLite and PostgreSQL alike) keeps other processes sharing the database out.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from uuid import UUID
from weakref import WeakValueDictionary

import anyio

from auth.credentials import CredentialVault
from auth.oauth import OAuthClient, OAuthFailure
from auth.redaction import secrets_to_redact
from storage.repositories import ConnectionRecord, Store

logger = logging.getLogger(__name__)

REFRESH_LEEWAY_SECONDS = 120.0  # refresh this long before the provider would refuse the token
LEASE_SECONDS = 30.0
_WAIT_STEP = 0.05


# RFC 6749 says invalid_grant; Slack says invalid_refresh_token or token_revoked.
DEAD_GRANT_ERRORS = frozenset({"invalid_grant", "invalid_refresh_token", "token_revoked", "token_expired"})


class ReauthorizationNeeded(Exception):
    """The provider refused the refresh token (invalid_grant), or the connection lost its credential
    meanwhile: the user must connect again (the caller marks the connection)."""


class TokenKeeper:
    def __init__(
        self,
        store: Store,
        vault: CredentialVault,
        *,
        now: Callable[[], float] = time.time,
        on_refresh: Callable[[str, str], None] | None = None,
    ) -> None:
        """`on_refresh(connector_slug, outcome)` hears of each refresh this process asks a provider
        for: "ok", "refused" (the user must connect again) or "failed"."""
        self._store = store
        self._vault = vault
        self._now = now
        self._on_refresh = on_refresh
        self._locks: WeakValueDictionary[UUID, anyio.Lock] = WeakValueDictionary()

    def needs_refresh(self, credentials: dict[str, str]) -> bool:
        expires_at = credentials.get("expires_at")
        if not expires_at or "refresh_token" not in credentials:
            return False
        return float(expires_at) - REFRESH_LEEWAY_SECONDS <= self._now()

    async def fresh_credentials(
        self, connection: ConnectionRecord, oauth: OAuthClient | None
    ) -> dict[str, str]:
        """The connection's credentials, refreshed first when the access token is about to expire."""
        assert connection.sealed_credentials is not None
        credentials = self._vault.open(connection.id, connection.sealed_credentials)
        register_token_secrets(credentials)
        if oauth is None or not self.needs_refresh(credentials):
            return credentials
        lock = self._locks.get(connection.id)
        if lock is None:
            lock = self._locks[connection.id] = anyio.Lock()
        async with lock:
            return await self._refresh_once(connection.id, oauth, connection.connector_slug)

    async def _refresh_once(self, connection_id: UUID, oauth: OAuthClient, slug: str) -> dict[str, str]:
        deadline = self._now() + LEASE_SECONDS
        while True:
            current = await self._current(connection_id)
            if not self.needs_refresh(current):
                return current  # another caller (maybe another process) refreshed meanwhile
            if await self._store.try_refresh_lease(connection_id, seconds=LEASE_SECONDS):
                break
            if self._now() > deadline:
                raise TimeoutError("waited too long for another process to refresh the token")
            await anyio.sleep(_WAIT_STEP)
        try:
            current = await self._current(connection_id)
            if not self.needs_refresh(current):
                return current
            try:
                tokens = await oauth.refresh(current["refresh_token"])
            except OAuthFailure as failure:
                dead = failure.error in DEAD_GRANT_ERRORS
                self._refreshed(slug, "refused" if dead else "failed")
                if dead:
                    raise ReauthorizationNeeded("the provider refused the refresh token") from None
                raise
            except Exception:
                self._refreshed(slug, "failed")
                raise
            self._refreshed(slug, "ok")
            register_token_secrets(tokens.fields)
            refreshed = {**current, **tokens.fields}
            for source, key in _credential_keys(current).items():
                if source in tokens.fields:
                    refreshed[key] = tokens.fields[source]
            await self._store.store_refreshed_token(
                connection_id,
                sealed_credentials=self._vault.seal(connection_id, refreshed),
                token_expires_at=_as_datetime(tokens.expires_at),
                scopes=tokens.scopes,
            )
            logger.info("refreshed the access token of connection %s", connection_id)
            return refreshed
        finally:
            await self._store.release_refresh_lease(connection_id)

    def _refreshed(self, slug: str, outcome: str) -> None:
        if self._on_refresh is not None:
            self._on_refresh(slug, outcome)

    async def _current(self, connection_id: UUID) -> dict[str, str]:
        record = await self._store.connection_by_id(connection_id)
        if record is None or record.sealed_credentials is None:
            raise ReauthorizationNeeded("the connection no longer holds a credential")
        return self._vault.open(connection_id, record.sealed_credentials)


def register_token_secrets(fields: dict[str, str]) -> None:
    """Tokens are secrets whatever their key: keep them out of every log line."""
    for key in ("access_token", "refresh_token", "code_verifier"):
        if fields.get(key):
            secrets_to_redact.register(fields[key])


def _credential_keys(credentials: dict[str, str]) -> dict[str, str]:
    """Which token field also fills a connector-specific key (Slack's bot_token), as recorded at connect."""
    mapping = credentials.get("_credential_keys", "")
    return dict(pair.split("=", 1) for pair in mapping.split(",") if "=" in pair)


def _as_datetime(epoch: float | None) -> datetime | None:
    return datetime.fromtimestamp(epoch, UTC) if epoch is not None else None
