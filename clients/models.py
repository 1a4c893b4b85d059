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


class CreatedAgent(_Model):
    agent: Agent
    api_key: str = Field(alias="apiKey")


class ApiKey(_Model):
    id: str
    name: str
    prefix: str
    permissions: list[str]
    revoked_at: str | None = Field(None, alias="revokedAt")


class CreatedApiKey(_Model):
    key: ApiKey
    api_key: str = Field(alias="apiKey")
