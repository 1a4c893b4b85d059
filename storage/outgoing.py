"""Outgoing webhooks and their deliveries (SQLite and PostgreSQL alike).

A delivery is one event for one webhook: the exact body to sign and send, written once (announcing
the same event again is a no-op: `dedupe_key` is unique). Deliveries go
`pending -> sending -> delivered | failed (retried at next_attempt_at) -> ... -> dead`. A claim
leases a delivery to one sender and counts the attempt; a sender that dies leaves it `sending` with
a lease that runs out, and the next claim takes it again (or buries it when that was the last
attempt). Claims use `FOR UPDATE SKIP LOCKED` on PostgreSQL, so replicas never send the same
attempt twice; SQLite serialises writers, so one UPDATE ... RETURNING is already atomic there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from storage import schema
from storage.db import SingleStatements
from storage.repositories import utcnow
from storage.schema import time_ordered_id

hooks_t, deliveries_t = schema.outgoing_webhooks, schema.outgoing_deliveries


class DeliveryStatus:
    PENDING = "pending"
    SENDING = "sending"
    DELIVERED = "delivered"
    FAILED = "failed"
    DEAD = "dead"
    ALL = (PENDING, SENDING, DELIVERED, FAILED, DEAD)


@dataclass(frozen=True, slots=True)
class OutgoingWebhookRecord:
    id: UUID
    owner_id: UUID
    name: str
    url: str
    events: list[str]
    sealed_secret: str
    sealed_headers: str | None
    max_attempts: int
    backoff_ms: int
    active: bool
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class OutgoingDeliveryRecord:
    id: UUID
    webhook_id: UUID
    owner_id: UUID
    event: str
    body: str
    dedupe_key: str | None
    status: str
    attempts: int
    next_attempt_at: datetime
    lease_until: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


@dataclass(frozen=True, slots=True)
class NewOutgoingDelivery:
    webhook_id: UUID
    owner_id: UUID
    event: str
    body: str
    dedupe_key: str | None


def _hook(row: Any) -> OutgoingWebhookRecord:
    return OutgoingWebhookRecord(**{f: getattr(row, f) for f in OutgoingWebhookRecord.__dataclass_fields__})


def _delivery(row: Any) -> OutgoingDeliveryRecord:
    return OutgoingDeliveryRecord(**{f: getattr(row, f) for f in OutgoingDeliveryRecord.__dataclass_fields__})


class OutgoingStore:
    def __init__(self, engine: AsyncEngine, clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self.clock = clock
        self._single = SingleStatements(engine)

    # -- webhooks ----------------------------------------------------------------------------------
    async def create(self, values: dict[str, Any]) -> OutgoingWebhookRecord:
        """`values` holds every column but the times (and `active`, true unless given)."""
        now = self.clock()
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(
                    hooks_t.insert()
                    .values(active=True, **values, created_at=now, updated_at=now)
                    .returning(*hooks_t.c)
                )
            ).one()
        return _hook(row)

    def _live(self, owner_id: UUID) -> list[sa.ColumnElement[bool]]:
        return [hooks_t.c.owner_id == owner_id, hooks_t.c.deleted_at.is_(None)]

    async def get(self, owner_id: UUID, webhook_id: UUID) -> OutgoingWebhookRecord | None:
        query = sa.select(hooks_t).where(hooks_t.c.id == webhook_id, *self._live(owner_id))
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return _hook(row) if row else None

    async def list(self, owner_id: UUID) -> list[OutgoingWebhookRecord]:
        query = sa.select(hooks_t).where(*self._live(owner_id)).order_by(hooks_t.c.created_at, hooks_t.c.id)
        async with self.engine.connect() as conn:
            return [_hook(row) for row in await conn.execute(query)]

    async def subscribed(self, owner_id: UUID) -> list[OutgoingWebhookRecord]:
        """The owner's active webhooks (their events are JSON: the caller picks the ones it wants)."""
        query = sa.select(hooks_t).where(*self._live(owner_id), hooks_t.c.active.is_(True))
        async with self._single.connect() as conn:
            return [_hook(row) for row in await conn.execute(query)]

    async def any_owner_hooks(self) -> bool:
        query = sa.select(hooks_t.c.id).where(hooks_t.c.deleted_at.is_(None)).limit(1)
        async with self.engine.connect() as conn:
            return (await conn.execute(query)).first() is not None

    async def update(
        self, owner_id: UUID, webhook_id: UUID, values: dict[str, Any]
    ) -> OutgoingWebhookRecord | None:
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(
                    hooks_t.update()
                    .where(hooks_t.c.id == webhook_id, *self._live(owner_id))
                    .values(**values, updated_at=self.clock())
                    .returning(*hooks_t.c)
                )
            ).first()
        return _hook(row) if row else None

    async def delete(self, owner_id: UUID, webhook_id: UUID) -> bool:
        """Retire a webhook: nothing more is sent to it; what was waiting is dead, its history stays."""
        now = self.clock()
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(
                    hooks_t.update()
                    .where(hooks_t.c.id == webhook_id, *self._live(owner_id))
                    .values(active=False, deleted_at=now, updated_at=now)
                    .returning(hooks_t.c.id)
                )
            ).first()
            if row is None:
                return False
            await conn.execute(
                deliveries_t.update()
                .where(
                    deliveries_t.c.webhook_id == webhook_id,
                    deliveries_t.c.status.in_([DeliveryStatus.PENDING, DeliveryStatus.FAILED]),
                )
                .values(status=DeliveryStatus.DEAD, last_error="the webhook was deleted", lease_until=None)
            )
        return True

    # -- deliveries ----------------------------------------------------------------------------------
    async def add_deliveries(self, batch: Sequence[NewOutgoingDelivery]) -> list[UUID]:
        """Write deliveries due now; ones whose dedupe_key exists already are skipped. Their ids."""
        if not batch:
            return []
        now = self.clock()
        rows = [
            {
                "id": time_ordered_id(),
                "webhook_id": item.webhook_id,
                "owner_id": item.owner_id,
                "event": item.event,
                "body": item.body,
                "dedupe_key": item.dedupe_key,
                "status": DeliveryStatus.PENDING,
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
            }
            for item in batch
        ]
        async with self.engine.begin() as conn:
            dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
            insert = dialect.insert(deliveries_t).on_conflict_do_nothing(index_elements=["dedupe_key"])
            return [row.id for row in await conn.execute(insert.returning(deliveries_t.c.id), rows)]

    async def delivery(
        self, owner_id: UUID, webhook_id: UUID, delivery_id: UUID
    ) -> OutgoingDeliveryRecord | None:
        query = sa.select(deliveries_t).where(
            deliveries_t.c.id == delivery_id,
            deliveries_t.c.webhook_id == webhook_id,
            deliveries_t.c.owner_id == owner_id,
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return _delivery(row) if row else None

    async def deliveries(
        self,
        owner_id: UUID,
        webhook_id: UUID,
        *,
        limit: int,
        before: UUID | None = None,
        status: str | None = None,
    ) -> list[OutgoingDeliveryRecord]:
        """Newest first (ids are time-ordered), those older than `before` (the page cursor)."""
        query = sa.select(deliveries_t).where(
            deliveries_t.c.webhook_id == webhook_id, deliveries_t.c.owner_id == owner_id
        )
        if before is not None:
            query = query.where(deliveries_t.c.id < before)
        if status is not None:
            query = query.where(deliveries_t.c.status == status)
        query = query.order_by(deliveries_t.c.id.desc()).limit(limit)
        async with self.engine.connect() as conn:
            return [_delivery(row) for row in await conn.execute(query)]

    async def claim(
        self, *, lease_seconds: float, limit: int
    ) -> list[tuple[OutgoingDeliveryRecord, OutgoingWebhookRecord]]:
        """Lease up to `limit` due deliveries of active webhooks (oldest due first), counting the
        attempt, with the webhook each goes to."""
        now = self.clock()
        due = sa.and_(
            deliveries_t.c.status.in_([DeliveryStatus.PENDING, DeliveryStatus.FAILED]),
            deliveries_t.c.next_attempt_at <= now,
        )
        abandoned = sa.and_(deliveries_t.c.status == DeliveryStatus.SENDING, deliveries_t.c.lease_until < now)
        candidates = (
            sa.select(deliveries_t.c.id)
            .join(hooks_t, hooks_t.c.id == deliveries_t.c.webhook_id)
            .where(
                sa.or_(due, abandoned),
                deliveries_t.c.attempts < hooks_t.c.max_attempts,
                hooks_t.c.active.is_(True),
                hooks_t.c.deleted_at.is_(None),
            )
            .order_by(deliveries_t.c.next_attempt_at, deliveries_t.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True, of=deliveries_t)
        )
        async with self.engine.begin() as conn:
            await self._bury_abandoned(conn, now)
            claimed = [
                _delivery(row)
                for row in await conn.execute(
                    deliveries_t.update()
                    .where(deliveries_t.c.id.in_(candidates.scalar_subquery()))
                    .values(
                        status=DeliveryStatus.SENDING,
                        attempts=deliveries_t.c.attempts + 1,
                        lease_until=now + timedelta(seconds=lease_seconds),
                    )
                    .returning(*deliveries_t.c)
                )
            ]
            if not claimed:
                return []
            hooks = {
                row.id: _hook(row)
                for row in await conn.execute(
                    sa.select(hooks_t).where(hooks_t.c.id.in_({d.webhook_id for d in claimed}))
                )
            }
        claimed.sort(key=lambda d: (d.next_attempt_at, d.id))
        return [(delivery, hooks[delivery.webhook_id]) for delivery in claimed]

    async def _bury_abandoned(self, conn: AsyncConnection, now: datetime) -> None:
        """Deliveries whose lease ran out on their last attempt are dead."""
        last = (
            sa.select(hooks_t.c.max_attempts)
            .where(hooks_t.c.id == deliveries_t.c.webhook_id)
            .scalar_subquery()
        )
        await conn.execute(
            deliveries_t.update()
            .where(
                deliveries_t.c.status == DeliveryStatus.SENDING,
                deliveries_t.c.lease_until < now,
                deliveries_t.c.attempts >= last,
            )
            .values(
                status=DeliveryStatus.DEAD, lease_until=None, last_error="lease expired on the last attempt"
            )
        )

    async def finish(
        self,
        delivery_id: UUID,
        *,
        attempt: int,
        status: str,
        status_code: int | None,
        error: str | None,
        next_attempt_at: datetime | None = None,
    ) -> bool:
        """Record how the claimed attempt ended; False when the lease was lost (someone else took it)."""
        now = self.clock()
        values: dict[str, Any] = {
            "status": status,
            "lease_until": None,
            "last_status_code": status_code,
            "last_error": error[:2000] if error else None,
        }
        if status == DeliveryStatus.DELIVERED:
            values["delivered_at"] = now
        if next_attempt_at is not None:
            values["next_attempt_at"] = next_attempt_at
        async with self.engine.begin() as conn:
            result = await conn.execute(
                deliveries_t.update()
                .where(
                    deliveries_t.c.id == delivery_id,
                    deliveries_t.c.status == DeliveryStatus.SENDING,
                    deliveries_t.c.attempts == attempt,
                )
                .values(**values)
            )
        return result.rowcount >= 1
