"""Credentials as objects of their own (the `credentials` table): an owner's secret fields for one
provider, sealed, with a name, a description and free metadata. Reads are scoped by owner here."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from storage import schema
from storage.repositories import Clock, utcnow


@dataclass(frozen=True, slots=True)
class CredentialRecord:
    id: UUID
    owner_id: UUID
    name: str
    description: str
    type: str
    provider: str
    sealed_data: str
    fields: tuple[str, ...]
    metadata: Mapping[str, Any]
    account: Mapping[str, Any]
    created_at: datetime
    updated_at: datetime


def _credential(row: sa.Row[Any]) -> CredentialRecord:
    m = row._mapping
    return CredentialRecord(
        m["id"],
        m["owner_id"],
        m["name"],
        m["description"],
        m["type"],
        m["provider"],
        m["data"],
        tuple(m["fields"]),
        dict(m["metadata"]),
        dict(m["account"]),
        m["created_at"],
        m["updated_at"],
    )


class CredentialStore:
    def __init__(self, engine: AsyncEngine, clock: Clock = utcnow) -> None:
        self.engine = engine
        self.clock = clock

    @staticmethod
    def new_id() -> UUID:
        """The id a credential will have: its data is sealed with it before the row exists."""
        return uuid.uuid4()

    async def create(
        self,
        credential_id: UUID,
        owner_id: UUID,
        *,
        name: str,
        description: str,
        type: str,
        provider: str,
        sealed_data: str,
        fields: tuple[str, ...],
        metadata: Mapping[str, Any],
        account: Mapping[str, Any],
    ) -> CredentialRecord:
        now = self.clock()
        record = CredentialRecord(
            credential_id, owner_id, name, description, type, provider, sealed_data, fields,
            dict(metadata), dict(account), now, now,
        )  # fmt: skip
        async with self.engine.begin() as conn:
            await conn.execute(
                schema.credentials.insert().values(
                    id=credential_id,
                    owner_id=owner_id,
                    name=name,
                    description=description,
                    type=type,
                    provider=provider,
                    data=sealed_data,
                    fields=list(fields),
                    metadata=dict(metadata),
                    account=dict(account),
                    created_at=now,
                    updated_at=now,
                )
            )
        return record

    async def get(self, owner_id: UUID, credential_id: UUID) -> CredentialRecord | None:
        table = schema.credentials
        query = sa.select(table).where(table.c.id == credential_id, table.c.owner_id == owner_id)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return _credential(row) if row else None

    async def list(self, owner_id: UUID) -> list[CredentialRecord]:
        table = schema.credentials
        query = sa.select(table).where(table.c.owner_id == owner_id)
        async with self.engine.connect() as conn:
            rows = await conn.execute(query.order_by(table.c.created_at.desc(), table.c.id))
            return [_credential(row) for row in rows]

    async def backed_connections(self, owner_ids: list[UUID] | None = None) -> dict[UUID, list[UUID]]:
        """Each credential's live connections (ids, oldest first), for the owners given or all."""
        table = schema.connections
        query = sa.select(table.c.credential_id, table.c.id).where(
            table.c.credential_id.is_not(None), table.c.deleted_at.is_(None)
        )
        if owner_ids is not None:
            query = query.where(table.c.owner_id.in_(owner_ids))
        backed: dict[UUID, list[UUID]] = {}
        async with self.engine.connect() as conn:
            for row in await conn.execute(query.order_by(table.c.created_at, table.c.id)):
                backed.setdefault(row.credential_id, []).append(row.id)
        return backed

    async def update(self, owner_id: UUID, credential_id: UUID, **values: Any) -> CredentialRecord | None:
        """Change name, description, metadata, or (rotating) sealed data with its account facts."""
        table = schema.credentials
        if "sealed_data" in values:
            values["data"] = values.pop("sealed_data")
        mine = (table.c.id == credential_id, table.c.owner_id == owner_id)
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(
                    table.update().where(*mine).values(updated_at=self.clock(), **values).returning(*table.c)
                )
            ).first()
        return _credential(row) if row else None

    async def delete(self, owner_id: UUID, credential_id: UUID) -> bool:
        table = schema.credentials
        async with self.engine.begin() as conn:
            result = await conn.execute(
                table.delete().where(table.c.id == credential_id, table.c.owner_id == owner_id)
            )
        return result.rowcount == 1
