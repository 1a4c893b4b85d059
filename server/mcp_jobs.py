"""Agents working through their webhook jobs over MCP: a subscribable resource listing the calling
agent's pending jobs, and tools to claim (with a lease), complete and fail them. An agent only
ever sees its own jobs, and only for providers it still allows."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from uuid import UUID

import mcp_types as types
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from connectors.errors import InvalidInput
from server import errors
from server.hub import Hub
from server.webhooks import render_job
from storage.jobs import JobRecord, JobStatus

if TYPE_CHECKING:
    from server.mcp_app import Caller

CLAIM_TOOL, COMPLETE_TOOL, FAIL_TOOL = "tendril_claim_jobs", "tendril_complete_job", "tendril_fail_job"
JOB_TOOLS = (CLAIM_TOOL, COMPLETE_TOOL, FAIL_TOOL)


def pending_uri(agent_id: UUID) -> str:
    return f"tendril://jobs/{agent_id}/pending"


class ClaimJobsInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: int = Field(1, ge=1, le=50, description="Most jobs to claim at once, oldest first.")
    lease_seconds: int = Field(
        300, ge=10, le=3600, description="How long the jobs stay yours; unfinished ones come back after it."
    )


class CompleteJobInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    job_id: str = Field(description="Id of a job you claimed.")
    result: dict[str, Any] | None = Field(None, description="What you did, kept with the job for the owner.")


class FailJobInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    job_id: str = Field(description="Id of a job you claimed.")
    error: str = Field(min_length=1, max_length=2000, description="Why it failed, shown to the owner.")
    retry: bool = Field(
        True, description="Try again later (with backoff) while attempts remain; false: give up now."
    )


def _tool(name: str, title: str, description: str, model: type[BaseModel], *, read_only: bool) -> types.Tool:
    schema = model.model_json_schema()
    schema.pop("title", None)
    return types.Tool(
        name=name,
        title=title,
        description=description,
        input_schema=schema,
        annotations=types.ToolAnnotations(
            title=title,
            read_only_hint=read_only,
            destructive_hint=False,
            idempotent_hint=False,
            open_world_hint=False,
        ),
    )


JOB_TOOL_DEFINITIONS = [
    _tool(
        CLAIM_TOOL,
        "Claim webhook jobs",
        "Claim your oldest pending jobs (provider events such as a Slack mention or a GitHub issue) with a "
        "lease. Finish each with tendril_complete_job or tendril_fail_job before the lease runs out.",
        ClaimJobsInput,
        read_only=False,
    ),
    _tool(
        COMPLETE_TOOL,
        "Complete a job",
        "Mark a job you claimed as done, with an optional result.",
        CompleteJobInput,
        read_only=False,
    ),
    _tool(
        FAIL_TOOL,
        "Fail a job",
        "Mark a job you claimed as failed: it is retried later (retry=true) or goes to the dead letters.",
        FailJobInput,
        read_only=False,
    ),
]


def _job_view(job: JobRecord) -> dict[str, Any]:
    view = render_job(job)
    view.pop("agentId", None)
    return view


class JobTools:
    def __init__(self, hub: Hub) -> None:
        self._providers = tuple(hub.catalog.receivers)
        self._service = hub.webhooks
        self._lease_default = hub.settings.job_lease_seconds

    def providers(self, caller: Caller) -> list[str]:
        return [p for p in self._providers if p in caller.allowed_connectors]

    def visible(self, caller: Caller) -> bool:
        return bool(self.providers(caller))

    async def call(self, caller: Caller, name: str, arguments: dict[str, Any]) -> types.CallToolResult:
        try:
            if name == CLAIM_TOOL:
                claim = ClaimJobsInput.model_validate(arguments)
                jobs = await self._service.jobs.claim(
                    worker=f"agent:{caller.agent_id}",
                    lease_seconds=claim.lease_seconds,
                    limit=claim.limit,
                    agent_id=caller.agent_id,
                    providers=self.providers(caller),
                )
                return errors.tool_success({"jobs": [_job_view(j) for j in jobs]})
            if name == COMPLETE_TOOL:
                done = CompleteJobInput.model_validate(arguments)
                job = await self._service.jobs.complete(
                    _job_id(done.job_id), agent_id=caller.agent_id, result=done.result
                )
                return self._finished(job, done.job_id)
            failure = FailJobInput.model_validate(arguments)
            job = await self._service.jobs.fail(
                _job_id(failure.job_id), agent_id=caller.agent_id, error=failure.error, retry=failure.retry
            )
            return self._finished(job, failure.job_id)
        except ValidationError as exc:
            return errors.tool_result_from_connector(InvalidInput.from_validation(exc))

    @staticmethod
    def _finished(job: JobRecord | None, job_id: str) -> types.CallToolResult:
        if job is None:
            message = f"job {job_id} is not one you hold a lease on (claim it first; leases expire)"
            return errors.tool_error(message, {"code": "not_found", "message": message})
        return errors.tool_success(
            {"job_id": str(job.id), "status": job.status, "runAfter": job.run_after.isoformat()}
        )

    # -- the pending-jobs resource ------------------------------------------------------------
    def resource(self, caller: Caller) -> types.Resource:
        return types.Resource(
            uri=pending_uri(caller.agent_id),
            name="pending-jobs",
            title="Your pending webhook jobs",
            mime_type="application/json",
            description="Jobs waiting for you; subscribe to hear when one arrives, then claim it.",
        )

    async def read(self, caller: Caller) -> types.ReadResourceResult:
        jobs = await self._service.jobs.list(
            caller.owner_id, agent_id=caller.agent_id, providers=self.providers(caller), limit=100
        )
        pending = [
            _job_view(j)
            for j in reversed(jobs)
            if j.status in (JobStatus.QUEUED, JobStatus.FAILED, JobStatus.RUNNING)
        ]
        text = json.dumps({"jobs": pending}, default=str)
        uri = pending_uri(caller.agent_id)
        return types.ReadResourceResult(
            contents=[types.TextResourceContents(uri=uri, mime_type="application/json", text=text)]
        )


def _job_id(value: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        return UUID(int=0)  # matches nothing: answered as "not one you hold"
