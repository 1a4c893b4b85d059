"""Executions of the owners' workflows: started, read, listed and cancelled for an owner.

An execution's id is its DBOS workflow id. Tendril's `workflow_executions` row says whose it is,
what started it, the idempotency key it was started with, and a copy of its status for listing;
DBOS keeps its input, each step's output or error and timings (engine.py runs it).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

from server.core.audit import current_actor
from server.core.errors import Invalid, NotFound
from server.core.identity import AgentPrincipal
from server.core.paging import cursor_of, id_after
from server.core.workflows.engine import StepFailed, SystemDatabase, WorkflowEngine
from server.core.workflows.steps import Steps
from storage.executions import ExecutionRecord, ExecutionStatus, ExecutionStore
from storage.repositories import Clock
from storage.schema import time_ordered_id

logger = logging.getLogger(__name__)

StartedBy = Literal["api", "agent", "event", "schedule"]
STARTED_BY: tuple[str, ...] = ("api", "agent", "event", "schedule")
PAGE_DEFAULT, PAGE_MAX = 50, 500
IDEMPOTENCY_KEY_MAX = 255
Status = ExecutionStatus


@dataclass(frozen=True, slots=True)
class FinishedExecution:
    """What on_finished listeners hear: an execution that completed or failed."""

    owner_id: UUID
    workflow_id: UUID
    execution_id: UUID
    status: str  # completed or failed
    output: Any
    error: dict[str, Any] | None


FinishedListener = Callable[[FinishedExecution], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class StepView:
    name: str
    type: str
    # pending, running, completed, failed, skipped (not run: a condition, or the execution
    # failed or stopped before it) or cancelled.
    status: str
    output: Any = None
    error: dict[str, Any] | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ExecutionView:
    id: UUID
    owner_id: UUID
    workflow_id: UUID
    status: str
    started_by: str
    started_at: datetime
    finished_at: datetime | None = None
    agent_id: UUID | None = None
    trigger_id: UUID | None = None
    idempotency_key: str | None = None
    input: Any = None
    output: Any = None
    error: dict[str, Any] | None = None
    # The steps, in the definition's order (None in lists: read one execution for them).
    steps: list[StepView] | None = None


@dataclass(frozen=True, slots=True)
class ExecutionPage:
    executions: list[ExecutionView]
    next_cursor: str | None = None


def _view(record: ExecutionRecord, **more: Any) -> ExecutionView:
    fields: dict[str, Any] = {
        "id": record.id,
        "owner_id": record.owner_id,
        "workflow_id": record.workflow_id,
        "status": record.status,
        "started_by": record.started_by,
        "started_at": record.created_at,
        "finished_at": record.finished_at,
        "agent_id": record.agent_id,
        "trigger_id": record.trigger_id,
        "idempotency_key": record.idempotency_key,
    }
    return ExecutionView(**{**fields, **more})


def _time(epoch_ms: int | None) -> datetime | None:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC) if epoch_ms is not None else None


def _error(error: BaseException | None) -> dict[str, Any] | None:
    if error is None:
        return None
    if isinstance(error, StepFailed):
        return {"code": error.code, "message": error.message}
    return {"code": "internal_error", "message": str(error) or type(error).__name__}


@dataclass
class _Listeners:
    finished: list[FinishedListener] = field(default_factory=list[FinishedListener])


class Executions:
    def __init__(
        self, *, store: ExecutionStore, steps: Steps, database: SystemDatabase, clock: Clock
    ) -> None:
        self._store = store
        self._steps = steps
        self._clock = clock
        self._listeners = _Listeners()
        self.engine = WorkflowEngine(database, runner=self)

    def on_finished(self, listener: FinishedListener) -> None:
        """Call `listener` when an execution completes or fails (from inside the execution, after
        its last step). A crash before DBOS records the end calls it again when the execution is
        recovered, so a listener must be idempotent (outgoing webhooks dedupe on the execution id).
        A cancelled execution runs nothing more, so it is not announced."""
        self._listeners.finished.append(listener)

    # -- lifecycle -----------------------------------------------------------------------------------
    async def resume(self) -> None:
        """At start: launch the engine now if some execution has not finished (DBOS recovers those
        at launch); otherwise it starts with the first execution."""
        if await self._store.any_unfinished():
            await self.engine.ensure_running()

    async def aclose(self) -> None:
        await self.engine.stop()

    # -- the use cases ----------------------------------------------------------------------------------
    async def start(
        self,
        owner_id: UUID,
        workflow_id: UUID,
        input: Any,
        *,
        started_by: StartedBy,
        agent: AgentPrincipal | None = None,
        trigger_id: UUID | None = None,
        idempotency_key: str | None = None,
    ) -> ExecutionView:
        """Start one of the owner's workflows with `input` (a JSON object). A repeated idempotency
        key (per owner and workflow) returns the execution it started, never a second one."""
        if started_by not in STARTED_BY:
            raise Invalid(f"started_by must be one of {', '.join(STARTED_BY)}")
        if input is None:
            input = {}
        if not isinstance(input, dict):
            raise Invalid("input must be a JSON object", field="input")
        if idempotency_key is not None and not 0 < len(idempotency_key) <= IDEMPOTENCY_KEY_MAX:
            raise Invalid(
                f"an idempotency key is 1 to {IDEMPOTENCY_KEY_MAX} characters", field="Idempotency-Key"
            )
        record = ExecutionRecord(
            id=time_ordered_id(),
            owner_id=owner_id,
            workflow_id=workflow_id,
            started_by=started_by,
            status=Status.PENDING,
            created_at=self._clock(),
            agent_id=agent.agent_id if agent else None,
            trigger_id=trigger_id,
            idempotency_key=idempotency_key,
        )
        try:
            record, added, definition = await self._store.add(record)
        except LookupError:
            raise NotFound("workflow not found") from None
        steps: list[Mapping[str, Any]] = definition.get("steps") or []  # checked when it was saved
        if added or record.status == Status.PENDING:
            # A repeated key whose first start was cut short starts it now (DBOS ignores an id it knows).
            actor = current_actor()
            spec = {
                "ownerId": str(owner_id),
                "workflowId": str(workflow_id),
                "startedBy": record.started_by,
                "agentId": str(record.agent_id) if record.agent_id else None,
                "actor": {"type": actor.type, "id": str(actor.id) if actor.id else None},
                "input": input,
                "steps": [dict(step) for step in steps],
            }
            await self.engine.start(record.id, spec, fresh=added)
        return _view(record, input=input if added else None)

    async def get(self, owner_id: UUID, execution_id: UUID) -> ExecutionView:
        """One of the owner's executions with its steps (another owner's is NotFound)."""
        record = await self._store.get(owner_id, execution_id)
        if record is None:
            raise NotFound("execution not found")
        state = await self.engine.status(record.id)
        if state is None:
            return _view(record)
        status, result = record.status, state.output if isinstance(state.output, dict) else {}
        error: dict[str, Any] | None = result.get("error")
        if state.status == "CANCELLED":
            status = Status.CANCELLED
        elif state.status == "PENDING" and status == Status.PENDING:
            status = Status.RUNNING  # DBOS runs it (Tendril's copy says so after a moment)
        elif state.status in ("ERROR", "MAX_RECOVERY_ATTEMPTS_EXCEEDED") and status in Status.UNFINISHED:
            status, error = (
                Status.FAILED,
                _error(state.error) or {"code": "internal_error", "message": "failed"},
            )
        spec: Mapping[str, Any] = (state.input or {}).get("args", [{}])[0] if state.input else {}
        infos = await self.engine.steps(record.id)
        return _view(
            record,
            status=status,
            input=spec.get("input"),
            output=result.get("output"),
            error=error,
            steps=_step_views(spec.get("steps") or [], infos, status),
        )

    async def list(
        self,
        owner_id: UUID,
        *,
        workflow_id: UUID | None = None,
        status: str | None = None,
        limit: int = PAGE_DEFAULT,
        cursor: str | None = None,
    ) -> ExecutionPage:
        """A page of the owner's executions, newest first, of one workflow and in one status."""
        if not 1 <= limit <= PAGE_MAX:
            raise Invalid(f"limit must be between 1 and {PAGE_MAX}", field="limit")
        if status is not None and status not in Status.ALL:
            raise Invalid(f"status must be one of {', '.join(Status.ALL)}", field="status")
        records = await self._store.page(
            owner_id,
            limit=limit + 1,
            workflow_id=workflow_id,
            status=status,
            before=id_after(cursor) if cursor else None,
        )
        shown = records[:limit]
        return ExecutionPage(
            [_view(r) for r in shown], cursor_of(shown[-1].id) if len(records) > limit else None
        )

    async def cancel(self, owner_id: UUID, execution_id: UUID) -> ExecutionView:
        """Cancel one of the owner's executions: it runs no further step (one in progress ends
        first). A finished execution stays as it ended."""
        record = await self._store.get(owner_id, execution_id)
        if record is None:
            raise NotFound("execution not found")
        if record.status in Status.UNFINISHED:
            await self.engine.cancel(record.id)
            state = await self.engine.status(record.id)
            if state is None or state.status == "CANCELLED":
                await self._store.move(record.id, Status.CANCELLED, finished=True)
        return await self.get(owner_id, execution_id)

    # -- what the engine asks while an execution runs (engine.StepRunner) ----------------------------------
    async def run_step(
        self, spec: Mapping[str, Any], step: Mapping[str, Any], context: Mapping[str, Any], key: str
    ) -> Any:
        return await self._steps.run(spec, step, context, key)

    def delay_seconds(self, step: Mapping[str, Any], context: Mapping[str, Any]) -> float:
        return self._steps.delay_seconds(step, context)

    async def started(self, execution_id: UUID) -> None:
        await self._store.move(execution_id, Status.RUNNING, only_from=(Status.PENDING,))

    async def finished(self, execution_id: UUID, spec: Mapping[str, Any], result: Mapping[str, Any]) -> None:
        status = str(result["status"])
        await self._store.move(execution_id, status, finished=True)
        finished = FinishedExecution(
            owner_id=UUID(spec["ownerId"]),
            workflow_id=UUID(spec["workflowId"]),
            execution_id=execution_id,
            status=status,
            output=result.get("output"),
            error=result.get("error"),
        )
        for listener in self._listeners.finished:
            try:
                await listener(finished)
            except Exception:
                logger.exception("an on_finished listener failed for execution %s", execution_id)


