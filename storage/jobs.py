"""Webhook endpoints, deliveries and the durable job queue (SQLite and PostgreSQL alike).

A delivery and its jobs are written in one transaction, deduplicated by the provider's event id
per endpoint (`INSERT ... ON CONFLICT DO NOTHING`), so an acknowledged delivery is a job exactly
once even when the provider sends it again or the process dies right after answering.

Jobs go `queued -> running -> succeeded | failed (retried after a backoff) -> dead`. A claim sets
a lease; a worker that dies leaves a running job whose lease runs out, and the next claim takes it
again. Claims use `FOR UPDATE SKIP LOCKED` on PostgreSQL, so replicas share one queue; SQLite
serialises writers, so one UPDATE ... RETURNING is already atomic there.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from storage import schema
from storage.db import sqlite_file
from storage.delivery_writer import SqliteDeliveryWriter
from storage.repositories import utcnow
from storage.schema import JobStatus, time_ordered_id
from storage.webhook_records import (
    EndpointRecord,
    JobRecord,
    NewDelivery,
    dedupe_key,
    firing_input,
    firing_key,
)

endpoints_t, deliveries_t, jobs_t = schema.webhook_endpoints, schema.webhook_deliveries, schema.jobs


def _endpoint(row: Any) -> EndpointRecord:
    return EndpointRecord(**{f: getattr(row, f) for f in EndpointRecord.__dataclass_fields__})


def _job(row: Any) -> JobRecord:
    return JobRecord(**{f: getattr(row, f) for f in JobRecord.__dataclass_fields__})


class WebhookStore:
    def __init__(self, engine: AsyncEngine, clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self.clock = clock
        # On SQLite, deliveries take the lean path of storage.delivery_writer (the ingest hot path).
        database_file = sqlite_file(engine)
        self._sqlite_writer = SqliteDeliveryWriter(database_file) if database_file else None

    def close(self) -> None:
        if self._sqlite_writer is not None:
            self._sqlite_writer.close()

    async def create_endpoint(
        self,
        owner_id: UUID,
        *,
        provider: str,
        connection_id: UUID | None,
        sealed_secrets: str,
        agent_ids: Sequence[str] | None,
        endpoint_id: UUID | None = None,
    ) -> EndpointRecord:
        now = self.clock()
        values = {
            "id": endpoint_id or uuid.uuid4(),
            "owner_id": owner_id,
            "connection_id": connection_id,
            "provider": provider,
            "sealed_secrets": sealed_secrets,
            "agent_ids": list(agent_ids) if agent_ids is not None else None,
            "status": "active",
            "created_at": now,
            "updated_at": now,
        }
        async with self.engine.begin() as conn:
            row = (await conn.execute(endpoints_t.insert().values(**values).returning(*endpoints_t.c))).one()
        return _endpoint(row)

    async def endpoint(self, endpoint_id: UUID, owner_id: UUID | None = None) -> EndpointRecord | None:
        """Unscoped for receivers (the URL names the endpoint), scoped for owners."""
        query = sa.select(endpoints_t).where(
            endpoints_t.c.id == endpoint_id, endpoints_t.c.deleted_at.is_(None)
        )
        if owner_id is not None:
            query = query.where(endpoints_t.c.owner_id == owner_id)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return _endpoint(row) if row else None

    async def list_endpoints(self, owner_id: UUID) -> list[EndpointRecord]:
        query = (
            sa.select(endpoints_t)
            .where(endpoints_t.c.owner_id == owner_id, endpoints_t.c.deleted_at.is_(None))
            .order_by(endpoints_t.c.created_at.desc())
        )
        async with self.engine.connect() as conn:
            return [_endpoint(row) for row in await conn.execute(query)]

    async def delete_endpoint(self, owner_id: UUID, endpoint_id: UUID) -> EndpointRecord | None:
        """Retire an endpoint: its receiver URL stops answering; its deliveries and jobs stay."""
        now = self.clock()
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(
                    endpoints_t.update()
                    .where(
                        endpoints_t.c.id == endpoint_id,
                        endpoints_t.c.owner_id == owner_id,
                        endpoints_t.c.deleted_at.is_(None),
                    )
                    .values(status="deleted", deleted_at=now, updated_at=now)
                    .returning(*endpoints_t.c)
                )
            ).first()
        return _endpoint(row) if row else None

    async def count_rejection(self, endpoint_id: UUID, reason: str) -> None:
        """A refused delivery leaves only this trace: a counter and the reason."""
        now = self.clock()
        async with self.engine.begin() as conn:
            await conn.execute(
                endpoints_t.update()
                .where(endpoints_t.c.id == endpoint_id)
                .values(
                    rejected_count=endpoints_t.c.rejected_count + 1,
                    last_error=reason[:500],
                    last_error_at=now,
                    updated_at=now,
                )
            )

    async def record_delivery(
        self,
        endpoint: EndpointRecord,
        *,
        event_id: str,
        event_key: str,
        payload: Any,
        agent_ids: Sequence[UUID],
        max_attempts: int,
    ) -> bool:
        """The delivery and one job per agent, in one transaction; False for a duplicate."""
        [new] = await self.record_deliveries(
            [NewDelivery(endpoint, event_id, event_key, payload, tuple(agent_ids), max_attempts)]
        )
        return new

    async def record_deliveries(self, batch: Sequence[NewDelivery]) -> list[bool]:
        """Many deliveries in one transaction (group commit); for each, False when a duplicate."""
        now = self.clock()
        if self._sqlite_writer is not None:
            return await self._sqlite_writer.record(batch, now)
        rows = [
            {
                "id": time_ordered_id(),
                "endpoint_id": item.endpoint.id,
                "event_id": dedupe_key(item.event_id),
                "event_key": item.event_key[:200],
                "received_at": now,
            }
            for item in batch
        ]
        async with self.engine.begin() as conn:
            # executemany with RETURNING: one compiled statement for any batch size, which
            # SQLAlchemy sends as multi-row INSERTs ("insertmanyvalues"); duplicates return no row.
            inserted = {
                row.id
                for row in await conn.execute(
                    _insert_ignoring_duplicates(conn, deliveries_t, ["endpoint_id", "event_id"]).returning(
                        deliveries_t.c.id
                    ),
                    rows,
                )
            }
            new = [row["id"] in inserted for row in rows]
            jobs = [
                {
                    "id": time_ordered_id(),
                    "owner_id": item.endpoint.owner_id,
                    "agent_id": agent_id,
                    "delivery_id": row["id"],
                    "provider": item.endpoint.provider,
                    "event_key": item.event_key[:200],
                    "payload": item.payload,
                    "status": JobStatus.QUEUED,
                    "attempts": 0,
                    "max_attempts": item.max_attempts,
                    "run_after": now,
                    "created_at": now,
                    "updated_at": now,
                }
                for item, row, is_new in zip(batch, rows, new, strict=True)
                if is_new
                for agent_id in item.agent_ids
            ]
            if jobs:
                await conn.execute(jobs_t.insert(), jobs)
            firings = [
                {
                    "id": time_ordered_id(),
                    "owner_id": item.endpoint.owner_id,
                    "trigger_id": firing.trigger_id,
                    "workflow_id": firing.workflow_id,
                    "idempotency_key": firing_key(item.endpoint.id, item.event_id),
                    "input": firing_input(item.payload),
                    "created_at": now,
                }
                for item, is_new in zip(batch, new, strict=True)
                if is_new
                for firing in item.firings
            ]
            if firings:
                await conn.execute(schema.workflow_trigger_firings.insert(), firings)
            counts: dict[UUID, list[int]] = {}
            for item, is_new in zip(batch, new, strict=True):
                counts.setdefault(item.endpoint.id, [0, 0])[0 if is_new else 1] += 1
            for endpoint_id, (fresh, repeated) in counts.items():
                await conn.execute(
                    endpoints_t.update()
                    .where(endpoints_t.c.id == endpoint_id)
                    .values(
                        delivery_count=endpoints_t.c.delivery_count + fresh,
                        duplicate_count=endpoints_t.c.duplicate_count + repeated,
                        last_delivery_at=now,
                        updated_at=now,
                    )
                )
        return new


def _insert_ignoring_duplicates(conn: AsyncConnection, table: sa.Table, keys: list[str]) -> Any:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing(index_elements=keys)


# Seconds to wait before retry number n (1 for the first): the caller's backoff policy.
Backoff = Callable[[int], float]
# Told of each job that went to the dead letters, after it is stored.
DeadListener = Callable[[JobRecord], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class JobCensus:
    """Jobs per status across every owner, and when the oldest still-queued job was made."""

    by_status: dict[str, int]
    oldest_queued_at: datetime | None


class JobQueue:
    def __init__(
        self, engine: AsyncEngine, clock: Callable[[], datetime] = utcnow, *, backoff: Backoff
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.backoff = backoff
        self._dead_listeners: list[DeadListener] = []

    def on_dead(self, listener: DeadListener) -> None:
        """Call `listener` for every job that dies (failed for good, or its lease ran out on the last
        attempt); its failure is its own."""
        self._dead_listeners.append(listener)

    async def _tell_dead(self, jobs: Sequence[JobRecord]) -> None:
        for job in jobs:
            for listener in self._dead_listeners:
                await listener(job)

    def _claimable(self, now: datetime) -> sa.ColumnElement[bool]:
        waiting = sa.and_(
            jobs_t.c.status.in_([JobStatus.QUEUED, JobStatus.FAILED]), jobs_t.c.run_after <= now
        )
        abandoned = sa.and_(jobs_t.c.status == JobStatus.RUNNING, jobs_t.c.lease_until < now)
        return sa.and_(sa.or_(waiting, abandoned), jobs_t.c.attempts < jobs_t.c.max_attempts)

    async def claim(
        self,
        *,
        worker: str,
        lease_seconds: float,
        limit: int = 1,
        agent_id: UUID | None = None,
        providers: Sequence[str] | None = None,
        push_only: bool = False,
    ) -> list[JobRecord]:
        """Lease up to `limit` runnable jobs (oldest first) to `worker`."""
        now = self.clock()
        candidates = sa.select(jobs_t.c.id).where(self._claimable(now))
        if agent_id is not None:
            candidates = candidates.where(jobs_t.c.agent_id == agent_id)
        if providers is not None:
            candidates = candidates.where(jobs_t.c.provider.in_(list(providers)))
        if push_only:
            pushing = sa.select(schema.agents.c.id).where(schema.agents.c.delivery_url.is_not(None))
            candidates = candidates.where(jobs_t.c.agent_id.in_(pushing))
        candidates = (
            candidates.order_by(jobs_t.c.created_at, jobs_t.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        async with self.engine.begin() as conn:
            buried = await self._bury_abandoned(conn, now)
            rows = await conn.execute(
                jobs_t.update()
                .where(jobs_t.c.id.in_(candidates.scalar_subquery()))
                .values(
                    status=JobStatus.RUNNING,
                    attempts=jobs_t.c.attempts + 1,
                    lease_until=now + timedelta(seconds=lease_seconds),
                    claimed_by=worker[:100],
                    updated_at=now,
                )
                .returning(*jobs_t.c)
            )
            claimed = sorted((_job(row) for row in rows), key=lambda j: (j.created_at, str(j.id)))
        await self._tell_dead(buried)
        return claimed

    async def _bury_abandoned(self, conn: AsyncConnection, now: datetime) -> list[JobRecord]:
        """Running jobs whose lease ran out on their last attempt go to the dead letters."""
        rows = await conn.execute(
            jobs_t.update()
            .where(
                jobs_t.c.status == JobStatus.RUNNING,
                jobs_t.c.lease_until < now,
                jobs_t.c.attempts >= jobs_t.c.max_attempts,
            )
            .values(
                status=JobStatus.DEAD,
                last_error="lease expired on the last attempt",
                finished_at=now,
                updated_at=now,
            )
            .returning(*jobs_t.c)
        )
        return [_job(row) for row in rows]

    async def _finish(
        self, job_id: UUID, worker_filter: Mapping[str, Any], **values: Any
    ) -> JobRecord | None:
        """Change a running job held by this worker (and agent); None when it is not theirs."""
        now = self.clock()
        conditions = [jobs_t.c.id == job_id, jobs_t.c.status == JobStatus.RUNNING]
        conditions += [jobs_t.c[name] == value for name, value in worker_filter.items()]
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(
                    jobs_t.update().where(*conditions).values(updated_at=now, **values).returning(*jobs_t.c)
                )
            ).first()
        return _job(row) if row else None

    async def heartbeat(self, job_id: UUID, *, agent_id: UUID, lease_seconds: float) -> JobRecord | None:
        until = self.clock() + timedelta(seconds=lease_seconds)
        return await self._finish(job_id, {"agent_id": agent_id}, lease_until=until)

    async def complete(self, job_id: UUID, *, agent_id: UUID, result: Any) -> JobRecord | None:
        now = self.clock()
        return await self._finish(
            job_id,
            {"agent_id": agent_id},
            status=JobStatus.SUCCEEDED,
            result=result,
            lease_until=None,
            finished_at=now,
        )

    async def fail(self, job_id: UUID, *, agent_id: UUID, error: str, retry: bool) -> JobRecord | None:
        """A failed attempt: retried after a backoff while attempts remain (and `retry`), else dead."""
        now = self.clock()
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(jobs_t).where(jobs_t.c.id == job_id))).first()
        if row is None:
            return None
        if retry and row.attempts < row.max_attempts:
            after = now + timedelta(seconds=self.backoff(row.attempts))
            values: dict[str, Any] = {"status": JobStatus.FAILED, "run_after": after}
        else:
            values = {"status": JobStatus.DEAD, "finished_at": now}
        finished = await self._finish(
            job_id, {"agent_id": agent_id}, last_error=error[:2000], lease_until=None, **values
        )
        if finished is not None and finished.status == JobStatus.DEAD:
            await self._tell_dead([finished])
        return finished

    async def retry_dead(self, job_id: UUID, *, owner_id: UUID, extra_attempts: int = 3) -> JobRecord | None:
        """Give a dead (or failed) job another `extra_attempts` tries, now."""
        now = self.clock()
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(
                    jobs_t.update()
                    .where(
                        jobs_t.c.id == job_id,
                        jobs_t.c.owner_id == owner_id,
                        jobs_t.c.status.in_([JobStatus.DEAD, JobStatus.FAILED]),
                    )
                    .values(
                        status=JobStatus.QUEUED,
                        max_attempts=jobs_t.c.attempts + extra_attempts,
                        run_after=now,
                        finished_at=None,
                        updated_at=now,
                    )
                    .returning(*jobs_t.c)
                )
            ).first()
        return _job(row) if row else None

    async def get(self, job_id: UUID, *, owner_id: UUID, agent_id: UUID | None = None) -> JobRecord | None:
        query = sa.select(jobs_t).where(jobs_t.c.id == job_id, jobs_t.c.owner_id == owner_id)
        if agent_id is not None:
            query = query.where(jobs_t.c.agent_id == agent_id)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return _job(row) if row else None

    async def list(
        self,
        owner_id: UUID,
        *,
        status: str | None = None,
        agent_id: UUID | None = None,
        event_key: str | None = None,
        providers: Sequence[str] | None = None,
        limit: int = 100,
    ) -> list[JobRecord]:
        query = sa.select(jobs_t).where(jobs_t.c.owner_id == owner_id)
        if status is not None:
            query = query.where(jobs_t.c.status == status)
        if agent_id is not None:
            query = query.where(jobs_t.c.agent_id == agent_id)
        if event_key is not None:
            query = query.where(jobs_t.c.event_key == event_key)
        if providers is not None:
            query = query.where(jobs_t.c.provider.in_(list(providers)))
        query = query.order_by(jobs_t.c.created_at.desc(), jobs_t.c.id).limit(limit)
        async with self.engine.connect() as conn:
            return [_job(row) for row in await conn.execute(query)]

    async def census(self) -> JobCensus:
        """For the operator's metrics: two index-backed aggregate queries, whatever the owner."""
        by_status = sa.select(jobs_t.c.status, sa.func.count()).group_by(jobs_t.c.status)
        oldest = sa.select(sa.func.min(jobs_t.c.created_at)).where(jobs_t.c.status == JobStatus.QUEUED)
        async with self.engine.connect() as conn:
            counts = {status: int(count) for status, count in await conn.execute(by_status)}
            oldest_at = (await conn.execute(oldest)).scalar()
        return JobCensus({status: counts.get(status, 0) for status in JobStatus.ALL}, oldest_at)

    async def count_by_status(self, owner_id: UUID) -> dict[str, int]:
        query = (
            sa.select(jobs_t.c.status, sa.func.count())
            .where(jobs_t.c.owner_id == owner_id)
            .group_by(jobs_t.c.status)
        )
        async with self.engine.connect() as conn:
            return {status: int(count) for status, count in await conn.execute(query)}
