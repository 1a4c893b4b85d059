"""/api/v1/agents and /api/v1/keys: the owner's agents (each with its own MCP key and allowed
connectors) and API keys (with permissions). A new key is shown once, in the answer that made it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar

from pydantic import Field, RootModel

from server.core.identity import KEEP, RATE_LIMIT_MAX
from server.web.api.endpoint import Answer, ApiRequest, ApiResponse, Call, Deleted, api, examples
from storage.repositories import AgentRecord, ApiKeyRecord

_AGENT_NAME = "agent name must be 1-100 characters of letters, digits, spaces, '.', '_' or '-'"
_KEY_NAME = "key name must be 1-100 characters of letters, digits, spaces, '.', '_' or '-'"
_ALLOWED = "allowedConnectors must be a list of connector slugs"
_PER_MINUTE = f"a whole number per minute from 1 to {RATE_LIMIT_MAX}, or null for the server's default"
_TOOL_LIMIT = f"toolCallRateLimit must be {_PER_MINUTE}"
_KEY_LIMIT = f"rateLimit must be {_PER_MINUTE}"
PerMinute = Annotated[int, Field(ge=1, le=RATE_LIMIT_MAX)]


class AgentOut(ApiResponse):
    id: str = Field(description="The agent's id.")
    name: str = Field(description="Its name (unique per owner).")
    allowed_connectors: list[str] = Field(description="The connectors whose tools and jobs it gets.")
    key_prefix: str = Field(description="The start of its key, to recognise it.")
    tool_call_rate_limit: int | None = Field(
        description="MCP tool calls per minute it may make; null: the server's default."
    )
    created_at: datetime = Field(description="When it was made.")
    updated_at: datetime = Field(description="When it last changed.")

    @classmethod
    def of(cls, record: AgentRecord) -> AgentOut:
        return cls(
            id=str(record.id),
            name=record.name,
            allowed_connectors=list(record.allowed_connectors),
            key_prefix=record.key_prefix,
            tool_call_rate_limit=record.tool_rate_limit,
            created_at=record.created_at,
            updated_at=record.updated_at,
        )


class AgentList(RootModel[list[AgentOut]]):
    pass


class CreatedAgent(ApiResponse):
    agent: AgentOut = Field(description="The new agent.")
    api_key: str = Field(description="Its MCP key, shown only this once.")


class RotatedAgentKey(ApiResponse):
    agent: AgentOut = Field(description="The agent, unchanged but for its key prefix.")
    api_key: str = Field(description="Its new MCP key, shown only this once.")


class NewAgent(ApiRequest):
    model_config = examples({"name": "support-bot", "allowedConnectors": ["slack", "gmail"]})
    name: str = Field(description="A name, unique among the owner's agents.")
    allowed_connectors: list[str] = Field(default_factory=list, description="Connector slugs it may use.")
    tool_call_rate_limit: PerMinute | None = Field(
        None, description="MCP tool calls per minute; the server's default when absent or null."
    )
    field_messages: ClassVar[dict[str, str]] = {
        "name": _AGENT_NAME,
        "allowedConnectors": _ALLOWED,
        "toolCallRateLimit": _TOOL_LIMIT,
    }


class AgentChanges(ApiRequest, extra="forbid"):
    name: str | None = Field(None, description="A new name.")
    allowed_connectors: list[str] | None = Field(None, description="The new list of connector slugs.")
    tool_call_rate_limit: PerMinute | None = Field(
        None, description="A new tool-call limit per minute; null: back to the server's default."
    )
    field_messages: ClassVar[dict[str, str]] = NewAgent.field_messages
    takes: ClassVar[str] = "PATCH takes name, allowedConnectors and toolCallRateLimit"


class ApiKeyOut(ApiResponse):
    id: str = Field(description="The key's id.")
    name: str = Field(description="Its name.")
    prefix: str = Field(description="The start of the key, to recognise it.")
    permissions: list[str] = Field(description="read, write, execute and/or admin.")
    rate_limit: int | None = Field(description="Requests per minute it may make; null: the server's default.")
    created_at: datetime = Field(description="When it was made.")
    last_used_at: datetime | None = Field(description="When it was last presented.")
    revoked_at: datetime | None = Field(description="When it was revoked.")

    @classmethod
    def of(cls, record: ApiKeyRecord) -> ApiKeyOut:
        return cls(
            id=str(record.id),
            name=record.name,
            prefix=record.key_prefix,
            permissions=list(record.permissions),
            rate_limit=record.rate_limit,
            created_at=record.created_at,
            last_used_at=record.last_used_at,
            revoked_at=record.revoked_at,
        )


class ApiKeyList(RootModel[list[ApiKeyOut]]):
    pass


class CreatedApiKey(ApiResponse):
    key: ApiKeyOut = Field(description="The new key's record.")
    api_key: str = Field(description="The key itself, shown only this once.")


class Revoked(ApiResponse):
    revoked: bool = Field(description="Always true.")


class NewApiKey(ApiRequest):
    model_config = examples({"name": "reporting", "permissions": ["read"]})
    name: str = Field("api key", description="A name for it.")
    permissions: list[str] | None = Field(
        None, description="read, write, execute, admin; default all but admin."
    )
    rate_limit: PerMinute | None = Field(
        None, description="Requests per minute; the server's default (100 unless set) when absent or null."
    )
    field_messages: ClassVar[dict[str, str]] = {
        "name": _KEY_NAME,
        "permissions": "permissions must be a list of strings",
        "rateLimit": _KEY_LIMIT,
    }


class ApiKeyChanges(ApiRequest, extra="forbid"):
    model_config = examples({"rateLimit": 600})
    name: str | None = Field(None, description="A new name.")
    rate_limit: PerMinute | None = Field(
        None, description="A new limit in requests per minute; null: back to the server's default."
    )
    field_messages: ClassVar[dict[str, str]] = {"name": _KEY_NAME, "rateLimit": _KEY_LIMIT}
    takes: ClassVar[str] = "PATCH takes name and rateLimit"


# -- agents --------------------------------------------------------------------------------------
@api("write", body=NewAgent, response=CreatedAgent, success=(201,), errors=(409,), creates="/agent/id")
async def create_agent(call: Call) -> Answer[CreatedAgent]:
    """Create an agent
    The answer holds the agent's MCP key, shown only this once."""
    body: NewAgent = call.body
    created = await call.core.identity.create_agent(
        call.owner_id,
        name=body.name,
        allowed_connectors=body.allowed_connectors,
        tool_rate_limit=body.tool_call_rate_limit,
    )
    return Answer(CreatedAgent(agent=AgentOut.of(created.record), api_key=created.plaintext_key), 201)


