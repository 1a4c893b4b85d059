"""Executions, as the Integration Layer's documentation writes them: `POST /api/v1/workflows/{id}/execute`
`{input}` answered 202 `{executionId, status: "pending", startedAt}` (an `Idempotency-Key` header
returns the same execution for a repeated request), `GET /api/v1/executions/{id}`, cancel with
`POST /api/v1/executions/{id}` `{"action": "cancel"}`, and a list with cursor pages."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal
from uuid import UUID

from pydantic import Field, JsonValue

from server.core.errors import Invalid
from server.core.workflows.executions import PAGE_DEFAULT, PAGE_MAX, ExecutionView, StepView
from server.web.api.endpoint import Answer, ApiRequest, ApiResponse, Call, api, examples
from storage.executions import ExecutionStatus

IDEMPOTENCY_HEADER = "Idempotency-Key"


class ExecuteWorkflow(ApiRequest):
    model_config = examples({"input": {"key": "value"}})
    input: JsonValue = Field(
        None, description="The execution's input, a JSON object (templates read it as input.x)."
    )


class ExecutionStarted(ApiResponse):
    execution_id: str = Field(description="The execution's id (GET /api/v1/executions/{id}).")
    status: str = Field(
        description="pending for a new execution; a repeated Idempotency-Key shows where it is."
    )
    started_at: datetime = Field(description="When it was started.")


@api(
    "execute",
    body=ExecuteWorkflow,
    response=ExecutionStarted,
    ids={"id": "workflow id"},
    success=(202,),
    creates="/executionId",
    collection="/api/v1/executions",
)
async def execute_workflow(call: Call) -> Answer[ExecutionStarted]:
    """Execute a workflow
    Starts an execution with `input` and answers at once; poll GET /api/v1/executions/{id}. Send an
    `Idempotency-Key` header to make the request safe to repeat: the same key (per workflow)
    answers the execution it started, never a second one."""
    body: ExecuteWorkflow = call.body
    key = call.request.headers.get(IDEMPOTENCY_HEADER)
    view = await call.core.executions.start(
        call.owner_id, call.ids["id"], body.input, started_by="api", idempotency_key=key
    )
    return Answer(
        ExecutionStarted(execution_id=str(view.id), status=view.status, started_at=view.started_at), 202
    )


class StepOut(ApiResponse):
    name: str = Field(description="The step's name in the definition.")
    type: str = Field(description="action, http_request, delay or condition.")
    status: str = Field(
        description="pending, running, completed, failed, skipped (a condition skipped it, or the "
        "execution ended before it) or cancelled."
    )
    output: Any = Field(
        None, description="What the step returned (later steps read it as steps.<name>.output)."
    )
    error: dict[str, Any] | None = Field(None, description="{code, message} when the step failed.")
    started_at: datetime | None = Field(None, description="When it started.")
    finished_at: datetime | None = Field(None, description="When it ended.")

    @classmethod
    def of(cls, step: StepView) -> StepOut:
        return cls(
            name=step.name,
            type=step.type,
            status=step.status,
            output=step.output,
            error=step.error,
            started_at=step.started_at,
            finished_at=step.finished_at,
        )


class ExecutionOut(ApiResponse):
    id: str = Field(description="The execution's id.")
    workflow_id: str = Field(description="The workflow it runs.")
    status: str = Field(description="pending, running, completed, failed or cancelled.")
    started_by: str = Field(description="api, agent, event or schedule.")
    agent_id: str | None = Field(None, description="The agent that started it, if one did.")
    trigger_id: str | None = Field(None, description="The trigger that started it, if one did.")
    started_at: datetime = Field(description="When it was started.")
    finished_at: datetime | None = Field(None, description="When it ended.")
    input: Any = Field(None, description="Its input (in a single execution's answer).")
    output: Any = Field(None, description="The output of the last step that ran (when completed).")
    error: dict[str, Any] | None = Field(None, description="{step, code, message} when it failed.")
    steps: list[StepOut] | None = Field(
        None, description="Its steps in order (in a single execution's answer)."
    )

    @classmethod
    def of(cls, view: ExecutionView) -> ExecutionOut:
        return cls(
            id=str(view.id),
            workflow_id=str(view.workflow_id),
            status=view.status,
            started_by=view.started_by,
            agent_id=str(view.agent_id) if view.agent_id else None,
            trigger_id=str(view.trigger_id) if view.trigger_id else None,
            started_at=view.started_at,
            finished_at=view.finished_at,
            input=view.input,
            output=view.output,
            error=view.error,
            steps=[StepOut.of(s) for s in view.steps] if view.steps is not None else None,
        )


class ExecutionQuery(ApiRequest):
    workflow_id: UUID | None = Field(None, description="Only executions of this workflow.")
    status: Literal["pending", "running", "completed", "failed", "cancelled"] | None = Field(
        None, description="Only executions in this status."
    )
    limit: int = Field(
        PAGE_DEFAULT, ge=1, le=PAGE_MAX, description=f"Executions per page, at most {PAGE_MAX}."
    )
    cursor: str | None = Field(None, description="The previous page's nextCursor, for the page after it.")
    field_messages: ClassVar[dict[str, str]] = {
        "workflowId": "malformed workflowId: expected a UUID",
        "workflow_id": "malformed workflowId: expected a UUID",
        "status": "status must be one of " + ", ".join(ExecutionStatus.ALL),
        "limit": f"limit must be a number from 1 to {PAGE_MAX}",
    }


class ExecutionList(ApiResponse):
    executions: list[ExecutionOut] = Field(description="Newest first (without input, output and steps).")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last one.")


@api("read", query=ExecutionQuery, response=ExecutionList)
async def list_executions(call: Call) -> ExecutionList:
    """List executions
    The owner's executions, newest first; filter by workflowId and status, page with cursor."""
    query: ExecutionQuery = call.query
    page = await call.core.executions.list(
        call.owner_id,
        workflow_id=query.workflow_id,
        status=query.status,
        limit=query.limit,
        cursor=query.cursor or None,
    )
    return ExecutionList(
        executions=[ExecutionOut.of(v) for v in page.executions], next_cursor=page.next_cursor
    )


@api("read", response=ExecutionOut, ids={"id": "execution id"})
async def get_execution(call: Call) -> ExecutionOut:
    """Get an execution
    Its status, input, output or error, timings, and each step's status, output, error and timings."""
    return ExecutionOut.of(await call.core.executions.get(call.owner_id, call.ids["id"]))


class ExecutionAction(ApiRequest):
    model_config = examples({"action": "cancel"})
    action: str | None = Field(None, description="cancel")
    field_messages: ClassVar[dict[str, str]] = {"action": "action must be a string"}


@api("execute", body=ExecutionAction, response=ExecutionOut, ids={"id": "execution id"})
async def act_on_execution(call: Call) -> ExecutionOut:
    """Cancel an execution
    `{"action": "cancel"}`: it runs no further step (a step in progress ends first); a finished
    execution stays as it ended."""
    body: ExecutionAction = call.body
    if body.action != "cancel":
        raise Invalid('action must be "cancel"', field="action")
    return ExecutionOut.of(await call.core.executions.cancel(call.owner_id, call.ids["id"]))
