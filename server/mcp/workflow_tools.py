"""Agents and workflows over MCP: tools to list the workflows an agent may run, start one with
input, and read an execution, plus a subscribable resource per execution.

Which workflows: `Workflows.runnable_by`, the owner's public workflows whose every connector is
on the agent's allowedConnectors; any other (private, another owner's, one using a connector the
agent may not use) is neither listed nor startable, and answers exactly like one that does not
exist. Which executions: only those the agent started itself (started_by "agent" with its id), of
its own owner. Executions started over REST, by triggers or by another agent are the owner's
business and not found for it, as is anything of another owner's.

The resource `tendril://executions/{id}` reads as the execution (status, steps, output, error);
subscribers hear `notifications/resources/updated` when it ends (completed or failed), on every
replica (server/core/events.py carries it). The three tools (and the resource template) are
listed for an agent that may run at least one workflow (a query per tools/list); calls are
answered whatever the list shows, and a call for a workflow the agent may not run is refused as
not found.
"""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

import mcp_types as types
from mcp.shared.exceptions import MCPError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from connectors import Hints
from connectors.errors import InvalidInput
from server.core.errors import NotFound
from server.core.workflows.executions import Executions, ExecutionView
from server.core.workflows.service import Workflows
from server.mcp import definitions, errors
from server.mcp.caller import Caller
from server.mcp.errors import RESOURCE_NOT_FOUND

LIST_TOOL, RUN_TOOL, GET_TOOL = "tendril_list_workflows", "tendril_run_workflow", "tendril_get_execution"
WORKFLOW_TOOLS = (LIST_TOOL, RUN_TOOL, GET_TOOL)
EXECUTION_PREFIX = "tendril://executions/"
EXECUTION_TEMPLATE = EXECUTION_PREFIX + "{execution}"


def execution_uri(execution_id: UUID) -> str:
    return f"{EXECUTION_PREFIX}{execution_id}"


class ListWorkflowsInput(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RunWorkflowInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    workflow_id: str = Field(description="Id of a workflow from tendril_list_workflows.")
    input: dict[str, Any] | None = Field(
        None, description="The execution's input, a JSON object (its steps read it as input.<name>)."
    )
    idempotency_key: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="Send the same key again to get the execution it started instead of a second one.",
    )


class GetExecutionInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    execution_id: str = Field(description="Id of an execution you started (tendril_run_workflow).")


def _tool(name: str, title: str, description: str, model: type[BaseModel], hints: Hints) -> types.Tool:
    schema = dict(definitions.schema(model))
    schema.pop("title", None)
    return definitions.tool(name, title, description, input_schema=schema, hints=hints)


DEFINITIONS = [
    _tool(
        LIST_TOOL,
        "List workflows",
        "The workflows you may run: each with its id, name, description, and its steps' names and types.",
        ListWorkflowsInput,
        Hints(read_only=True, open_world=False),
    ),
    _tool(
        RUN_TOOL,
        "Run a workflow",
        "Start one of your workflows with input; answers at once with the execution's id and its "
        "resource URI. Read it with tendril_get_execution, or subscribe to the resource to hear when "
        "it ends.",
        RunWorkflowInput,
        Hints(destructive=True, open_world=True),
    ),
    _tool(
        GET_TOOL,
        "Get an execution",
        "Status (pending, running, completed, failed, cancelled), each step's status, output and "
        "error, and the output of an execution you started.",
        GetExecutionInput,
        Hints(read_only=True, open_world=False),
    ),
]


def execution_json(view: ExecutionView) -> dict[str, Any]:
    """What an agent sees of an execution it started."""
    return {
        "executionId": str(view.id),
        "workflowId": str(view.workflow_id),
        "status": view.status,
        "startedAt": view.started_at.isoformat(),
        "finishedAt": view.finished_at.isoformat() if view.finished_at else None,
        "input": view.input,
        "output": view.output,
        "error": view.error,
        "steps": [
            {
                "name": s.name,
                "type": s.type,
                "status": s.status,
                "output": s.output,
                "error": s.error,
                "startedAt": s.started_at.isoformat() if s.started_at else None,
                "finishedAt": s.finished_at.isoformat() if s.finished_at else None,
            }
            for s in view.steps or []
        ],
        "resource": execution_uri(view.id),
    }


