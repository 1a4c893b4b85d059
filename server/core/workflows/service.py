"""Workflows as the owner manages them: create, list (cursor pages), get, change (any of name,
description, isPublic and definition) and delete (soft: executions keep their workflow), every
read scoped to the owner, so another owner's workflow is not found. A definition is checked whole
on create and on update (server/core/workflows/definition.py) against the catalog and the owner's
connections.

Agents (over MCP) see the workflows `runnable_by` them: the owner's public workflows whose every
connector is on the agent's allowedConnectors (`http` for an http_request step; a connectionId
step counts as its connection's connector). Private workflows are run over REST only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from connectors import Catalog
from server.core.audit import Audit
from server.core.connections import Connections
from server.core.errors import Invalid, NotFound
from server.core.identity import AgentPrincipal
from server.core.paging import cursor_of, id_after
from server.core.workflows.definition import Definition, connection_ids, connectors_used, parse_definition
from storage.workflows import WorkflowRecord, WorkflowStore

NAME_MAX, DESCRIPTION_MAX = 200, 2000
PAGE_DEFAULT, PAGE_MAX = 100, 500


@dataclass(frozen=True, slots=True)
class WorkflowPage:
    workflows: list[WorkflowRecord]
    next_cursor: str | None  # pass back as `cursor` for the next page; None on the last one


def definition_of(record: WorkflowRecord) -> Definition:
    """A stored workflow's definition (checked when it was stored)."""
    return Definition.model_validate(record.definition)


class Workflows:
    def __init__(
        self, *, store: WorkflowStore, catalog: Catalog, connections: Connections, audit: Audit
    ) -> None:
        self._store = store
        self._catalog = catalog
        self._connections = connections
        self._audit = audit

    # -- reading -----------------------------------------------------------------------------------
    async def get(self, owner_id: UUID, workflow_id: UUID) -> WorkflowRecord:
        record = await self._store.get(owner_id, workflow_id)
        if record is None:
            raise NotFound("workflow not found")
        return record

    async def list(
        self, owner_id: UUID, *, limit: int = PAGE_DEFAULT, cursor: str | None = None
    ) -> WorkflowPage:
        """A page of the owner's workflows, newest first, after the page whose next_cursor is `cursor`."""
        if not 1 <= limit <= PAGE_MAX:
            raise Invalid(f"limit must be between 1 and {PAGE_MAX}", field="limit")
        before = (
            id_after(cursor, "malformed cursor: pass back the cursor of the next page's link")
            if cursor
            else None
        )
        found = await self._store.page(owner_id, limit=limit + 1, before=before)
        shown = found[:limit]
        return WorkflowPage(shown, cursor_of(shown[-1].id) if len(found) > limit else None)

    async def runnable_by(self, agent: AgentPrincipal) -> list[WorkflowRecord]:
        """The workflows the agent may list and run: its owner's public ones using only connectors
        the agent is allowed (newest first)."""
        public = await self._store.public(agent.owner_id)
        if not public:
            return []
        connections = await self._connection_slugs(agent.owner_id)
        return [
            record
            for record in public
            if connectors_used(definition_of(record), connections) <= agent.allowed_connectors
        ]

    async def runnable(self, agent: AgentPrincipal, workflow_id: UUID) -> WorkflowRecord:
        """One workflow the agent may run; not found otherwise (whether or not it exists)."""
        record = await self._store.get(agent.owner_id, workflow_id)
        if record is None or not record.is_public:
            raise NotFound("workflow not found")
        definition = definition_of(record)
        slugs = await self._connection_slugs(agent.owner_id) if connection_ids(definition) else {}
        if not connectors_used(definition, slugs) <= agent.allowed_connectors:
            raise NotFound("workflow not found")
        return record

    # -- making and changing -------------------------------------------------------------------------
    async def create(
        self,
        owner_id: UUID,
        *,
        name: str,
        definition: object,
        description: str | None = None,
        is_public: bool = False,
    ) -> WorkflowRecord:
        name = _checked_name(name)
        description = _checked_description(description)
        checked = await self._check(owner_id, definition)
        record = await self._store.create(
            owner_id,
            name=name,
            description=description,
            is_public=is_public,
            definition=checked.model_dump(mode="json"),
        )
        self._audit.record("workflow.create", owner_id, detail=_detail(record))
        return record

    async def update(
        self,
        owner_id: UUID,
        workflow_id: UUID,
        *,
        name: str | None = None,
        description: str | None = None,
        is_public: bool | None = None,
        definition: object | None = None,
    ) -> WorkflowRecord:
        """PATCH: what is given (not None) replaces what was; the definition is checked whole."""
        await self.get(owner_id, workflow_id)
        values: dict[str, Any] = {}
        if name is not None:
            values["name"] = _checked_name(name)
        if description is not None:
            values["description"] = _checked_description(description)
        if is_public is not None:
            values["is_public"] = is_public
        if definition is not None:
            values["definition"] = (await self._check(owner_id, definition)).model_dump(mode="json")
        if not values:
            return await self.get(owner_id, workflow_id)
        updated = await self._store.update(owner_id, workflow_id, **values)
        if updated is None:
            raise NotFound("workflow not found")
        changed = [_FIELDS[key] for key in values]
        self._audit.record("workflow.update", owner_id, detail={**_detail(updated), "changed": changed})
        return updated

    async def delete(self, owner_id: UUID, workflow_id: UUID) -> None:
        record = await self.get(owner_id, workflow_id)
        if not await self._store.delete(owner_id, workflow_id):
            raise NotFound("workflow not found")
        self._audit.record("workflow.delete", owner_id, detail=_detail(record))

    # -- checks ---------------------------------------------------------------------------------------
    async def _check(self, owner_id: UUID, raw: object) -> Definition:
        # Parsed once for shape; the owner's connections are read only when a step names one.
        definition = parse_definition(raw, self._catalog)
        if not connection_ids(definition):
            return definition
        return parse_definition(raw, self._catalog, connections=await self._connection_slugs(owner_id))

    async def _connection_slugs(self, owner_id: UUID) -> Mapping[str, str]:
        return {str(c.id): c.connector_slug for c in await self._connections.list(owner_id)}


_FIELDS = {"name": "name", "description": "description", "is_public": "isPublic", "definition": "definition"}


def _detail(record: WorkflowRecord) -> dict[str, str]:
    return {"workflow": str(record.id), "name": record.name}


def _checked_name(value: str) -> str:
    if not value.strip() or len(value) > NAME_MAX or "\x00" in value:
        raise Invalid(f"name must be a non-empty string of at most {NAME_MAX} characters", field="name")
    return value.strip()


def _checked_description(value: str | None) -> str | None:
    if value is None:
        return None
    if len(value) > DESCRIPTION_MAX or "\x00" in value:
        raise Invalid(
            f"description must be a string of at most {DESCRIPTION_MAX} characters", field="description"
        )
    return value
