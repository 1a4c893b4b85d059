"""REST for provider webhooks: endpoint setup and removal, the jobs they make, and where an agent
wants its jobs pushed. The receiver itself is server/web/ingress.py."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar
from uuid import UUID

from pydantic import Field, StringConstraints

from server.core import Core
from server.core.jobs import JobView
from server.core.webhooks.endpoints import Registration, Removal, Setup
from server.web.api.endpoint import Answer, ApiRequest, ApiResponse, Call, api
from storage.jobs import EndpointRecord


class EndpointOut(ApiResponse):
    id: str = Field(description="The endpoint's id.")
    provider: str = Field(description="Whose deliveries it receives (github, slack, ...).")
    url: str = Field(description="The receiver URL the provider delivers to.")
    status: str = Field(description="active, or deleted.")
    connection_id: str | None = Field(description="The connection the events belong to.")
    agents: list[str] | None = Field(
        description="The agents its jobs go to; null: every agent allowing the provider."
    )
    delivery_count: int = Field(description="Deliveries recorded.")
    duplicate_count: int = Field(description="Deliveries that were already recorded.")
    rejected_count: int = Field(description="Deliveries refused (bad signature, stale, malformed).")
    last_delivery_at: datetime | None = Field(description="When the last delivery came.")
    last_error: str | None = Field(description="Why the last refused delivery was refused.")
    last_error_at: datetime | None = Field(description="When that was.")
    created_at: datetime = Field(description="When it was set up.")

    @classmethod
    def of(cls, core: Core, endpoint: EndpointRecord) -> EndpointOut:
        return cls(
            id=str(endpoint.id),
            provider=endpoint.provider,
            url=core.webhooks.url_for(endpoint),
            status=endpoint.status,
            connection_id=str(endpoint.connection_id) if endpoint.connection_id else None,
            agents=endpoint.agent_ids,
            delivery_count=endpoint.delivery_count,
            duplicate_count=endpoint.duplicate_count,
            rejected_count=endpoint.rejected_count,
            last_delivery_at=endpoint.last_delivery_at,
            last_error=endpoint.last_error,
            last_error_at=endpoint.last_error_at,
            created_at=endpoint.created_at,
        )


class SetupOut(ApiResponse):
    registered: bool = Field(description="Whether Tendril created the hook at the provider.")
    how: str = Field(description="What was done, or what the owner must do.")
    provider_hook_id: str | None = Field(
        default=None,
        exclude_if=lambda v: v is None,
        description="The provider's id for the hook Tendril created.",
    )

    @classmethod
    def of(cls, setup: Setup) -> SetupOut:
        return cls(registered=setup.registered, how=setup.how, provider_hook_id=setup.provider_hook_id)


class EndpointCreated(ApiResponse):
    endpoint: EndpointOut = Field(description="The new endpoint.")
    setup: SetupOut = Field(description="What was done or is left to do at the provider.")


class RemovalOut(ApiResponse):
    removed: bool = Field(description="Whether Tendril removed its hook at the provider.")
    how: str = Field(description="What happened, or what to remove by hand.")

    @classmethod
    def of(cls, removal: Removal) -> RemovalOut:
        return cls(removed=removal.removed, how=removal.how)


class EndpointDeleted(ApiResponse):
    endpoint: EndpointOut = Field(description="The retired endpoint (its URL now answers 404).")
    provider: RemovalOut = Field(description="What happened at the provider.")


class EndpointList(ApiResponse):
    endpoints: list[EndpointOut] = Field(description="The owner's webhook endpoints.")


class RegisterOptions(ApiRequest, extra="forbid"):
    repository: str | None = Field(None, description="GitHub: the repository, owner/name.")
    events: list[Annotated[str, StringConstraints(min_length=1)]] = Field(
        default_factory=list, description="The events to subscribe to (the provider's default when empty)."
    )


class NewEndpoint(ApiRequest):
    provider: str = Field(
        description="github, slack, stripe, telegram, discord, linear, twilio, whatsapp or gmail."
    )
    secrets: dict[str, str] | None = Field(
        None, description="What the provider's console shows (signing secret...)."
    )
    agents: list[UUID] | None = Field(
        None, description="Agents to get the jobs; default: every agent allowing it."
    )
    # `register` on the wire (the name itself would shadow pydantic's ABC `register`).
    registration: bool | RegisterOptions | None = Field(
        None,
        alias="register",
        description="Create the hook through the provider's API: true, or {repository?, events?}.",
    )
    field_messages: ClassVar[dict[str, str]] = {
        "provider": "provider must be a string naming a webhook provider",
        "secrets": "secrets must be an object of strings",
        "agents": "agents must be a list of agent ids",
        "register": 'register must be true or {"repository"?: "owner/name", "events"?: [...]}',
    }


class JobList(ApiResponse):
    jobs: list[JobView] = Field(description="Jobs, newest first.")
    counts: dict[str, int] = Field(description="The owner's jobs by status.")


class JobOut(ApiResponse):
    job: JobView = Field(description="The job.")


class JobQuery(ApiRequest):
    status: str | None = Field(None, description="queued, running, succeeded, failed or dead.")
    agent: UUID | None = Field(None, description="Only this agent's jobs.")
    event_key: str | None = Field(None, description="Only jobs of this event (github.issues.opened).")
    field_messages: ClassVar[dict[str, str]] = {"agent": "malformed agent id: expected a UUID"}


class DeliveryTarget(ApiRequest):
    url: str = Field(description="Where to POST the agent's jobs (http or https).")
    secret: str | None = Field(
        None, description="The signing secret (16+ characters); generated when left out."
    )
    field_messages: ClassVar[dict[str, str]] = {
        "url": "url must be an absolute http(s) URL",
        "secret": "secret must be a string of at least 16 characters",
    }


class DeliveryOut(ApiResponse):
    delivery_url: str | None = Field(description="Where jobs are pushed; null: claimed over MCP.")
    delivery_secret: str | None = Field(
        default=None,
        exclude_if=lambda v: v is None,
        description="The generated secret, shown only this once.",
    )


@api(
    "write",
    body=NewEndpoint,
    response=EndpointCreated,
    ids={"connection_id": "connection id"},
    success=(201,),
    errors=(409, 502, 504),
    creates="/endpoint/id",
    collection="/api/v1/webhook-endpoints",
)
async def set_up_webhook(call: Call) -> Answer[EndpointCreated]:
    """Set up a webhook endpoint for a connection
    Events the provider sends to the endpoint's URL are verified, deduplicated and become jobs for
    the connection owner's agents. Where the provider allows it, the hook is created there too."""
    body: NewEndpoint = call.body
    register: Registration | bool | None
    if isinstance(body.registration, RegisterOptions):
        register = Registration(body.registration.repository, tuple(body.registration.events))
    else:
        register = body.registration
    endpoint, setup = await call.core.webhooks.setup(
        call.owner_id,
        call.ids["connection_id"],
        provider=body.provider,
        secrets=body.secrets,
        agents=body.agents,
        register=register,
    )
    created = EndpointCreated(endpoint=EndpointOut.of(call.core, endpoint), setup=SetupOut.of(setup))
    return Answer(created, 201)


