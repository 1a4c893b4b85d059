"""Webhook endpoints, deliveries and jobs as values: what storage.jobs reads and writes, and what
the SQLite delivery writer takes (one module both import, so neither imports the other)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID


@dataclass(frozen=True, slots=True)
class EndpointRecord:
    id: UUID
    owner_id: UUID
    connection_id: UUID | None
    provider: str
    sealed_secrets: str
    agent_ids: list[str] | None
    status: str
    delivery_count: int
    duplicate_count: int
    rejected_count: int
    last_delivery_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class JobRecord:
    id: UUID
    owner_id: UUID
    agent_id: UUID
    delivery_id: UUID
    provider: str
    event_key: str
    payload: Any
    status: str
    attempts: int
    max_attempts: int
    run_after: datetime
    lease_until: datetime | None
    claimed_by: str | None
    last_error: str | None
    result: Any
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class NewDelivery:
    endpoint: EndpointRecord
    event_id: str
    event_key: str
    payload: Any
    agent_ids: tuple[UUID, ...]
    max_attempts: int
    payload_json: str | None = None  # the payload's JSON text when the provider sent exactly that


EVENT_ID_COLUMN = 200  # webhook_deliveries.event_id's width


def dedupe_key(event_id: str) -> str:
    """What a delivery is deduplicated on: the provider's id itself, or a digest of the whole of it
    when it is longer than the column (cutting it would make two ids with a common prefix one)."""
    if len(event_id) <= EVENT_ID_COLUMN:
        return event_id
    return "sha256:" + hashlib.sha256(event_id.encode()).hexdigest()
