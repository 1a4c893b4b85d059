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
class TriggerFiring:
    """An event trigger the delivery matched: its execution is owed once the delivery is stored."""

    trigger_id: UUID
    workflow_id: UUID


@dataclass(frozen=True, slots=True)
class NewDelivery:
    endpoint: EndpointRecord
    event_id: str
    event_key: str
    payload: Any
    agent_ids: tuple[UUID, ...]
    max_attempts: int
    payload_json: str | None = None  # the payload's JSON text when the provider sent exactly that
    # Event triggers of the endpoint's owner matching the event key: recorded with the delivery
    # (workflow_trigger_firings), only when it is new.
    firings: tuple[TriggerFiring, ...] = ()


EVENT_ID_COLUMN = 200  # webhook_deliveries.event_id's width


def dedupe_key(event_id: str) -> str:
    """What a delivery is deduplicated on: the provider's id itself, or a digest of the whole of it
    when it is longer than the column (cutting it would make two ids with a common prefix one)."""
    if len(event_id) <= EVENT_ID_COLUMN:
        return event_id
    return "sha256:" + hashlib.sha256(event_id.encode()).hexdigest()


def firing_key(endpoint_id: UUID, event_id: str) -> str:
    """The idempotency key of an execution an event starts: the delivery's dedupe identity, so a
    provider's retry of the same delivery never starts a second one (at most 6+36+1+200 characters)."""
    return f"event:{endpoint_id}:{dedupe_key(event_id)}"


def firing_input(payload: Any) -> dict[str, Any]:
    """An execution's input is a JSON object: the payload itself, or {"payload": ...} when the
    provider sent something else (a list, a string)."""
    return payload if isinstance(payload, dict) else {"payload": payload}
