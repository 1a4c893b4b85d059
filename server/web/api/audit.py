"""GET /api/v1/audit: the caller's owner's audit trail, newest first, a page at a time."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

from pydantic import Field

from server.core.audit import KINDS, PAGE_DEFAULT, PAGE_MAX
from server.web.api.endpoint import ApiRequest, ApiResponse, Call, api
from storage.audit import AuditEvent


class AuditEventQuery(ApiRequest):
    since: datetime | None = Field(
        None, description="Only events at or after this time (ISO 8601; UTC when it names no zone)."
    )
    until: datetime | None = Field(None, description="Only events before this time (ISO 8601).")
    agent: UUID | None = Field(None, description="Only events done by or to this agent.")
    connection: UUID | None = Field(None, description="Only events about this connection.")
    kind: str | None = Field(
        None,
        description="Only events of this kind (" + ", ".join(KINDS) + "), or of a family: "
        "the part before the dot (tool, key, agent, ...).",
    )
    limit: int = Field(PAGE_DEFAULT, ge=1, le=PAGE_MAX, description=f"Events per page, at most {PAGE_MAX}.")
    cursor: str | None = Field(None, description="The previous page's nextCursor, for the page after it.")
    field_messages: ClassVar[dict[str, str]] = {
        "since": "since must be an ISO 8601 time",
        "until": "until must be an ISO 8601 time",
        "agent": "malformed agent id: expected a UUID",
        "connection": "malformed connection id: expected a UUID",
        "limit": f"limit must be a number from 1 to {PAGE_MAX}",
    }


class AuditActor(ApiResponse):
    type: str = Field(description="agent, key (an API key), session (a signed-in browser) or system.")
    id: str | None = Field(
        description="The agent's or the API key's id (for a session, the key it was opened with)."
    )


class AuditEventOut(ApiResponse):
    id: str = Field(description="The event's id (time-ordered).")
    at: datetime = Field(description="When it happened (UTC, to the millisecond).")
    kind: str = Field(description="What happened: tool.call, action.run, key.create, signin.fail, ...")
    actor: AuditActor = Field(description="Who did it.")
    agent_id: str | None = Field(description="The agent that acted, or the one acted on (agent.*).")
    connection_id: str | None = Field(description="The connection it was about.")
    connector: str | None = Field(description="That connection's (or credential's) connector.")
    action: str | None = Field(description="The tool or action (slack_post_message, tendril_claim_jobs).")
    outcome: str = Field(
        description="ok, or the error code it ended with (not_connected, rate_limited, ...)."
    )
    latency_ms: float | None = Field(description="How long it took, in milliseconds, where timed.")
    detail: dict[str, Any] = Field(
        description="A few facts of the event (the key's id and name, a status move's from and to); "
        "never arguments, results or secrets."
    )

    @classmethod
    def of(cls, event: AuditEvent) -> AuditEventOut:
        def text(value: UUID | None) -> str | None:
            return str(value) if value is not None else None

        return cls(
            id=str(event.id),
            at=event.at,
            kind=event.kind,
            actor=AuditActor(type=event.actor_type, id=text(event.actor_id)),
            agent_id=text(event.agent_id),
            connection_id=text(event.connection_id),
            connector=event.connector,
            action=event.action,
            outcome=event.outcome,
            latency_ms=event.latency_ms,
            detail=dict(event.detail),
        )


class AuditEvents(ApiResponse):
    events: list[AuditEventOut] = Field(description="Newest first.")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last one.")


@api("read", query=AuditEventQuery, response=AuditEvents)
async def list_audit_events(call: Call) -> AuditEvents:
    """List audit events
    The owner's audit trail, newest first: tool calls and action runs (never their arguments or
    results), credential submissions and verifications, OAuth completions and failures, connection
    status changes, key and agent changes, sign-ins. Filter by time, agent, connection and kind;
    page with `cursor`."""
    query: AuditEventQuery = call.query
    page = await call.core.audit.list(
        call.owner_id,
        since=query.since,
        until=query.until,
        agent_id=query.agent,
        connection_id=query.connection,
        kind=query.kind or None,
        limit=query.limit,
        cursor=query.cursor or None,
    )
    return AuditEvents(events=[AuditEventOut.of(e) for e in page.events], next_cursor=page.next_cursor)