@api("read", response=EndpointList)
async def list_webhook_endpoints(call: Call) -> EndpointList:
    """List webhook endpoints"""
    found = await call.core.webhooks.list(call.owner_id)
    return EndpointList(endpoints=[EndpointOut.of(call.core, e) for e in found])


@api("write", response=EndpointDeleted, ids={"endpoint_id": "endpoint id"}, errors=(502, 504))
async def delete_webhook_endpoint(call: Call) -> EndpointDeleted:
    """Delete a webhook endpoint
    A hook Tendril created at the provider is removed there too."""
    deleted, removal = await call.core.webhooks.delete(call.owner_id, call.ids["endpoint_id"])
    return EndpointDeleted(endpoint=EndpointOut.of(call.core, deleted), provider=RemovalOut.of(removal))


@api("read", query=JobQuery, response=JobList)
async def list_jobs(call: Call) -> JobList:
    """List jobs
    The jobs provider events became, newest first, with counts by status."""
    query: JobQuery = call.query
    jobs = await call.core.jobs.list(
        call.owner_id, status=query.status or None, agent_id=query.agent, event_key=query.event_key or None
    )
    return JobList(jobs=[JobView.of(j) for j in jobs], counts=await call.core.jobs.counts(call.owner_id))


@api("write", response=JobOut, ids={"job_id": "job id"}, errors=(409,))
async def retry_job(call: Call) -> JobOut:
    """Retry a dead or failed job"""
    return JobOut(job=JobView.of(await call.core.jobs.retry(call.owner_id, call.ids["job_id"])))


@api("write", body=DeliveryTarget, response=DeliveryOut, ids={"agent_id": "agent id"})
async def set_agent_delivery(call: Call) -> DeliveryOut:
    """Push an agent's jobs to a URL
    Each job is POSTed to `url`, signed with `secret` (generated when not given, and then shown
    only in this answer)."""
    body: DeliveryTarget = call.body
    delivery = await call.core.push.set(call.owner_id, call.ids["agent_id"], url=body.url, secret=body.secret)
    return DeliveryOut(delivery_url=delivery.url, delivery_secret=delivery.generated_secret)


@api("write", response=DeliveryOut, ids={"agent_id": "agent id"})
async def clear_agent_delivery(call: Call) -> DeliveryOut:
    """Stop pushing an agent's jobs
    The agent goes back to claiming its jobs over MCP."""
    delivery = await call.core.push.clear(call.owner_id, call.ids["agent_id"])
    return DeliveryOut(delivery_url=delivery.url)
