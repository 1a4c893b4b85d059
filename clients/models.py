"""Typed shapes of Tendril's REST API responses, as the client sees them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    # Tolerate fields added by newer servers.
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class CredentialField(_Model):
    key: str
    label: str
    required: bool = True
    secret: bool = False
    pattern: str | None = None


class Tool(_Model):
    name: str
    action: str
    description: str
    input_schema: dict[str, Any] = Field(alias="inputSchema")
    output_schema: dict[str, Any] = Field(alias="outputSchema")
    annotations: dict[str, bool]


class Connector(_Model):
    slug: str
    name: str
    description: str
    auth_type: Literal["oauth", "api_key", "none"] = Field(alias="authType")
    configured: bool
    availability: str
    availability_reason: str | None = Field(None, alias="availabilityReason")
    tools: list[Tool]
    credential_fields: list[CredentialField] | None = Field(None, alias="credentialFields")


class Connection(_Model):
    id: str
    connector_slug: str = Field(alias="connectorSlug")
    label: str
    status: str
    config: dict[str, Any]
    account: dict[str, Any]
    has_credentials: bool = Field(alias="hasCredentials")
    credential_id: str | None = Field(None, alias="credentialId")
    connect_url: str | None = Field(None, alias="connectUrl")
    created_at: str = Field(alias="createdAt")
    updated_at: str = Field(alias="updatedAt")
    deleted_at: str | None = Field(None, alias="deletedAt")


class StartedConnection(_Model):
    connection: Connection
    oauth_url: str | None = Field(alias="oauthUrl")
    credential_submit_url: str | None = Field(alias="credentialSubmitUrl")


class Agent(_Model):
    id: str
    name: str
    allowed_connectors: list[str] = Field(alias="allowedConnectors")
    key_prefix: str = Field(alias="keyPrefix")
    tool_call_rate_limit: int | None = Field(None, alias="toolCallRateLimit")


class CreatedAgent(_Model):
    agent: Agent
    api_key: str = Field(alias="apiKey")


class ApiKey(_Model):
    id: str
    name: str
    prefix: str
    permissions: list[str]
    rate_limit: int | None = Field(None, alias="rateLimit")
    revoked_at: str | None = Field(None, alias="revokedAt")


class CreatedApiKey(_Model):
    key: ApiKey
    api_key: str = Field(alias="apiKey")


class OAuthStatus(_Model):
    connection_id: str = Field(alias="connectionId")
    status: str
    auth_method: str = Field(alias="authMethod")
    oauth_url: str | None = Field(None, alias="oauthUrl")
    scopes: list[str] | None = None
    last_error: str | None = Field(None, alias="lastError")


class Credential(_Model):
    """A stored credential: its field names, never their values."""

    id: str
    name: str
    description: str
    type: str
    provider: str
    fields: list[str]
    metadata: dict[str, Any]
    account: dict[str, Any]
    connection_ids: list[str] = Field(alias="connectionIds")
    created_at: str = Field(alias="createdAt")
    updated_at: str = Field(alias="updatedAt")


class ConnectorInstance(_Model):
    id: str
    name: str
    type: str
    credential_id: str | None = Field(alias="credentialId")
    config: dict[str, Any]
    status: str
    account: dict[str, Any]
    created_at: str = Field(alias="createdAt")


class WebhookEndpoint(_Model):
    id: str
    provider: str
    url: str
    status: str
    connection_id: str | None = Field(None, alias="connectionId")
    agents: list[str] | None = None
    delivery_count: int = Field(alias="deliveryCount")
    created_at: str = Field(alias="createdAt")


class WebhookSetup(_Model):
    endpoint: WebhookEndpoint
    setup: dict[str, Any]


class Job(_Model):
    id: str
    agent_id: str = Field(alias="agentId")
    provider: str
    event_key: str = Field(alias="eventKey")
    status: str
    attempts: int
    payload: Any = None
    result: Any = None
    last_error: str | None = Field(None, alias="lastError")


class JobList(_Model):
    jobs: list[Job]
    counts: dict[str, int]


class AuditActor(_Model):
    type: str
    id: str | None = None


class AuditEvent(_Model):
    id: str
    at: str
    kind: str
    actor: AuditActor
    agent_id: str | None = Field(None, alias="agentId")
    connection_id: str | None = Field(None, alias="connectionId")
    connector: str | None = None
    action: str | None = None
    outcome: str
    latency_ms: float | None = Field(None, alias="latencyMs")
    detail: dict[str, Any] = Field(default_factory=dict[str, Any])


class AuditPage(_Model):
    events: list[AuditEvent]
    next_cursor: str | None = Field(None, alias="nextCursor")


class ExecutionStarted(_Model):
    execution_id: str = Field(alias="executionId")
    status: str
    started_at: str = Field(alias="startedAt")


class ExecutionStep(_Model):
    name: str
    type: str
    status: str
    output: Any = None
    error: dict[str, Any] | None = None
    started_at: str | None = Field(None, alias="startedAt")
    finished_at: str | None = Field(None, alias="finishedAt")


class Execution(_Model):
    id: str
    workflow_id: str = Field(alias="workflowId")
    status: str
    started_by: str = Field(alias="startedBy")
    agent_id: str | None = Field(None, alias="agentId")
    trigger_id: str | None = Field(None, alias="triggerId")
    started_at: str = Field(alias="startedAt")
    finished_at: str | None = Field(None, alias="finishedAt")
    input: Any = None
    output: Any = None
    error: dict[str, Any] | None = None
    steps: list[ExecutionStep] | None = None


class ExecutionPage(_Model):
    executions: list[Execution]
    next_cursor: str | None = Field(None, alias="nextCursor")


class Delivery(_Model):
    delivery_url: str | None = Field(alias="deliveryUrl")


class RetryPolicy(_Model):
    max_attempts: int = Field(alias="maxAttempts")
    backoff_ms: int = Field(alias="backoffMs")


class OutgoingWebhook(_Model):
    id: str
    name: str
    url: str
    events: list[str]
    headers: dict[str, str]  # names only; every value reads ****
    retry_policy: RetryPolicy = Field(alias="retryPolicy")
    active: bool
    created_at: str = Field(alias="createdAt")
    updated_at: str = Field(alias="updatedAt")


class CreatedOutgoingWebhook(_Model):
    webhook: OutgoingWebhook
    secret: str  # shown only this once


class OutgoingDelivery(_Model):
    id: str
    webhook_id: str = Field(alias="webhookId")
    event: str
    status: str
    attempts: int
    last_status_code: int | None = Field(None, alias="lastStatusCode")
    last_error: str | None = Field(None, alias="lastError")
    created_at: str = Field(alias="createdAt")
    next_attempt_at: str | None = Field(None, alias="nextAttemptAt")
    delivered_at: str | None = Field(None, alias="deliveredAt")


class OutgoingDeliveryPage(_Model):
    deliveries: list[OutgoingDelivery]
    next_cursor: str | None = Field(None, alias="nextCursor")


class FileConnector(_Model):
    """The files API answers in snake_case, as the document it follows does."""

    id: str
    connection_id: str
    name: str
    type: str
    config: dict[str, Any]
    status: str
    metadata: dict[str, Any] | None = None
    resource_uri: str | None = None


class FileContent(_Model):
    connector_id: str
    content: str
    encoding: str
    content_type: str
    total_size: int
    chunk_info: dict[str, Any]


class WorkflowSummary(_Model):
    """A workflow as GET /api/v1/workflows lists it."""

    id: str
    name: str
    description: str | None = None
    is_public: bool = Field(alias="isPublic")
    created_at: str = Field(alias="createdAt")
    updated_at: str = Field(alias="updatedAt")


class Workflow(WorkflowSummary):
    definition: dict[str, Any]  # {"steps": [{"name", "type", "config"}, ...]}


class Trigger(_Model):
    """A workflow trigger: a provider event (eventKey, endpointId) or a schedule (cron, timezone, input)."""

    id: str
    workflow_id: str = Field(alias="workflowId")
    kind: Literal["event", "schedule"]
    event_key: str | None = Field(None, alias="eventKey")
    endpoint_id: str | None = Field(None, alias="endpointId")
    cron: str | None = None
    timezone: str | None = None
    input: dict[str, Any] | None = None
    active: bool
    created_at: str = Field(alias="createdAt")
    updated_at: str = Field(alias="updatedAt")
