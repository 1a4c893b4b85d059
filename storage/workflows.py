"""Workflow definitions (the `workflows` table), per owner. Reads are scoped by owner here, and a
deleted workflow (deleted_at set) is gone for every read: its executions keep pointing at the row."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from storage import schema
from storage.repositories import Clock, utcnow


@dataclass(frozen=True, slots=True)
class WorkflowRecord:
    id: UUID
    owner_id: UUID
    name: str
    description: str | None
    is_public: bool
    definition: Mapping[str, Any]  # {"steps": [{name, type, config}, ...]}, as checked on the way in
    created_at: datetime
    updated_at: datetime


def _workflow(row: sa.Row[Any]) -> WorkflowRecord:
    m = row._mapping
    return WorkflowRecord(
        m["id"],
        m["owner_id"],
        m["name"],
        m["description"],
        bool(m["is_public"]),
        dict(m["definition"]),
        m["created_at"],
        m["updated_at"],
    )


class WorkflowStore:
    def __init__(self, engine: AsyncEngine, clock: Clock = utcnow) -> None:
        self.engine = engine
        self.clock = clock

    async def create(
        self,
        owner_id: UUID,
        *,
        name: str,
        description: str | None,
        is_public: bool,
        definition: Mapping[str, Any],
    ) -> WorkflowRecord:
        now = self.clock()
        # UUIDv7: newer workflows have larger ids, so pages are key ranges on the primary key.
        record = WorkflowRecord(
            schema.time_ordered_id(), owner_id, name, description, is_public, dict(definition), now, now
        )
        async with self.engine.begin() as conn:
            await conn.execute(
                schema.workflows.insert().values(
                    id=record.id,
                    owner_id=owner_id,
                    name=name,
                    description=description,
                    is_public=is_public,
                    definition=dict(definition),
                    created_at=now,
                    updated_at=now,
                )
            )
        return record

    @staticmethod
    def _live(owner_id: UUID) -> tuple[sa.ColumnElement[bool], ...]:
        table = schema.workflows
        return (table.c.owner_id == owner_id, table.c.deleted_at.is_(None))

    async def get(self, owner_id: UUID, workflow_id: UUID) -> WorkflowRecord | None:
        table = schema.workflows
        query = sa.select(table).where(table.c.id == workflow_id, *self._live(owner_id))
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return _workflow(row) if row else None

    async def page(
        self, owner_id: UUID, *, limit: int, before: UUID | None = None, public_only: bool = False
    ) -> list[WorkflowRecord]:
        """Up to `limit` of the owner's workflows, newest first, older than `before` when given."""
        table = schema.workflows
        query = sa.select(table).where(*self._live(owner_id))
        if before is not None:
            query = query.where(table.c.id < before)
        if public_only:
            query = query.where(table.c.is_public.is_(True))
        async with self.engine.connect() as conn:
            rows = await conn.execute(query.order_by(table.c.id.desc()).limit(limit))
            return [_workflow(row) for row in rows]

    async def public(self, owner_id: UUID) -> list[WorkflowRecord]:
        """Every public workflow of the owner, newest first."""
        table = schema.workflows
        query = sa.select(table).where(*self._live(owner_id), table.c.is_public.is_(True))
        async with self.engine.connect() as conn:
            return [_workflow(row) for row in await conn.execute(query.order_by(table.c.id.desc()))]

    async def update(self, owner_id: UUID, workflow_id: UUID, **values: Any) -> WorkflowRecord | None:
        """Change any of name, description, is_public and definition; None when there is no such
        live workflow."""
        table = schema.workflows
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(
                    table.update()
                    .where(table.c.id == workflow_id, *self._live(owner_id))
                    .values(updated_at=self.clock(), **values)
                    .returning(*table.c)
                )
            ).first()
        return _workflow(row) if row else None

    async def delete(self, owner_id: UUID, workflow_id: UUID) -> bool:
        """Soft delete: the row stays for its executions, but no read finds it any more."""
        table = schema.workflows
        now = self.clock()
        async with self.engine.begin() as conn:
            result = await conn.execute(
                table.update()
                .where(table.c.id == workflow_id, *self._live(owner_id))
                .values(deleted_at=now, updated_at=now)
            )
        return result.rowcount == 1

    async def names(self, owner_id: UUID, workflow_ids: Sequence[UUID]) -> dict[UUID, str]:
        """The names of the given workflows of the owner, deleted ones included (for listings of
        executions that outlived their workflow)."""
        if not workflow_ids:
            return {}
        table = schema.workflows
        query = sa.select(table.c.id, table.c.name).where(
            table.c.owner_id == owner_id, table.c.id.in_(list(workflow_ids))
        )
        async with self.engine.connect() as conn:
            return {row.id: row.name for row in await conn.execute(query)}