def _uuid(value: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        return UUID(int=0)  # matches nothing: answered as not found


class WorkflowTools:
    def __init__(self, workflows: Workflows, executions: Executions) -> None:
        self._workflows = workflows
        self._executions = executions

    async def listed(self, caller: Caller) -> bool:
        """Whether the tools and the execution template are shown: the agent may run some workflow."""
        return bool(await self._workflows.runnable_by(caller))

    async def definitions(self, caller: Caller) -> list[types.Tool]:
        """Listed for an agent that may run some workflow (calls are answered whatever the list)."""
        return DEFINITIONS if await self.listed(caller) else []

    def offers(self, caller: Caller, name: str) -> bool:
        return name in WORKFLOW_TOOLS

    async def call(self, caller: Caller, name: str, arguments: dict[str, Any]) -> types.CallToolResult:
        try:
            if name == LIST_TOOL:
                ListWorkflowsInput.model_validate(arguments)
                return errors.tool_success({"workflows": await self._listed(caller)})
            if name == RUN_TOOL:
                run = RunWorkflowInput.model_validate(arguments)
                record = await self._workflows.runnable(caller, _uuid(run.workflow_id))
                view = await self._executions.start(
                    caller.owner_id,
                    record.id,
                    run.input or {},
                    started_by="agent",
                    agent=caller,
                    idempotency_key=f"agent:{caller.agent_id}:{run.idempotency_key}"
                    if run.idempotency_key
                    else None,
                )
                return errors.tool_success(
                    {
                        "executionId": str(view.id),
                        "status": view.status,
                        "startedAt": view.started_at.isoformat(),
                        "resource": execution_uri(view.id),
                    }
                )
            wanted = GetExecutionInput.model_validate(arguments)
            return errors.tool_success(
                execution_json(await self.execution(caller, _uuid(wanted.execution_id)))
            )
        except ValidationError as exc:
            return errors.tool_failure(InvalidInput.from_validation(exc), name)
        except Exception as exc:
            return errors.tool_failure(exc, name)

    async def _listed(self, caller: Caller) -> list[dict[str, Any]]:
        return [
            {
                "id": str(record.id),
                "name": record.name,
                "description": record.description,
                "steps": [
                    {"name": step.get("name"), "type": step.get("type")}
                    for step in record.definition.get("steps", [])
                ],
            }
            for record in await self._workflows.runnable_by(caller)
        ]

    async def execution(self, caller: Caller, execution_id: UUID) -> ExecutionView:
        """An execution the caller started; not found otherwise (whoever's it is)."""
        view = await self._executions.get(caller.owner_id, execution_id)
        if view.agent_id != caller.agent_id:
            raise NotFound("execution not found")
        return view

    # -- the execution resource ---------------------------------------------------------------------
    def template(self) -> types.ResourceTemplate:
        return types.ResourceTemplate(
            uri_template=EXECUTION_TEMPLATE,
            name="execution",
            title="A workflow execution you started",
            mime_type="application/json",
            description="Status, steps, output and error; subscribe to hear when it ends.",
        )

    async def readable(self, caller: Caller, uri: str) -> ExecutionView:
        """The execution `uri` names, if the caller started it; RESOURCE_NOT_FOUND otherwise."""
        try:
            return await self.execution(caller, UUID(uri.removeprefix(EXECUTION_PREFIX)))
        except (ValueError, NotFound):
            raise MCPError(RESOURCE_NOT_FOUND, f"unknown resource {uri}") from None

    async def read(self, caller: Caller, uri: str) -> types.ReadResourceResult:
        view = await self.readable(caller, uri)
        text = json.dumps(execution_json(view), ensure_ascii=False, default=str)
        return types.ReadResourceResult(
            contents=[types.TextResourceContents(uri=uri, mime_type="application/json", text=text)]
        )
