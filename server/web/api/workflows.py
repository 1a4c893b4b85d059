"""/api/v1/workflows: the owner's workflow definitions, as the Integration Layer's documentation
writes them (a list is a JSON array of summaries; one workflow comes with its definition)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar
from urllib.parse import urlencode

from pydantic import Field, JsonValue, RootModel, WithJsonSchema

from server.core.workflows.definition import (
    HTTP_METHODS,
    MAX_DELAY_SECONDS,
    MAX_STEPS,
    STEP_NAME,
    STEP_TYPES,
)
from server.core.workflows.service import PAGE_DEFAULT, PAGE_MAX
from server.web.api.endpoint import Answer, ApiRequest, ApiResponse, Call, Deleted, api, examples
from storage.workflows import WorkflowRecord

WORKFLOW_ID = "workflow id"
_DEFINITION = 'definition must be an object {"steps": [{"name", "type", "config"}, ...]}'

# The definition is checked whole by the core, which names the step at fault; the request model
# takes any JSON object so that those messages, not generic ones, reach the caller. This schema
# is what the OpenAPI document shows.
_STEP_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name", "type"],
    "properties": {
        "name": {
            "type": "string",
            "pattern": STEP_NAME.pattern,
            "description": "Unique in the workflow; later steps read its output as steps.<name>.output.",
        },
        "type": {"type": "string", "enum": list(STEP_TYPES)},
        "config": {
            "type": "object",
            "additionalProperties": True,
            "description": "action: {connectionId | connector (+ label), action, parameters}; "
            f"http_request: {{method ({', '.join(HTTP_METHODS)}), url, headers?, body?}}; "
            f"delay: {{seconds}} (at most {MAX_DELAY_SECONDS}); "
            'condition: {if: <expression>, else?: "stop" | "skip", skip?: [<later step names>]}. '
            "Strings may hold templates: {{ input.x }}, {{ steps.<earlier step>.output... }}.",
        },
    },
}
DEFINITION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["steps"],
    "properties": {"steps": {"type": "array", "minItems": 1, "maxItems": MAX_STEPS, "items": _STEP_SCHEMA}},
}
DefinitionJson = Annotated[dict[str, JsonValue], WithJsonSchema(DEFINITION_SCHEMA)]

_EXAMPLE_DEFINITION = {
    "steps": [
        {
            "name": "step1",
            "type": "http_request",
            "config": {"method": "GET", "url": "https://api.example.com/data"},
        }
    ]
}


class WorkflowSummary(ApiResponse):
    id: str = Field(description="The workflow's id.")
    name: str = Field(description="Its name.")
    description: str | None = Field(description="What it does.")
    is_public: bool = Field(description="Offered to the owner's agents (those allowed all its connectors).")
    created_at: datetime = Field(description="When it was made.")
    updated_at: datetime = Field(description="When it last changed.")

    @classmethod
    def of(cls, record: WorkflowRecord) -> WorkflowSummary:
        return cls(
            id=str(record.id),
            name=record.name,
            description=record.description,
            is_public=record.is_public,
            created_at=record.created_at,
            updated_at=record.updated_at,
        )


class WorkflowOut(WorkflowSummary):
    definition: DefinitionJson = Field(description="Its steps, run in order.")

    @classmethod
    def of(cls, record: WorkflowRecord) -> WorkflowOut:
        return cls(**WorkflowSummary.of(record).model_dump(), definition=dict(record.definition))


class WorkflowList(RootModel[list[WorkflowSummary]]):
    pass


class WorkflowListQuery(ApiRequest):
    limit: int = Field(
        PAGE_DEFAULT, ge=1, le=PAGE_MAX, description=f"Workflows per page, at most {PAGE_MAX}."
    )
    cursor: str | None = Field(None, description="Where the next page starts (from the Link header's next).")
    field_messages: ClassVar[dict[str, str]] = {"limit": f"limit must be a number from 1 to {PAGE_MAX}"}


class NewWorkflow(ApiRequest):
    model_config = examples(
        {
            "name": "New Workflow",
            "description": "Optional description",
            "definition": _EXAMPLE_DEFINITION,
            "isPublic": False,
        }
    )
    name: str = Field(description="A name for it.")
    description: str | None = Field(None, description="What it does.")
    definition: DefinitionJson = Field(description="Its steps, checked whole: a bad step is a 400 naming it.")
    is_public: bool = Field(False, description="Offer it to the owner's agents allowed all its connectors.")
    field_messages: ClassVar[dict[str, str]] = {
        "name": "name must be a string",
        "description": "description must be a string",
        "definition": _DEFINITION,
        "isPublic": "isPublic must be true or false",
    }


class WorkflowChanges(ApiRequest, extra="forbid"):
    model_config = examples({"isPublic": True}, {"name": "Renamed", "definition": _EXAMPLE_DEFINITION})
    name: str | None = Field(None, description="A new name.")
    description: str | None = Field(None, description="A new description.")
    is_public: bool | None = Field(None, description="Offer it to agents, or stop.")
    definition: DefinitionJson | None = Field(None, description="New steps (replace the old; checked whole).")
    field_messages: ClassVar[dict[str, str]] = NewWorkflow.field_messages
    takes: ClassVar[str] = "PATCH takes name, description, isPublic and definition"


# -- routes --------------------------------------------------------------------------------------
@api("write", body=NewWorkflow, response=WorkflowOut, success=(201,), creates="/id")
async def create_workflow(call: Call) -> Answer[WorkflowOut]:
    """Create a workflow
    Its definition is checked whole (step types, names, templates referring only to earlier steps,
    connectors and actions, URLs); a bad one is a 400 naming the step, with `field` pointing at it."""
    body: NewWorkflow = call.body
    record = await call.core.workflows.create(
        call.owner_id,
        name=body.name,
        description=body.description,
        definition=body.definition,
        is_public=body.is_public,
    )
    return Answer(WorkflowOut.of(record), 201)


@api("read", query=WorkflowListQuery, response=WorkflowList)
async def list_workflows(call: Call) -> WorkflowList | Answer[WorkflowList]:
    """List workflows
    A JSON array of the owner's workflows (without definitions), newest first. Past `limit`, a
    `Link: <...>; rel="next"` header gives the next page."""
    query: WorkflowListQuery = call.query
    page = await call.core.workflows.list(call.owner_id, limit=query.limit, cursor=query.cursor or None)
    listed = WorkflowList([WorkflowSummary.of(r) for r in page.workflows])
    if page.next_cursor is None:
        return listed
    following = f"{call.request.url.path}?{urlencode({'limit': query.limit, 'cursor': page.next_cursor})}"
    return Answer(listed, headers={"Link": f'<{following}>; rel="next"'})


@api("read", response=WorkflowOut, ids={"id": WORKFLOW_ID})
async def get_workflow(call: Call) -> WorkflowOut:
    """Get a workflow
    With its definition."""
    return WorkflowOut.of(await call.core.workflows.get(call.owner_id, call.ids["id"]))


@api("write", body=WorkflowChanges, response=WorkflowOut, ids={"id": WORKFLOW_ID})
async def update_workflow(call: Call) -> WorkflowOut:
    """Change a workflow
    Any of name, description, isPublic and definition; a new definition replaces the old and is
    checked whole."""
    body: WorkflowChanges = call.body
    record = await call.core.workflows.update(
        call.owner_id,
        call.ids["id"],
        name=body.name,
        description=body.description,
        is_public=body.is_public,
        definition=body.definition,
    )
    return WorkflowOut.of(record)


@api("write", response=Deleted, ids={"id": WORKFLOW_ID})
async def delete_workflow(call: Call) -> Deleted:
    """Delete a workflow
    It is no longer listed, run or offered to agents; its executions are kept."""
    await call.core.workflows.delete(call.owner_id, call.ids["id"])
    return Deleted(deleted=True)
