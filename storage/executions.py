"""Workflow executions at rest (the `workflow_executions` table): whose an execution is, what started
it, and a copy of its status for listing. DBOS keeps the rest (input, steps, outputs, errors) in
its own system tables, under the same id.

Ids are UUIDv7, so a page is an index range ending in `id` (`owner_id, [workflow_id | status,] id`)
read backwards, and the cursor is the last id shown.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from storage import schema
from storage.db import SingleStatements
from storage.repositories import Clock


class ExecutionStatus:
    """The values of workflow_executions.status."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    ALL = (PENDING, RUNNING, COMPLETED, FAILED, CANCELLED)
    UNFINISHED = (PENDING, RUNNING)


@dataclass(frozen=True, slots=True)
class ExecutionRecord:
    id: UUID
    owner_id: UUID
    workflow_id: UUID
    started_by: str
    status: str
    created_at: datetime
    agent_id: UUID | None = None
    trigger_id: UUID | None = None
    idempotency_key: str | None = None
    finished_at: datetime | None = None


def _record(row: sa.Row[Any]) -> ExecutionRecord:
    m = row._mapping
    return ExecutionRecord(
        id=m["id"],
        owner_id=m["owner_id"],
        workflow_id=m["workflow_id"],
        started_by=m["started_by"],
        status=m["status"],
        created_at=m["created_at"],
        agent_id=m["agent_id"],
        trigger_id=m["trigger_id"],
        idempotency_key=m["idempotency_key"],
        finished_at=m["finished_at"],
    )


class ExecutionStore:
    def __init__(self, engine: AsyncEngine, clock: Clock) -> None:
        self.engine = engine
        self._clock = clock
        self._single = SingleStatements(engine)

    async def add(self, record: ExecutionRecord) -> tuple[ExecutionRecord, bool, dict[str, Any]]:
        """Read the workflow's definition and insert the execution, on one connection; with an
        idempotency key already used for this owner and workflow, the execution it started
        instead. The flag says whether this call added the row. LookupError: the owner has no
        such workflow (or it was deleted)."""
        table = schema.workflow_executions
        try:
            # Two statements on one connection, each its own transaction: a workflow deleted in
            # between keeps its row (deletes are soft), and the new execution then runs the
            # definition it was started with.
            async with self._single.connect() as conn:
                definition = await self._definition(conn, record.owner_id, record.workflow_id)
                if definition is None:
                    raise LookupError("no such workflow")
                await conn.execute(
                    table.insert().values(
                        id=record.id,
                        owner_id=record.owner_id,
                        workflow_id=record.workflow_id,
                        started_by=record.started_by,
                        agent_id=record.agent_id,
                        trigger_id=record.trigger_id,
                        idempotency_key=record.idempotency_key,
                        status=record.status,
                        created_at=record.created_at,
                    )
                )
            return record, True, definition
        except IntegrityError:
            if record.idempotency_key is None:
                raise LookupError("the workflow or its owner is gone") from None
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    table.select().where(
                        table.c.owner_id == record.owner_id,
                        table.c.workflow_id == record.workflow_id,
                        table.c.idempotency_key == record.idempotency_key,
                    )
                )
            ).first()
            definition = await self._definition(conn, record.owner_id, record.workflow_id)
        if row is None or definition is None:
            raise LookupError("the workflow or its owner is gone")
        return _record(row), False, definition

    async def get(self, owner_id: UUID, execution_id: UUID) -> ExecutionRecord | None:
        table = schema.workflow_executions
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    table.select().where(table.c.owner_id == owner_id, table.c.id == execution_id)
                )
            ).first()
        return _record(row) if row else None

    async def page(
        self,
        owner_id: UUID,
        *,
        limit: int,
        workflow_id: UUID | None = None,
        status: str | None = None,
        before: UUID | None = None,
    ) -> list[ExecutionRecord]:
        """Up to `limit` of the owner's executions, newest first, older than `before`."""
        table = schema.workflow_executions
        query = table.select().where(table.c.owner_id == owner_id)
        if workflow_id is not None:
            query = query.where(table.c.workflow_id == workflow_id)
        if status is not None:
            query = query.where(table.c.status == status)
        if before is not None:
            query = query.where(table.c.id < before)
        query = query.order_by(table.c.id.desc()).limit(limit)
        async with self.engine.connect() as conn:
            return [_record(row) for row in await conn.execute(query)]

    async def move(
        self,
        execution_id: UUID,
        status: str,
        *,
        only_from: Collection[str] = ExecutionStatus.UNFINISHED,
        finished: bool = False,
    ) -> bool:
        """Set the status if it is one of `only_from` (a finished execution stays finished)."""
        table = schema.workflow_executions
        values: Mapping[str, Any] = {"status": status, **({"finished_at": self._clock()} if finished else {})}
        async with self._single.connect() as conn:
            result = await conn.execute(
                table.update()
                .where(table.c.id == execution_id, table.c.status.in_(list(only_from)))
                .values(**values)
            )
        return result.rowcount > 0

    async def any_unfinished(self) -> bool:
        """Whether some execution (of any owner) has not finished: DBOS has work to recover."""
        table = schema.workflow_executions
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(table.c.id).where(table.c.status.in_(ExecutionStatus.UNFINISHED)).limit(1)
                )
            ).first()
        return row is not None

    @staticmethod
    async def _definition(conn: AsyncConnection, owner_id: UUID, workflow_id: UUID) -> dict[str, Any] | None:
        """The definition of one of the owner's workflows (not deleted), as stored."""
        table = schema.workflows
        row = (
            await conn.execute(
                sa.select(table.c.definition).where(
                    table.c.owner_id == owner_id,
                    table.c.id == workflow_id,
                    table.c.deleted_at.is_(None),
                )
            )
        ).first()
        return dict(row[0]) if row else None
