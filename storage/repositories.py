"""Typed access to the tables. Every read that serves a caller is scoped by owner id here, so a
route cannot forget the scoping."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from storage import schema
from storage.db import SingleStatements

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


class AlreadyExists(Exception):
    """A unique constraint refused the write (a name already taken)."""


class ConnectionStatus(StrEnum):
    """Where a connection is in its life; server/core/connections.py decides which moves are allowed."""

    PENDING = "pending"
    ACTIVE = "active"
    NEEDS_REAUTH = "needs_reauth"
    REVOKED = "revoked"


@dataclass(frozen=True, slots=True)
class Owner:
    id: UUID
    name: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    id: UUID
    owner_id: UUID
    name: str
    key_prefix: str
    permissions: tuple[str, ...]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    rate_limit: int | None = None  # requests per minute; None: the server's default


@dataclass(frozen=True, slots=True)
class AgentRecord:
    id: UUID
    owner_id: UUID
    name: str
    allowed_connectors: tuple[str, ...]
    key_prefix: str
    created_at: datetime
    updated_at: datetime
    tool_rate_limit: int | None = None  # tool calls per minute; None: the server's default


@dataclass(frozen=True, slots=True)
class ConnectionRecord:
    id: UUID
    owner_id: UUID
    connector_slug: str
    label: str
    status: ConnectionStatus
    config: Mapping[str, Any]
    sealed_credentials: str | None
    account: Mapping[str, Any]
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None
    auth_method: str = "api_key"
    scopes: tuple[str, ...] | None = None
    token_expires_at: datetime | None = None
    credential_id: UUID | None = None  # the credential object it was made from, if any


def _api_key(row: sa.Row[Any]) -> ApiKeyRecord:
    m = row._mapping
    return ApiKeyRecord(
        m["id"],
        m["owner_id"],
        m["name"],
        m["key_prefix"],
        tuple(m["permissions"]),
        m["created_at"],
        m["last_used_at"],
        m["revoked_at"],
        m["rate_limit"],
    )


def _agent(row: sa.Row[Any]) -> AgentRecord:
    m = row._mapping
    return AgentRecord(
        m["id"],
        m["owner_id"],
        m["name"],
        tuple(m["allowed_connectors"]),
        m["key_prefix"],
        m["created_at"],
        m["updated_at"],
        m["tool_rate_limit"],
    )


def _connection(row: sa.Row[Any]) -> ConnectionRecord:
    m = row._mapping
    return ConnectionRecord(
        m["id"],
        m["owner_id"],
        m["connector_slug"],
        m["label"],
        ConnectionStatus(m["status"]),
        dict(m["config"]),
        m["credentials"],
        dict(m["account"]),
        m["last_error"],
        m["created_at"],
        m["updated_at"],
        m["deleted_at"],
        m["auth_method"],
        tuple(m["scopes"]) if m["scopes"] is not None else None,
        m["token_expires_at"],
        m["credential_id"],
    )


class Store:
    """All repositories over one engine."""

    def __init__(self, engine: AsyncEngine, clock: Clock = utcnow) -> None:
        self.engine = engine
        self.clock = clock
        self._single = SingleStatements(engine)

    # -- owners -----------------------------------------------------------------------------
    async def create_owner(self, name: str) -> Owner:
        owner = Owner(uuid.uuid4(), name, self.clock())
        try:
            async with self.engine.begin() as conn:
                await conn.execute(
                    schema.owners.insert().values(id=owner.id, name=name, created_at=owner.created_at)
                )
        except IntegrityError as exc:
            raise AlreadyExists(f"owner {name!r} already exists") from exc
        return owner

    async def owner_by_name(self, name: str) -> Owner | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(schema.owners).where(schema.owners.c.name == name))).first()
        return Owner(row.id, row.name, row.created_at) if row else None

    async def owner_by_id(self, owner_id: UUID) -> Owner | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(schema.owners).where(schema.owners.c.id == owner_id))).first()
        return Owner(row.id, row.name, row.created_at) if row else None

    # -- GCS grants -------------------------------------------------------------------------------
    async def grant_gcs(self, owner_id: UUID, url: str) -> bool:
        """False when the owner already had this grant."""
        try:
            async with self.engine.begin() as conn:
                await conn.execute(
                    schema.gcs_grants.insert().values(
                        id=uuid.uuid4(), owner_id=owner_id, url=url, created_at=self.clock()
                    )
                )
        except IntegrityError:
            return False
        return True

    async def revoke_gcs(self, owner_id: UUID, url: str) -> bool:
        table = schema.gcs_grants
        async with self.engine.begin() as conn:
            result = await conn.execute(
                table.delete().where(table.c.owner_id == owner_id, table.c.url == url)
            )
        return result.rowcount > 0

    async def gcs_grants(self, owner_id: UUID | None = None) -> list[tuple[UUID, str]]:
        """(owner id, url) pairs, every owner's or one's."""
        table = schema.gcs_grants
        query = sa.select(table.c.owner_id, table.c.url).order_by(table.c.owner_id, table.c.url)
        if owner_id is not None:
            query = query.where(table.c.owner_id == owner_id)
        async with self.engine.connect() as conn:
            return [(row.owner_id, row.url) for row in await conn.execute(query)]

    async def list_owners(self) -> list[Owner]:
        table = schema.owners
        async with self.engine.connect() as conn:
            rows = await conn.execute(sa.select(table).order_by(table.c.created_at, table.c.name))
            return [Owner(row.id, row.name, row.created_at) for row in rows]

    async def delete_owner(self, owner_id: UUID) -> bool:
        """Remove an owner and, by cascade, everything that is theirs."""
        async with self.engine.begin() as conn:
            result = await conn.execute(schema.owners.delete().where(schema.owners.c.id == owner_id))
        return result.rowcount == 1

    async def count_owners(self) -> int:
        async with self.engine.connect() as conn:
            return (await conn.execute(sa.select(sa.func.count()).select_from(schema.owners))).scalar_one()

    # -- API keys ---------------------------------------------------------------------------
    async def create_api_key(
        self,
        owner_id: UUID,
        *,
        name: str,
        key_hash: str,
        key_prefix: str,
        permissions: Sequence[str],
        rate_limit: int | None = None,
    ) -> ApiKeyRecord:
        record = ApiKeyRecord(
            uuid.uuid4(), owner_id, name, key_prefix, tuple(permissions), self.clock(), None, None, rate_limit
        )
        async with self.engine.begin() as conn:
            await conn.execute(
                schema.api_keys.insert().values(
                    id=record.id,
                    owner_id=owner_id,
                    name=name,
                    key_hash=key_hash,
                    key_prefix=key_prefix,
                    permissions=list(permissions),
                    created_at=record.created_at,
                    rate_limit=rate_limit,
                )
            )
        return record

    async def update_api_key(self, owner_id: UUID, key_id: UUID, **values: Any) -> ApiKeyRecord | None:
        """Change a live key's name or rate_limit; None when the owner has no such live key."""
        table = schema.api_keys
        live = (table.c.id == key_id, table.c.owner_id == owner_id, table.c.revoked_at.is_(None))
        async with self.engine.begin() as conn:
            if values:
                await conn.execute(table.update().where(*live).values(**values))
            row = (await conn.execute(sa.select(table).where(*live))).first()
        return _api_key(row) if row else None

    async def api_key_by_hash(self, key_hash: str) -> ApiKeyRecord | None:
        """The live key with this digest, touching its last-used time."""
        table = schema.api_keys
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(
                    sa.select(table).where(table.c.key_hash == key_hash, table.c.revoked_at.is_(None))
                )
            ).first()
            if row is None:
                return None
            await conn.execute(table.update().where(table.c.id == row.id).values(last_used_at=self.clock()))
        return _api_key(row)

    async def revoked_api_key_by_hash(self, key_hash: str) -> ApiKeyRecord | None:
        """The revoked key with this digest (whose owner a refused sign-in is reported to)."""
        table = schema.api_keys
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(table).where(table.c.key_hash == key_hash, table.c.revoked_at.is_not(None))
                )
            ).first()
        return _api_key(row) if row else None

    async def list_api_keys(self, owner_id: UUID) -> list[ApiKeyRecord]:
        table = schema.api_keys
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(table).where(table.c.owner_id == owner_id).order_by(table.c.created_at.desc())
            )
            return [_api_key(row) for row in rows]

    async def replace_api_key(
        self, owner_id: UUID, key_id: UUID, *, key_hash: str, key_prefix: str
    ) -> ApiKeyRecord | None:
        """A new secret for a live key (same id, name, permissions); the old secret and the browser
        sessions opened with it stop working. None when the owner has no such live key."""
        table, sessions = schema.api_keys, schema.web_sessions
        live = (table.c.id == key_id, table.c.owner_id == owner_id, table.c.revoked_at.is_(None))
        async with self.engine.begin() as conn:
            result = await conn.execute(
                table.update()
                .where(*live)
                .values(key_hash=key_hash, key_prefix=key_prefix, last_used_at=None)
            )
            if result.rowcount != 1:
                return None
            await conn.execute(
                sessions.update()
                .where(sessions.c.api_key_id == key_id, sessions.c.revoked_at.is_(None))
                .values(revoked_at=self.clock())
            )
            row = (await conn.execute(sa.select(table).where(*live))).one()
        return _api_key(row)

    async def revoke_api_key(self, owner_id: UUID, key_id: UUID) -> bool:
        table = schema.api_keys
        async with self.engine.begin() as conn:
            result = await conn.execute(
                table.update()
                .where(table.c.id == key_id, table.c.owner_id == owner_id, table.c.revoked_at.is_(None))
                .values(revoked_at=self.clock())
            )
        return result.rowcount == 1

    # -- agents -----------------------------------------------------------------------------
    async def create_agent(
        self,
        owner_id: UUID,
        *,
        name: str,
        allowed_connectors: Sequence[str],
        key_hash: str,
        key_prefix: str,
        tool_rate_limit: int | None = None,
    ) -> AgentRecord:
        now = self.clock()
        record = AgentRecord(
            uuid.uuid4(), owner_id, name, tuple(allowed_connectors), key_prefix, now, now, tool_rate_limit
        )
        async with self.engine.begin() as conn:
            if await self._agent_name_taken(conn, owner_id, name):
                raise AlreadyExists(f"an agent named {name!r} already exists")
            await conn.execute(
                schema.agents.insert().values(
                    id=record.id,
                    owner_id=owner_id,
                    name=name,
                    allowed_connectors=list(allowed_connectors),
                    key_hash=key_hash,
                    key_prefix=key_prefix,
                    created_at=now,
                    updated_at=now,
                    tool_rate_limit=tool_rate_limit,
                )
            )
        return record

    async def _agent_name_taken(
        self, conn: AsyncConnection, owner_id: UUID, name: str, *, other_than: UUID | None = None
    ) -> bool:
        table = schema.agents
        query = sa.select(table.c.id).where(
            table.c.owner_id == owner_id, table.c.name == name, table.c.deleted_at.is_(None)
        )
        if other_than is not None:
            query = query.where(table.c.id != other_than)
        return (await conn.execute(query)).first() is not None

    async def agent_by_key_hash(self, key_hash: str) -> AgentRecord | None:
        table = schema.agents
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(table).where(table.c.key_hash == key_hash, table.c.deleted_at.is_(None))
                )
            ).first()
        return _agent(row) if row else None

    async def get_agent(self, owner_id: UUID, agent_id: UUID) -> AgentRecord | None:
        table = schema.agents
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(table).where(
                        table.c.id == agent_id, table.c.owner_id == owner_id, table.c.deleted_at.is_(None)
                    )
                )
            ).first()
        return _agent(row) if row else None

    async def list_agents(self, owner_id: UUID) -> list[AgentRecord]:
        table = schema.agents
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(table)
                .where(table.c.owner_id == owner_id, table.c.deleted_at.is_(None))
                .order_by(table.c.created_at.desc())
            )
            return [_agent(row) for row in rows]

    async def update_agent(
        self,
        owner_id: UUID,
        agent_id: UUID,
        *,
        name: str | None = None,
        allowed_connectors: Sequence[str] | None = None,
        **limits: int | None,
    ) -> AgentRecord | None:
        """`tool_rate_limit=` (None: back to the default) changes the agent's limit; absent, it stays."""
        table = schema.agents
        values: dict[str, Any] = {"updated_at": self.clock(), **limits}
        if name is not None:
            values["name"] = name
        if allowed_connectors is not None:
            values["allowed_connectors"] = list(allowed_connectors)
        async with self.engine.begin() as conn:
            if name is not None and await self._agent_name_taken(conn, owner_id, name, other_than=agent_id):
                raise AlreadyExists(f"an agent named {name!r} already exists")
            await conn.execute(
                table.update()
                .where(table.c.id == agent_id, table.c.owner_id == owner_id, table.c.deleted_at.is_(None))
                .values(**values)
            )
        return await self.get_agent(owner_id, agent_id)

    async def replace_agent_key(
        self, owner_id: UUID, agent_id: UUID, *, key_hash: str, key_prefix: str
    ) -> AgentRecord | None:
        """A new MCP key for a live agent, which stays the same agent; the old key stops working."""
        table = schema.agents
        live = (table.c.id == agent_id, table.c.owner_id == owner_id, table.c.deleted_at.is_(None))
        async with self.engine.begin() as conn:
            result = await conn.execute(
                table.update()
                .where(*live)
                .values(key_hash=key_hash, key_prefix=key_prefix, updated_at=self.clock())
            )
            if result.rowcount != 1:
                return None
            row = (await conn.execute(sa.select(table).where(*live))).one()
        return _agent(row)

    async def delete_agent(self, owner_id: UUID, agent_id: UUID) -> bool:
        table = schema.agents
        now = self.clock()
        async with self.engine.begin() as conn:
            result = await conn.execute(
                table.update()
                .where(table.c.id == agent_id, table.c.owner_id == owner_id, table.c.deleted_at.is_(None))
                .values(deleted_at=now, updated_at=now)
            )
        return result.rowcount == 1

    # -- connections ------------------------------------------------------------------------
    async def set_agent_delivery(
        self, owner_id: UUID, agent_id: UUID, *, url: str | None, sealed_secret: str | None
    ) -> bool:
        """Where Tendril pushes the agent's jobs (None: the agent pulls them over MCP)."""
        table = schema.agents
        async with self.engine.begin() as conn:
            result = await conn.execute(
                table.update()
                .where(table.c.id == agent_id, table.c.owner_id == owner_id, table.c.deleted_at.is_(None))
                .values(delivery_url=url, sealed_delivery_secret=sealed_secret, updated_at=self.clock())
            )
        return bool(result.rowcount)

    async def any_agent_delivery(self) -> bool:
        table = schema.agents
        query = (
            sa.select(table.c.id)
            .where(table.c.delivery_url.is_not(None), table.c.deleted_at.is_(None))
            .limit(1)
        )
        async with self.engine.connect() as conn:
            return (await conn.execute(query)).first() is not None

    async def agent_delivery(self, agent_id: UUID) -> tuple[str, str] | None:
        table = schema.agents
        query = sa.select(table.c.delivery_url, table.c.sealed_delivery_secret).where(
            table.c.id == agent_id, table.c.deleted_at.is_(None), table.c.delivery_url.is_not(None)
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return (row.delivery_url, row.sealed_delivery_secret) if row else None

    async def create_connection(
        self,
        owner_id: UUID,
        *,
        connector_slug: str,
        label: str,
        config: Mapping[str, Any],
        auth_method: str = "api_key",
        credential_id: UUID | None = None,
    ) -> ConnectionRecord:
        now = self.clock()
        record = ConnectionRecord(
            uuid.uuid4(),
            owner_id,
            connector_slug,
            label,
            ConnectionStatus.PENDING,
            dict(config),
            None,
            {},
            None,
            now,
            now,
            None,
            auth_method,
            credential_id=credential_id,
        )
        async with self.engine.begin() as conn:
            await conn.execute(
                schema.connections.insert().values(
                    id=record.id,
                    owner_id=owner_id,
                    connector_slug=connector_slug,
                    label=label,
                    status=record.status,
                    config=dict(config),
                    credentials=None,
                    account={},
                    created_at=now,
                    updated_at=now,
                    auth_method=auth_method,
                    credential_id=credential_id,
                )
            )
        return record

    async def get_connection(self, owner_id: UUID, connection_id: UUID) -> ConnectionRecord | None:
        table = schema.connections
        async with self._single.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(table).where(
                        table.c.id == connection_id,
                        table.c.owner_id == owner_id,
                        table.c.deleted_at.is_(None),
                    )
                )
            ).first()
        return _connection(row) if row else None

    async def list_connections(
        self,
        owner_id: UUID,
        *,
        connector_slugs: Sequence[str] | None = None,
        status: str | None = None,
        label: str | None = None,
        credential_id: UUID | None = None,
    ) -> list[ConnectionRecord]:
        """The owner's live connections, newest first."""
        table = schema.connections
        query = sa.select(table).where(table.c.owner_id == owner_id, table.c.deleted_at.is_(None))
        if credential_id is not None:
            query = query.where(table.c.credential_id == credential_id)
        if connector_slugs is not None:
            query = query.where(table.c.connector_slug.in_(list(connector_slugs)))
        if status is not None:
            query = query.where(table.c.status == status)
        if label is not None:
            query = query.where(table.c.label == label)
        async with self.engine.connect() as conn:
            rows = await conn.execute(query.order_by(table.c.created_at.desc(), table.c.id))
            return [_connection(row) for row in rows]

    async def all_sealed_credentials(self) -> list[tuple[UUID, str]]:
        """Every stored ciphertext, deleted connections included (for key rotation)."""
        table = schema.connections
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(table.c.id, table.c.credentials).where(table.c.credentials.is_not(None))
            )
            return [(row.id, row.credentials) for row in rows]

    async def connection_by_id(self, connection_id: UUID) -> ConnectionRecord | None:
        """Unscoped read for internal machinery (token refresh) that already holds a scoped record."""
        table = schema.connections
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(table).where(table.c.id == connection_id, table.c.deleted_at.is_(None))
                )
            ).first()
        return _connection(row) if row else None

    async def store_refreshed_token(
        self,
        connection_id: UUID,
        *,
        sealed_credentials: str,
        token_expires_at: datetime | None,
        scopes: Sequence[str] | None,
    ) -> None:
        table = schema.connections
        values: dict[str, Any] = {
            "credentials": sealed_credentials,
            "token_expires_at": token_expires_at,
            "updated_at": self.clock(),
        }
        if scopes is not None:
            values["scopes"] = list(scopes)
        async with self.engine.begin() as conn:
            await conn.execute(
                table.update()
                .where(table.c.id == connection_id, table.c.deleted_at.is_(None))
                .values(**values)
            )

    async def try_refresh_lease(self, connection_id: UUID, *, seconds: float) -> bool:
        """Compare-and-set a short lease: at most one process refreshes a connection's token."""
        table = schema.connections
        now = self.clock()
        async with self.engine.begin() as conn:
            result = await conn.execute(
                table.update()
                .where(
                    table.c.id == connection_id,
                    sa.or_(table.c.refresh_lock_until.is_(None), table.c.refresh_lock_until < now),
                )
                .values(refresh_lock_until=now + timedelta(seconds=seconds))
            )
        return result.rowcount == 1

    async def release_refresh_lease(self, connection_id: UUID) -> None:
        table = schema.connections
        async with self.engine.begin() as conn:
            await conn.execute(
                table.update().where(table.c.id == connection_id).values(refresh_lock_until=None)
            )

    async def update_connection(
        self,
        owner_id: UUID,
        connection_id: UUID,
        *,
        label: str | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> ConnectionRecord | None:
        values: dict[str, Any] = {}
        if label is not None:
            values["label"] = label
        if config is not None:
            values["config"] = dict(config)
        return await self._update_connection(owner_id, connection_id, **values)

    async def move_connection(
        self,
        connection_id: UUID,
        *,
        owner_id: UUID | None,
        to: ConnectionStatus,
        allowed_from: Collection[ConnectionStatus],
        **values: Any,
    ) -> ConnectionRecord | None:
        """The status column's one writer, for server/core/connections.py: sets `to` (with the
        other columns given) only while the connection is in one of `allowed_from`, in the same
        statement, so two writers cannot interleave a forbidden move. None when it was not."""
        table = schema.connections
        now = self.clock()
        if to == ConnectionStatus.REVOKED:
            values["deleted_at"] = now
        query = table.update().where(
            table.c.id == connection_id,
            table.c.deleted_at.is_(None),
            table.c.status.in_([str(status) for status in allowed_from]),
        )
        if owner_id is not None:
            query = query.where(table.c.owner_id == owner_id)
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(query.values(status=str(to), updated_at=now, **values).returning(*table.c))
            ).first()
        return _connection(row) if row else None

    async def _update_connection(
        self, owner_id: UUID, connection_id: UUID, **values: Any
    ) -> ConnectionRecord | None:
        table = schema.connections
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(
                    table.update()
                    .where(
                        table.c.id == connection_id,
                        table.c.owner_id == owner_id,
                        table.c.deleted_at.is_(None),
                    )
                    .values(updated_at=self.clock(), **values)
                    .returning(*table.c)
                )
            ).first()
        return _connection(row) if row else None
