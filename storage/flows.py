"""Short-lived browser-flow records: OAuth `state`s and signed-in sessions."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from storage import schema
from storage.repositories import Clock, utcnow

StateProblem = Literal["unknown", "expired", "used"]


@dataclass(frozen=True, slots=True)
class OAuthState:
    id: UUID
    owner_id: UUID
    connection_id: UUID
    sealed_verifier: str | None
    redirect_uri: str


@dataclass(frozen=True, slots=True)
class WebSession:
    id: UUID
    owner_id: UUID
    csrf_token: str
    expires_at: datetime
    key_id: UUID  # the API key it was opened with
    permissions: tuple[str, ...]  # that key's


class FlowStore:
    def __init__(self, engine: AsyncEngine, clock: Clock = utcnow) -> None:
        self.engine = engine
        self.clock = clock

    # -- OAuth states -----------------------------------------------------------------------
    async def create_state(
        self,
        *,
        state_hash: str,
        owner_id: UUID,
        connection_id: UUID,
        sealed_verifier: str | None,
        redirect_uri: str,
        ttl: timedelta,
    ) -> None:
        now = self.clock()
        async with self.engine.begin() as conn:
            # A new handshake supersedes any earlier one for the same connection.
            await self._expire_states(conn, connection_id, now)
            await conn.execute(
                schema.oauth_states.insert().values(
                    id=uuid.uuid4(),
                    state_hash=state_hash,
                    owner_id=owner_id,
                    connection_id=connection_id,
                    sealed_verifier=sealed_verifier,
                    redirect_uri=redirect_uri,
                    created_at=now,
                    expires_at=now + ttl,
                )
            )

    async def consume_state(self, state_hash: str) -> OAuthState | StateProblem:
        """Mark a state used, once: a replay, an expired or an unknown state gets only its problem."""
        table = schema.oauth_states
        now = self.clock()
        async with self.engine.begin() as conn:
            row = (await conn.execute(sa.select(table).where(table.c.state_hash == state_hash))).first()
            if row is None:
                return "unknown"
            claimed = await conn.execute(
                table.update().where(table.c.id == row.id, table.c.used_at.is_(None)).values(used_at=now)
            )
            if claimed.rowcount != 1:
                return "used"
            if row.expires_at <= now:
                return "expired"
        return OAuthState(row.id, row.owner_id, row.connection_id, row.sealed_verifier, row.redirect_uri)

    async def expire_states(self, connection_id: UUID) -> None:
        async with self.engine.begin() as conn:
            await self._expire_states(conn, connection_id, self.clock())

    @staticmethod
    async def _expire_states(conn: AsyncConnection, connection_id: UUID, now: datetime) -> None:
        table = schema.oauth_states
        await conn.execute(
            table.update()
            .where(table.c.connection_id == connection_id, table.c.used_at.is_(None))
            .values(used_at=now)
        )

    # -- browser sessions -----------------------------------------------------------------------
    async def create_session(
        self,
        owner_id: UUID,
        *,
        key_id: UUID,
        permissions: tuple[str, ...],
        token_hash: str,
        csrf_token: str,
        ttl: timedelta,
    ) -> WebSession:
        now = self.clock()
        session = WebSession(uuid.uuid4(), owner_id, csrf_token, now + ttl, key_id, permissions)
        async with self.engine.begin() as conn:
            await conn.execute(
                schema.web_sessions.insert().values(
                    id=session.id,
                    owner_id=owner_id,
                    api_key_id=key_id,
                    token_hash=token_hash,
                    csrf_token=csrf_token,
                    created_at=now,
                    expires_at=session.expires_at,
                )
            )
        return session

    async def session_by_token_hash(self, token_hash: str) -> WebSession | None:
        """A live session whose key is still valid: revoking the key ends its sessions at once."""
        sessions, keys = schema.web_sessions, schema.api_keys
        query = (
            sa.select(sessions, keys.c.permissions)
            .join(keys, keys.c.id == sessions.c.api_key_id)
            .where(
                sessions.c.token_hash == token_hash,
                sessions.c.revoked_at.is_(None),
                sessions.c.expires_at > self.clock(),
                keys.c.revoked_at.is_(None),
            )
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        return WebSession(
            row.id, row.owner_id, row.csrf_token, row.expires_at, row.api_key_id, tuple(row.permissions)
        )

    async def revoke_session(self, token_hash: str) -> None:
        table = schema.web_sessions
        async with self.engine.begin() as conn:
            await conn.execute(
                table.update().where(table.c.token_hash == token_hash).values(revoked_at=self.clock())
            )
