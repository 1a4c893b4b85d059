"""The audit trail at rest (the `audit_events` table): batches written together, pages read newest
first, and rows past the retention period deleted.

An event's id is a UUIDv7 made from its time (to the millisecond), so ids sort by time: a page is
an index range ending in `id` (`owner_id, [agent_id | connection_id | kind,] id`), read backwards,
the cursor is the last id shown, and deleting by age is a primary-key range.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from storage import schema

logger = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)
DELETE_CHUNK = 5000  # rows per delete statement: short transactions, even for a long backlog


def to_millisecond(at: datetime) -> datetime:
    """`at` without its sub-millisecond part: what is stored, so an event's time and id agree."""
    return at.replace(microsecond=at.microsecond - at.microsecond % 1000)


_last = (0, 0)  # the millisecond of the last id made, and its sequence number in that millisecond
_SEQUENCE_MAX = 0xFFF


def event_id(at: datetime) -> UUID:
    """A fresh UUIDv7 whose timestamp is `at`'s millisecond. Within one millisecond the ids this
    process makes increase (a 12-bit sequence where UUIDv7 has its `rand_a`), so events recorded
    back to back read back in the order they happened."""
    global _last
    millis = (at - _EPOCH) // _MILLISECOND
    last_millis, sequence = _last
    sequence = min(sequence + 1, _SEQUENCE_MAX) if millis == last_millis else 0
    _last = (millis, sequence)
    return UUID(int=(millis << 80) | (0x7 << 76) | (sequence << 64) | (0b10 << 62) | random.getrandbits(62))


def _first_id_from(at: datetime) -> UUID:
    """The smallest id an event at or after `at` can have (its millisecond rounded up). A time
    before 1970 or past what 48 bits of milliseconds hold (year 10889) is the first or last id."""
    millis, rest = divmod(at - _EPOCH, _MILLISECOND)
    return UUID(int=min(max(millis + (1 if rest else 0), 0), (1 << 48) - 1) << 80)


@dataclass(frozen=True, slots=True)
class AuditEvent:
    id: UUID
    owner_id: UUID | None
    at: datetime
    kind: str
    actor_type: str
    actor_id: UUID | None = None
    agent_id: UUID | None = None
    connection_id: UUID | None = None
    connector: str | None = None
    action: str | None = None
    outcome: str = "ok"
    latency_ms: float | None = None
    detail: Mapping[str, Any] = field(default_factory=dict[str, Any])


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """One page of an owner's events, newest first: at or after `since`, before `until`, older
    than the event `before` (the cursor), of one agent, one connection, and `kinds` (any kind when
    empty)."""

    owner_id: UUID
    limit: int
    since: datetime | None = None
    until: datetime | None = None
    before: UUID | None = None
    agent_id: UUID | None = None
    connection_id: UUID | None = None
    kinds: tuple[str, ...] = ()


def _event(row: sa.Row[Any]) -> AuditEvent:
    m = row._mapping
    return AuditEvent(
        m["id"],
        m["owner_id"],
        m["at"],
        m["kind"],
        m["actor_type"],
        m["actor_id"],
        m["agent_id"],
        m["connection_id"],
        m["connector"],
        m["action"],
        m["outcome"],
        m["latency_ms"],
        dict(m["detail"] or {}),
    )


def _row(event: AuditEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "owner_id": event.owner_id,
        "at": event.at,
        "kind": event.kind,
        "actor_type": event.actor_type,
        "actor_id": event.actor_id,
        "agent_id": event.agent_id,
        "connection_id": event.connection_id,
        "connector": event.connector,
        "action": event.action,
        "outcome": event.outcome,
        "latency_ms": event.latency_ms,
        "detail": dict(event.detail),
    }


class AuditStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def record(self, events: Sequence[AuditEvent]) -> int:
        """Write a batch in one transaction; how many rows were written. Should the batch fail as a
        whole (an owner deleted meanwhile, whose events the foreign key refuses), its events are
        written one by one and those that still fail are dropped."""
        if not events:
            return 0
        table = schema.audit_events
        rows = [_row(event) for event in events]
        try:
            async with self.engine.begin() as conn:
                await conn.execute(table.insert(), rows)
            return len(rows)
        except DBAPIError:
            if len(rows) == 1:
                raise
            logger.warning("an audit batch of %d events failed; writing them one by one", len(rows))
        written = 0
        for row in rows:
            try:
                async with self.engine.begin() as conn:
                    await conn.execute(table.insert(), [row])
                written += 1
            except DBAPIError as exc:
                logger.warning("audit event %s (%s) dropped: %s", row["id"], row["kind"], type(exc).__name__)
        return written

    async def page(self, query: AuditQuery) -> list[AuditEvent]:
        table = schema.audit_events
        where = [table.c.owner_id == query.owner_id]
        if query.agent_id is not None:
            where.append(table.c.agent_id == query.agent_id)
        if query.connection_id is not None:
            where.append(table.c.connection_id == query.connection_id)
        if query.kinds:
            where.append(table.c.kind.in_(query.kinds))
        if query.since is not None:
            where.append(table.c.id >= _first_id_from(query.since))
        if query.until is not None:
            where.append(table.c.id < _first_id_from(query.until))
        if query.before is not None:
            where.append(table.c.id < query.before)
        statement = sa.select(table).where(*where).order_by(table.c.id.desc()).limit(query.limit)
        async with self.engine.connect() as conn:
            return [_event(row) for row in await conn.execute(statement)]

    async def delete_before(self, cutoff: datetime) -> int:
        """Delete every event older than `cutoff`, DELETE_CHUNK rows per transaction; how many."""
        table = schema.audit_events
        older = (
            sa.select(table.c.id)
            .where(table.c.id < _first_id_from(cutoff))
            .order_by(table.c.id)
            .limit(DELETE_CHUNK)
            .scalar_subquery()
        )
        deleted = 0
        while True:
            async with self.engine.begin() as conn:
                count = (await conn.execute(table.delete().where(table.c.id.in_(older)))).rowcount
            deleted += count
            if count < DELETE_CHUNK:
                return deleted
