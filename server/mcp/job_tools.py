"""Agents working through their webhook jobs over MCP: a subscribable resource listing the calling
agent's pending jobs, and tools to claim (with a lease), complete and fail them. An agent only
ever sees its own jobs, and only for providers it still allows (server/core/jobs.py)."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

import mcp_types as types
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from connectors import Hints
from connectors.errors import InvalidInput
from server.core.jobs import Jobs, JobView
from server.mcp import definitions, errors
from server.mcp.caller import Caller
from storage.jobs import JobRecord

CLAIM_TOOL, COMPLETE_TOOL, FAIL_TOOL = "tendril_claim_jobs", "tendril_complete_job", "tendril_fail_job"
JOB_TOOLS = (CLAIM_TOOL, COMPLETE_TOOL, FAIL_TOOL)
_JOB_HINTS = Hints(open_world=False)


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


def _job_tool(name: str, title: str, description: str, model: type[BaseModel]) -> types.Tool:
    schema = dict(definitions.schema(model))
    schema.pop("title", None)
    return definitions.tool(name, title, description, input_schema=schema, hints=_JOB_HINTS)


DEFINITIONS = [
    _job_tool(
        CLAIM_TOOL,
        "Claim webhook jobs",
        "Claim your oldest pending jobs (provider events such as a Slack mention or a GitHub issue) with a "
        "lease. Finish each with tendril_complete_job or tendril_fail_job before the lease runs out.",
        ClaimJobsInput,
    ),
    _job_tool(
        COMPLETE_TOOL,
        "Complete a job",
        "Mark a job you claimed as done, with an optional result.",
        CompleteJobInput,
    ),
    _job_tool(
        FAIL_TOOL,
        "Fail a job",
        "Mark a job you claimed as failed: it is retried later (retry=true) or goes to the dead letters.",
        FailJobInput,
    ),
]


def job_view(job: JobRecord) -> dict[str, Any]:
    """What an agent sees of its job (its own id left out)."""
    return JobView.of(job).model_dump(mode="json", exclude={"agent_id"})


class JobTools:
    def __init__(self, jobs: Jobs) -> None:
        self._jobs = jobs

    def definitions(self, caller: Caller) -> list[types.Tool]:
        return DEFINITIONS if self._jobs.has_jobs(caller) else []

    def offers(self, caller: Caller, name: str) -> bool:
        return name in JOB_TOOLS and self._jobs.has_jobs(caller)

    async def call(self, caller: Caller, name: str, arguments: dict[str, Any]) -> types.CallToolResult:
        try:
            if name == CLAIM_TOOL:
                claim = ClaimJobsInput.model_validate(arguments)
                jobs = await self._jobs.claim(caller, limit=claim.limit, lease_seconds=claim.lease_seconds)
                return errors.tool_success({"jobs": [job_view(j) for j in jobs]})
            if name == COMPLETE_TOOL:
                done = CompleteJobInput.model_validate(arguments)
                job = await self._jobs.complete(caller, _job_id(done.job_id), done.result)
                return self._finished(job, done.job_id)
            failure = FailJobInput.model_validate(arguments)
            job = await self._jobs.fail(
                caller, _job_id(failure.job_id), error=failure.error, retry=failure.retry
            )
            return self._finished(job, failure.job_id)
        except ValidationError as exc:
            return errors.tool_failure(InvalidInput.from_validation(exc), name)

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

    def visible(self, caller: Caller) -> bool:
        return self._jobs.has_jobs(caller)

    async def read(self, caller: Caller) -> types.ReadResourceResult:
        pending = [job_view(j) for j in await self._jobs.pending(caller)]
        uri = pending_uri(caller.agent_id)
        return types.ReadResourceResult(
            contents=[
                types.TextResourceContents(
                    uri=uri, mime_type="application/json", text=json.dumps({"jobs": pending})
                )
            ]
        )


def _job_id(value: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        return UUID(int=0)  # matches nothing: answered as "not one you hold"
