"""/api/v1/workflows/{id}/triggers: what starts a workflow besides a request, a provider event (a
webhook endpoint's normalised event key) or a cron schedule (server/core/workflows/triggers.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import Field, JsonValue

from server.web.api.endpoint import Answer, ApiRequest, ApiResponse, Call, Deleted, api, examples
from storage.workflow_triggers import TriggerRecord

IDS = {"id": "workflow id"}
ONE = {"id": "workflow id", "triggerId": "trigger id"}
_EVENT_KEY = (
    "event: the normalised event key that starts it (github.issues.opened, stripe.invoice.paid, "
    "slack.app_mention, ...), or a prefix ending in .* (github.issues.*)."
)
_ENDPOINT = "event: only events arriving at this webhook endpoint of yours; null or absent: any."
_CRON = (
    "schedule: a cron expression, 5 fields (minute hour day month weekday) or 6 with seconds first "
    "(*/30 * * * * * is every 30 seconds)."
)
_TIMEZONE = "schedule: the IANA time zone the cron expression is read in (Europe/Paris); UTC when absent."
_INPUT = "schedule: the input of every run (a JSON object); an event's input is the event's payload."
_MESSAGES: dict[str, str] = {
    "kind": "kind must be event or schedule",
    "eventKey": "eventKey must be a string",
    "endpointId": "endpointId must be a webhook endpoint's id",
    "cron": "cron must be a string",
    "timezone": "timezone must be a string",
    "input": "input must be a JSON object",
    "active": "active must be true or false",
}


class TriggerOut(ApiResponse):
    id: str = Field(description="The trigger's id.")
    workflow_id: str = Field(description="The workflow it starts.")
    kind: str = Field(description="event or schedule.")
    event_key: str | None = Field(None, description=_EVENT_KEY)
    endpoint_id: str | None = Field(None, description=_ENDPOINT)
    cron: str | None = Field(None, description=_CRON)
    timezone: str | None = Field(None, description=_TIMEZONE)
    input: dict[str, Any] | None = Field(None, description=_INPUT)
    active: bool = Field(description="Whether it starts anything; an inactive trigger is kept but idle.")
    created_at: datetime = Field(description="When it was made.")
    updated_at: datetime = Field(description="When it last changed.")

    @classmethod
    def of(cls, record: TriggerRecord) -> TriggerOut:
        return cls(
            id=str(record.id),
            workflow_id=str(record.workflow_id),
            kind=record.kind,
            event_key=record.event_key,
            endpoint_id=str(record.endpoint_id) if record.endpoint_id else None,
            cron=record.cron,
            timezone=record.timezone,
            input=record.input,
            active=record.active,
            created_at=record.created_at,
            updated_at=record.updated_at,
        )


class TriggerList(ApiResponse):
    triggers: list[TriggerOut] = Field(description="The workflow's triggers, oldest first.")


class NewTrigger(ApiRequest):
    model_config = examples(
        {"kind": "event", "eventKey": "github.issues.opened"},
        {"kind": "schedule", "cron": "0 9 * * 1-5", "timezone": "Europe/Paris", "input": {"report": "daily"}},
    )
    kind: Literal["event", "schedule"] = Field(description="event or schedule.")
    event_key: str | None = Field(None, description=_EVENT_KEY)
    endpoint_id: str | None = Field(None, description=_ENDPOINT)
    cron: str | None = Field(None, description=_CRON)
    timezone: str | None = Field(None, description=_TIMEZONE)
    input: dict[str, JsonValue] | None = Field(None, description=_INPUT)
    active: bool = Field(True, description="Start idle with false.")
    field_messages: ClassVar[dict[str, str]] = _MESSAGES


class TriggerChanges(ApiRequest, extra="forbid"):
    model_config = examples({"active": False}, {"cron": "*/5 * * * *"})
    event_key: str | None = Field(None, description=_EVENT_KEY)
    endpoint_id: str | None = Field(None, description=_ENDPOINT + " Null: any endpoint.")
    cron: str | None = Field(None, description=_CRON)
    timezone: str | None = Field(None, description=_TIMEZONE + " Null: UTC.")
    input: dict[str, JsonValue] | None = Field(None, description=_INPUT + " Null: no input.")
    active: bool | None = Field(None, description="Pause (false) or resume (true) it.")
    field_messages: ClassVar[dict[str, str]] = _MESSAGES
    takes: ClassVar[str] = "PATCH takes eventKey, endpointId, cron, timezone, input and active"


# -- routes --------------------------------------------------------------------------------------
@api("write", body=NewTrigger, response=TriggerOut, ids=IDS, success=(201,), errors=(404,), creates="/id")
async def create_trigger(call: Call) -> Answer[TriggerOut]:
    """Add a trigger to a workflow
    `{"kind": "event", "eventKey": "github.issues.opened", "endpointId"?}`: each new delivery with
    that event key (at that endpoint, or any of yours) starts one execution with the event's payload
    as input; a provider's retry of the same delivery starts none. `{"kind": "schedule", "cron",
    "timezone"?, "input"?}`: one execution per tick, whatever the number of replicas. A bad cron
    expression or time zone is a 400 naming it; an endpoint that is not yours is a 404."""
    body: NewTrigger = call.body
    fields = body.model_dump(by_alias=True, exclude_unset=True)
    fields["kind"] = body.kind
    record = await call.core.triggers.create(call.owner_id, call.ids["id"], fields)
    return Answer(TriggerOut.of(record), 201)


@api("read", response=TriggerList, ids=IDS)
async def list_triggers(call: Call) -> TriggerList:
    """List a workflow's triggers
    Its event and schedule triggers, oldest first."""
    records = await call.core.triggers.list(call.owner_id, call.ids["id"])
    return TriggerList(triggers=[TriggerOut.of(r) for r in records])


@api("read", response=TriggerOut, ids=ONE)
async def get_trigger(call: Call) -> TriggerOut:
    """Get a trigger"""
    return TriggerOut.of(await call.core.triggers.get(call.owner_id, call.ids["id"], call.ids["triggerId"]))


@api("write", body=TriggerChanges, response=TriggerOut, ids=ONE, errors=(404,))
async def update_trigger(call: Call) -> TriggerOut:
    """Change a trigger
    Any of its fields but kind; `active: false` pauses it (a schedule stops ticking), `true`
    resumes it. Checked as on creation."""
    body: TriggerChanges = call.body
    changes = body.model_dump(by_alias=True, exclude_unset=True)
    record = await call.core.triggers.update(call.owner_id, call.ids["id"], call.ids["triggerId"], changes)
    return TriggerOut.of(record)


@api("write", response=Deleted, ids=ONE)
async def delete_trigger(call: Call) -> Deleted:
    """Delete a trigger
    It starts nothing more (a schedule stops); the executions it started are kept."""
    await call.core.triggers.delete(call.owner_id, call.ids["id"], call.ids["triggerId"])
    return Deleted(deleted=True)