def _step_views(
    steps: Sequence[Mapping[str, Any]], infos: Sequence[Mapping[str, Any]], status: str
) -> list[StepView]:
    """The definition's steps with what DBOS recorded of them (by name; a delay's start is its
    durable sleep's), in order."""
    recorded: dict[str, tuple[Mapping[str, Any], int | None]] = {}
    slept_from: int | None = None
    for info in infos:
        if info["function_name"] == "DBOS.sleep":
            slept_from = info["started_at_epoch_ms"]
            continue
        recorded[info["function_name"]] = (info, slept_from)
        slept_from = None
    views: list[StepView] = []
    skipped: set[str] = set()
    stopped = running_shown = False
    for step in steps:
        name, kind = str(step.get("name")), str(step.get("type"))
        if stopped or name in skipped:
            views.append(StepView(name, kind, "skipped"))
            continue
        found = recorded.get(name)
        if found is None:
            if status == Status.RUNNING and not running_shown:
                running_shown = True
                started = _time(slept_from) if kind == "delay" else None
                views.append(StepView(name, kind, "running", started_at=started))
            elif status in Status.UNFINISHED:
                views.append(StepView(name, kind, "pending"))
            else:
                views.append(StepView(name, kind, "cancelled" if status == Status.CANCELLED else "skipped"))
            continue
        info, sleep_start = found
        started_at = _time(sleep_start if sleep_start is not None else info["started_at_epoch_ms"])
        finished_at = _time(info["completed_at_epoch_ms"])
        if info["error"] is not None:
            stopped = True
            views.append(StepView(name, kind, "failed", None, _error(info["error"]), started_at, finished_at))
            continue
        output = info["output"]
        if kind == "condition" and isinstance(output, dict):
            stopped = output.get("then") == "stop"
            if output.get("then") == "skip":
                skipped.update(str(n) for n in output.get("skip") or [])
        views.append(StepView(name, kind, "completed", output, None, started_at, finished_at))
    return views
