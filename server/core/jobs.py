"""Webhook jobs: what owners see and retry, and what agents claim, complete and fail.

Jobs are made by webhook ingest (server/core/webhooks) and pushed by server/core/push.py; an agent
only ever sees its own jobs, and only for providers it still allows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from connectors import Catalog
from server.core.errors import Conflict, Invalid, NotFound
from server.core.events import ChangeEvents
from server.core.identity import AgentPrincipal
from storage.jobs import JobQueue, JobRecord, JobStatus

PENDING = (JobStatus.QUEUED, JobStatus.FAILED, JobStatus.RUNNING)


class JobView(BaseModel):
    """A job as owners (REST, the admin page) and agents (MCP) see it."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, serialize_by_alias=True)

    id: UUID = Field(description="The job's id.")
    agent_id: UUID = Field(description="The agent the job is for.")
    provider: str = Field(description="The provider whose event made the job (github, slack, ...).")
    event_key: str = Field(description="The event, normalised: github.issues.opened, slack.app_mention, ...")
    status: str = Field(description="queued, running, succeeded, failed (will be retried) or dead.")
    attempts: int = Field(description="Attempts made so far.")
    max_attempts: int = Field(description="Attempts allowed before the job is dead.")
    run_after: datetime = Field(description="When the job may be claimed (later after a failure).")
    lease_until: datetime | None = Field(description="While running: when the claim runs out.")
    last_error: str | None = Field(description="Why the last attempt failed.")
    result: Any = Field(description="What the agent reported when it completed the job.")
    payload: Any = Field(description="The provider's event, as it was delivered.")
    created_at: datetime = Field(description="When the event arrived.")
    finished_at: datetime | None = Field(description="When the job succeeded or died.")

    @classmethod
    def of(cls, job: JobRecord) -> JobView:
        return cls.model_validate(job, from_attributes=True)


def check_status(status: str | None) -> str | None:
    if status is not None and status not in JobStatus.ALL:
        raise Invalid(f"status must be one of {', '.join(JobStatus.ALL)}", field="status")
    return status


class Jobs:
    def __init__(
        self, queue: JobQueue, catalog: Catalog, events: ChangeEvents, *, lease_seconds: float
    ) -> None:
        self._queue = queue
        self._providers = tuple(catalog.receivers)
        self._events = events
        self.lease_seconds = lease_seconds

    # -- owners -----------------------------------------------------------------------------------
    async def list(
        self,
        owner_id: UUID,
        *,
        status: str | None = None,
        agent_id: UUID | None = None,
        event_key: str | None = None,
        limit: int = 100,
    ) -> list[JobRecord]:
        return await self._queue.list(
            owner_id, status=check_status(status), agent_id=agent_id, event_key=event_key, limit=limit
        )

    async def counts(self, owner_id: UUID) -> dict[str, int]:
        return await self._queue.count_by_status(owner_id)

    async def retry(self, owner_id: UUID, job_id: UUID) -> JobRecord:
        """Give a dead (or failed) job more attempts, and tell its agent's listeners on every replica."""
        revived = await self._queue.retry_dead(job_id, owner_id=owner_id)
        if revived is None:
            if await self._queue.get(job_id, owner_id=owner_id) is None:
                raise NotFound("job not found")
            raise Conflict("only dead or failed jobs can be retried")
        await self._events.jobs_arrived([revived.agent_id])
        return revived

    # -- agents -----------------------------------------------------------------------------------
    def providers(self, agent: AgentPrincipal) -> list[str]:
        """The webhook providers whose jobs this agent sees: those it still allows."""
        return [p for p in self._providers if agent.allows(p)]

    def has_jobs(self, agent: AgentPrincipal) -> bool:
        return bool(self.providers(agent))

    async def claim(self, agent: AgentPrincipal, *, limit: int, lease_seconds: float) -> list[JobRecord]:
        return await self._queue.claim(
            worker=f"agent:{agent.agent_id}",
            lease_seconds=lease_seconds,
            limit=limit,
            agent_id=agent.agent_id,
            providers=self.providers(agent),
        )

    async def complete(self, agent: AgentPrincipal, job_id: UUID, result: Any) -> JobRecord | None:
        """None when the agent holds no lease on that job."""
        return await self._queue.complete(job_id, agent_id=agent.agent_id, result=result)

    async def fail(self, agent: AgentPrincipal, job_id: UUID, *, error: str, retry: bool) -> JobRecord | None:
        return await self._queue.fail(job_id, agent_id=agent.agent_id, error=error, retry=retry)

    async def pending(self, agent: AgentPrincipal) -> list[JobRecord]:
        """The agent's unfinished jobs, oldest first."""
        jobs = await self._queue.list(
            agent.owner_id, agent_id=agent.agent_id, providers=self.providers(agent), limit=100
        )
        return [j for j in reversed(jobs) if j.status in PENDING]
