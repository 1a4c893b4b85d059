"""Workflow triggers (the `workflow_triggers` table) and the firings event triggers owe
(`workflow_trigger_firings`, written with the deliveries by storage.jobs and the SQLite delivery
writer). An owner's reads are scoped by owner and workflow; a trigger of a deleted workflow is
never fired (the queries join the live workflow)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from storage import schema
from storage.repositories import Clock, utcnow

triggers_t, firings_t, workflows_t = (
    schema.workflow_triggers,
    schema.workflow_trigger_firings,
    schema.workflows,
)


@dataclass(frozen=True, slots=True)
class TriggerRecord:
    id: UUID
    owner_id: UUID
    workflow_id: UUID
    kind: str  # event or schedule
    event_key: str | None
    endpoint_id: UUID | None
    cron: str | None
    timezone: str | None
    input: dict[str, Any] | None
    active: bool
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class FiringRecord:
    id: UUID
    owner_id: UUID
    trigger_id: UUID
    workflow_id: UUID
    idempotency_key: str
    input: dict[str, Any]


def _trigger(row: Any) -> TriggerRecord:
    m = row._mapping
    return TriggerRecord(
        m["id"],
        m["owner_id"],
        m["workflow_id"],
        m["kind"],
        m["event_key"],
        m["endpoint_id"],
        m["cron"],
        m["timezone"],
        dict(m["input"]) if m["input"] is not None else None,
        bool(m["active"]),
        m["created_at"],
        m["updated_at"],
    )


def _live_workflow() -> sa.ColumnElement[bool]:
    """The trigger's workflow exists and is not deleted."""
    return sa.exists().where(
        workflows_t.c.id == triggers_t.c.workflow_id,
        workflows_t.c.owner_id == triggers_t.c.owner_id,
        workflows_t.c.deleted_at.is_(None),
    )


class TriggerStore:
    def __init__(self, engine: AsyncEngine, clock: Clock = utcnow) -> None:
        self.engine = engine
        self.clock = clock

    # -- the owner's triggers ------------------------------------------------------------------------
    async def create(self, owner_id: UUID, workflow_id: UUID, **values: Any) -> TriggerRecord:
        now = self.clock()
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(
                    triggers_t.insert()
                    .values(
                        id=schema.time_ordered_id(),
                        owner_id=owner_id,
                        workflow_id=workflow_id,
                        created_at=now,
                        updated_at=now,
                        **values,
                    )
                    .returning(*triggers_t.c)
                )
            ).one()
        return _trigger(row)

    async def list(self, owner_id: UUID, workflow_id: UUID) -> list[TriggerRecord]:
        query = (
            sa.select(triggers_t)
            .where(triggers_t.c.owner_id == owner_id, triggers_t.c.workflow_id == workflow_id)
            .order_by(triggers_t.c.id)
        )
        async with self.engine.connect() as conn:
            return [_trigger(row) for row in await conn.execute(query)]

    async def get(self, owner_id: UUID, workflow_id: UUID, trigger_id: UUID) -> TriggerRecord | None:
        query = sa.select(triggers_t).where(
            triggers_t.c.id == trigger_id,
            triggers_t.c.owner_id == owner_id,
            triggers_t.c.workflow_id == workflow_id,
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return _trigger(row) if row else None

    async def update(
        self, owner_id: UUID, workflow_id: UUID, trigger_id: UUID, **values: Any
    ) -> TriggerRecord | None:
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(
                    triggers_t.update()
                    .where(
                        triggers_t.c.id == trigger_id,
                        triggers_t.c.owner_id == owner_id,
                        triggers_t.c.workflow_id == workflow_id,
                    )
                    .values(updated_at=self.clock(), **values)
                    .returning(*triggers_t.c)
                )
            ).first()
        return _trigger(row) if row else None

    async def delete(self, owner_id: UUID, workflow_id: UUID, trigger_id: UUID) -> bool:
        async with self.engine.begin() as conn:
            result = await conn.execute(
                triggers_t.delete().where(
                    triggers_t.c.id == trigger_id,
                    triggers_t.c.owner_id == owner_id,
                    triggers_t.c.workflow_id == workflow_id,
                )
            )
        return result.rowcount == 1

    # -- firing --------------------------------------------------------------------------------------
    async def event_triggers(self, owner_id: UUID, endpoint_id: UUID) -> list[TriggerRecord]:
        """The owner's active event triggers of live workflows that take events from this endpoint
        (named, or any endpoint)."""
        query = sa.select(triggers_t).where(
            triggers_t.c.owner_id == owner_id,
            triggers_t.c.kind == "event",
            triggers_t.c.active.is_(True),
            sa.or_(triggers_t.c.endpoint_id.is_(None), triggers_t.c.endpoint_id == endpoint_id),
            _live_workflow(),
        )
        async with self.engine.connect() as conn:
            return [_trigger(row) for row in await conn.execute(query)]

    async def active_schedules(self) -> list[TriggerRecord]:
        """Every owner's active schedule triggers of live workflows (kept in step with DBOS's schedules)."""
        query = sa.select(triggers_t).where(
            triggers_t.c.kind == "schedule", triggers_t.c.active.is_(True), _live_workflow()
        )
        async with self.engine.connect() as conn:
            return [_trigger(row) for row in await conn.execute(query)]

    async def any_active_event_trigger(self) -> bool:
        query = sa.select(triggers_t.c.id).where(
            triggers_t.c.kind == "event", triggers_t.c.active.is_(True), _live_workflow()
        )
        async with self.engine.connect() as conn:
            return (await conn.execute(query.limit(1))).first() is not None

    async def firing(self, trigger_id: UUID) -> TriggerRecord | None:
        """A trigger by id, only while it is active and its workflow lives (a schedule's tick)."""
        query = sa.select(triggers_t).where(
            triggers_t.c.id == trigger_id, triggers_t.c.active.is_(True), _live_workflow()
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return _trigger(row) if row else None

    async def claim_firings(self, *, limit: int, lease: timedelta) -> list[FiringRecord]:
        """Up to `limit` firings, oldest first, that nobody holds (or whose holder's claim ran
        out), now held by the caller for `lease`. The claim re-checks the row, so two replicas
        claiming at once take each firing once."""
        now = self.clock()
        free = sa.or_(firings_t.c.claimed_until.is_(None), firings_t.c.claimed_until < now)
        candidates = sa.select(firings_t.c.id).where(free).order_by(firings_t.c.id).limit(limit)
        async with self.engine.begin() as conn:
            rows = await conn.execute(
                firings_t.update()
                .where(firings_t.c.id.in_(candidates.scalar_subquery()), free)
                .values(claimed_until=now + lease)
                .returning(*firings_t.c)
            )
            return sorted(
                (
                    FiringRecord(
                        row.id,
                        row.owner_id,
                        row.trigger_id,
                        row.workflow_id,
                        row.idempotency_key,
                        dict(row.input),
                    )
                    for row in rows
                ),
                key=lambda f: f.id,
            )

    async def done(self, firing_ids: list[UUID]) -> None:
        """Forget firings whose executions have started."""
        if not firing_ids:
            return
        async with self.engine.begin() as conn:
            await conn.execute(firings_t.delete().where(firings_t.c.id.in_(firing_ids)))

    async def pending_firings(self) -> int:
        async with self.engine.connect() as conn:
            return int((await conn.execute(sa.select(sa.func.count()).select_from(firings_t))).scalar_one())