@api("read", response=AgentList)
async def list_agents(call: Call) -> AgentList:
    """List agents"""
    return AgentList([AgentOut.of(r) for r in await call.core.identity.list_agents(call.owner_id)])


@api("read", response=AgentOut, ids={"id": "agent id"})
async def get_agent(call: Call) -> AgentOut:
    """Get an agent"""
    return AgentOut.of(await call.core.identity.agent(call.owner_id, call.ids["id"]))


@api("write", body=AgentChanges, response=AgentOut, ids={"id": "agent id"}, errors=(409,))
async def update_agent(call: Call) -> AgentOut:
    """Rename an agent or change its allowed connectors"""
    body: AgentChanges = call.body
    updated = await call.core.identity.update_agent(
        call.owner_id,
        call.ids["id"],
        name=body.name,
        allowed_connectors=body.allowed_connectors,
        tool_rate_limit=body.tool_call_rate_limit
        if "tool_call_rate_limit" in body.model_fields_set
        else KEEP,
    )
    return AgentOut.of(updated)


@api("write", response=RotatedAgentKey, ids={"id": "agent id"})
async def rotate_agent_key(call: Call) -> RotatedAgentKey:
    """Give an agent a new MCP key
    The answer holds the new key, shown only this once; the old key stops working at once. The agent
    keeps its id, allowed connectors, jobs and delivery settings."""
    rotated = await call.core.identity.rotate_agent_key(call.owner_id, call.ids["id"])
    return RotatedAgentKey(agent=AgentOut.of(rotated.record), api_key=rotated.plaintext_key)


@api("write", response=Deleted, ids={"id": "agent id"})
async def delete_agent(call: Call) -> Deleted:
    """Delete an agent
    Its MCP key stops working at once."""
    await call.core.identity.delete_agent(call.owner_id, call.ids["id"])
    return Deleted(deleted=True)


# -- API keys ------------------------------------------------------------------------------------
@api("admin", body=NewApiKey, response=CreatedApiKey, success=(201,), creates="/key/id")
async def create_key(call: Call) -> Answer[CreatedApiKey]:
    """Create an API key
    The answer holds the key itself, shown only this once."""
    body: NewApiKey = call.body
    created = await call.core.identity.create_api_key(
        call.owner_id, name=body.name, permissions=body.permissions, rate_limit=body.rate_limit
    )
    return Answer(CreatedApiKey(key=ApiKeyOut.of(created.record), api_key=created.plaintext), 201)


@api("admin", response=ApiKeyList)
async def list_keys(call: Call) -> ApiKeyList:
    """List API keys"""
    return ApiKeyList([ApiKeyOut.of(r) for r in await call.core.identity.list_api_keys(call.owner_id)])


@api("admin", body=ApiKeyChanges, response=ApiKeyOut, ids={"id": "key id"})
async def update_key(call: Call) -> ApiKeyOut:
    """Rename an API key or change its rate limit"""
    body: ApiKeyChanges = call.body
    record = await call.core.identity.update_api_key(
        call.owner_id,
        call.ids["id"],
        name=body.name,
        rate_limit=body.rate_limit if "rate_limit" in body.model_fields_set else KEEP,
    )
    return ApiKeyOut.of(record)


@api("admin", response=Revoked, ids={"id": "key id"})
async def revoke_key(call: Call) -> Revoked:
    """Revoke an API key"""
    await call.core.identity.revoke_api_key(call.owner_id, call.ids["id"])
    return Revoked(revoked=True)
