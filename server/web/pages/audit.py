"""/dashboard/audit: the signed-in owner's audit trail, newest first, filterable by kind, agent and
connection, a page at a time (the same events as GET /api/v1/audit)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode
from uuid import UUID

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from server.core.audit import FAMILIES, KINDS
from server.web.pages.render import page
from server.web.pages.session import signed_in
from server.web.reading import core_of, uuid_of
from storage.audit import AuditEvent
from storage.flows import WebSession

PATH = "/dashboard/audit"
PAGE_SIZE = 50


class AuditFilters(BaseModel):
    kind: str | None = None
    agent: str | None = None
    connection: str | None = None
    cursor: str | None = None


def _detail(event: AuditEvent) -> str:
    """A few facts, as text: `from pending to active`, `keyId=... name=...`."""
    detail = dict(event.detail)
    if event.kind == "connection.status":
        return f"{detail.get('from')} -> {detail.get('to')}"
    return " ".join(
        f"{key}={', '.join(map(str, v)) if isinstance(v, list) else v}" for key, v in detail.items()
    )


@signed_in("read", query=AuditFilters)
async def audit_trail(request: Request, session: WebSession) -> Response:
    """The audit trail (a browser page)
    The owner's tool calls, action runs, credential and OAuth events, status moves, key and agent
    changes and sign-ins, newest first."""
    core = core_of(request)
    filters: AuditFilters = request.state.query
    agent_id = uuid_of(filters.agent, "agent id") if filters.agent else None
    connection_id = uuid_of(filters.connection, "connection id") if filters.connection else None
    found = await core.audit.list(
        session.owner_id,
        kind=filters.kind or None,
        agent_id=agent_id,
        connection_id=connection_id,
        cursor=filters.cursor or None,
        limit=PAGE_SIZE,
    )
    agents = {a.id: a.name for a in await core.identity.list_agents(session.owner_id)}
    keys = {k.id: k.name for k in await core.identity.list_api_keys(session.owner_id)}
    connections = {c.id: c.label for c in await core.connections.list(session.owner_id)}
    chosen = {
        "kind": filters.kind or "",
        "agent": filters.agent or "",
        "connection": filters.connection or "",
    }

    def actor(event: AuditEvent) -> str:
        names: dict[str, dict[UUID, str]] = {"agent": agents, "key": keys, "session": keys}
        if event.actor_id is None:
            return event.actor_type
        name = names.get(event.actor_type, {}).get(event.actor_id, str(event.actor_id))
        return f"{event.actor_type} {name}" if event.actor_type != "session" else f"session (key {name})"

    rows: list[dict[str, Any]] = [
        {
            "event": event,
            "actor": actor(event),
            "agent": agents.get(event.agent_id, str(event.agent_id)) if event.agent_id else "",
            "connection": connections.get(event.connection_id, str(event.connection_id))
            if event.connection_id
            else "",
            "detail": _detail(event),
        }
        for event in found.events
    ]
    kept = {k: v for k, v in chosen.items() if v}
    newest = f"{PATH}?{urlencode(kept)}" if kept else PATH
    older = f"{PATH}?{urlencode({**kept, 'cursor': found.next_cursor})}" if found.next_cursor else None
    return page(
        request,
        "audit.html",
        "Audit trail",
        path=PATH,
        rows=rows,
        choices={"kind": [*FAMILIES, *KINDS]},
        agents=agents,
        connections=connections,
        chosen=chosen,
        older=older,
        newest=newest,
        paged=bool(filters.cursor),
    )
