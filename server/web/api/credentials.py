"""/api/v1/credentials and POST /api/v1/connectors: credentials as objects of their own, and
connector instances (connections) made from them. A credential's data goes in and never comes out:
answers name its fields, not their values."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

from pydantic import Field, JsonValue, RootModel

from server.core import Core
from server.core.credentials import TYPES, credential_ref
from server.web.api.connections import ConfigValues
from server.web.api.endpoint import Answer, ApiRequest, ApiResponse, Call, Deleted, api, examples
from storage.credentials import CredentialRecord
from storage.repositories import ConnectionRecord, ConnectionStatus

CREDENTIAL_ID = "The credential's id (cred_ and 32 hex digits)."
CREDENTIAL_PATTERN = r"^cred_[0-9a-f]{32}$"
_DATA = "data must be a JSON object of the provider's credential fields"
_METADATA = "metadata must be a JSON object"


class CredentialOut(ApiResponse):
    id: str = Field(description=CREDENTIAL_ID)
    name: str = Field(description="Its name.")
    description: str = Field(description="What it is for.")
    type: str = Field(description=f"One of {', '.join(TYPES)}.")
    provider: str = Field(description="The connector it is a credential for (slack, stripe, ...).")
    fields: list[str] = Field(description="The names of the fields stored; their values are never shown.")
    metadata: dict[str, Any] = Field(description="Free metadata, as given.")
    account: dict[str, Any] = Field(description="Non-secret facts the provider told about the account.")
    connection_ids: list[str] = Field(description="The live connections it backs.")
    created_at: datetime = Field(description="When it was made.")
    updated_at: datetime = Field(description="When it last changed (rotating its data included).")

    @classmethod
    def of(cls, record: CredentialRecord, connections: list[UUID]) -> CredentialOut:
        return cls(
            id=credential_ref(record.id),
            name=record.name,
            description=record.description,
            type=record.type,
            provider=record.provider,
            fields=list(record.fields),
            metadata=dict(record.metadata),
            account=dict(record.account),
            connection_ids=[str(c) for c in connections],
            created_at=record.created_at,
            updated_at=record.updated_at,
        )


class CredentialList(RootModel[list[CredentialOut]]):
    pass


class ConnectorInstanceOut(ApiResponse):
    id: str = Field(description="The connection's id (it is a connection like any other).")
    name: str = Field(description="Its name (the connection's label).")
    type: str = Field(description="Its connector's slug.")
    credential_id: str | None = Field(description="The credential it runs on.")
    config: dict[str, Any] = Field(description="Defaults for omitted parameters.")
    status: ConnectionStatus = Field(description="active once the credential verified.")
    account: dict[str, Any] = Field(description="Non-secret facts about the account.")
    created_at: datetime = Field(description="When it was made.")

    @classmethod
    def of(cls, record: ConnectionRecord) -> ConnectorInstanceOut:
        return cls(
            id=str(record.id),
            name=record.label,
            type=record.connector_slug,
            credential_id=credential_ref(record.credential_id) if record.credential_id else None,
            config=dict(record.config),
            status=record.status,
            account=dict(record.account),
            created_at=record.created_at,
        )


# -- requests ------------------------------------------------------------------------------------
class NewCredential(ApiRequest):
    model_config = examples(
        {
            "name": "Slack Bot Token",
            "description": "Production Slack bot",
            "type": "oauth",
            "provider": "slack",
            "data": {"bot_token": "xoxb-xxxxxxxxxxxxx", "app_id": "A01234567"},
            "metadata": {"scopes": ["chat:write", "channels:read"]},
        }
    )
    name: str = Field(description="A name for it.")
    description: str = Field("", description="What it is for.")
    type: str | None = Field(None, description=f"One of {', '.join(TYPES)}; the connector's own by default.")
    provider: str = Field(description="The connector it is for (its slug, as in GET /api/v1/connectors).")
    data: dict[str, JsonValue] = Field(
        description="The secret fields the connector's catalog entry lists under credentialFields "
        '(an OAuth-only connector takes {"access_token": ...}). Encrypted at rest, never shown back.'
    )
    metadata: dict[str, JsonValue] = Field(default_factory=dict, description="Free metadata.")
    field_messages: ClassVar[dict[str, str]] = {
        "name": "name must be a string",
        "description": "description must be a string",
        "type": f"type must be one of {', '.join(TYPES)}",
        "provider": "provider must be a connector slug",
        "data": _DATA,
        "metadata": _METADATA,
    }


class CredentialChanges(ApiRequest, extra="forbid"):
    model_config = examples({"data": {"bot_token": "xoxb-rotated-token"}}, {"name": "Slack (production)"})
    name: str | None = Field(None, description="A new name.")
    description: str | None = Field(None, description="A new description.")
    data: dict[str, JsonValue] | None = Field(
        None, description="New secret fields: verified, then used by every connection it backs."
    )
    metadata: dict[str, JsonValue] | None = Field(None, description="New metadata (replaces the old).")
    field_messages: ClassVar[dict[str, str]] = NewCredential.field_messages
    takes: ClassVar[str] = "PATCH takes name, description, data and metadata"


class NewConnectorInstance(ApiRequest):
    model_config = examples(
        {
            "name": "Production Slack",
            "type": "slack",
            "credentialId": "cred_0123456789abcdef0123456789abcdef",
            "config": {"defaultChannel": "#general"},
        }
    )
    name: str = Field(description="A name for it, unique among the owner's connections of this connector.")
    type: str = Field(description="The connector's slug.")
    credential_id: str = Field(description="The credential it runs on (of the same provider).")
    config: ConfigValues | None = Field(None, description="Defaults for omitted parameters (defaultChannel).")
    field_messages: ClassVar[dict[str, str]] = {
        "name": "name must be a string",
        "type": "type must be a connector slug",
        "credentialId": "credentialId must be a credential id (cred_...)",
        "config": "config must be a JSON object of strings and numbers",
    }


# -- routes --------------------------------------------------------------------------------------
async def _out(core: Core, owner_id: UUID, record: CredentialRecord) -> CredentialOut:
    """One credential with the live connections it backs (only its own are read)."""
    backed = await core.connections.list(owner_id, credential_id=record.id)
    return CredentialOut.of(record, [connection.id for connection in backed])


def _ref(call: Call) -> str:
    return call.request.path_params["id"]


@api(
    "write",
    body=NewCredential,
    response=CredentialOut,
    success=(201,),
    errors=(502, 504),
    creates="/id",
)
async def create_credential(call: Call) -> Answer[CredentialOut]:
    """Store a credential
    Its data is checked against the provider's credential fields, verified with the provider where
    the connector can, and encrypted at rest. The answer names the fields stored, never their values."""
    body: NewCredential = call.body
    record = await call.core.credentials.create(
        call.owner_id,
        name=body.name,
        provider=body.provider,
        data=body.data,
        type=body.type,
        description=body.description,
        metadata=body.metadata,
    )
    return Answer(CredentialOut.of(record, []), 201)


@api("read", response=CredentialList)
async def list_credentials(call: Call) -> CredentialList:
    """List credentials
    Sanitized: names, providers, field names and the connections each backs; no secret values."""
    core = call.core
    backing = await core.credentials.backing(call.owner_id)
    records = await core.credentials.list(call.owner_id)
    return CredentialList([CredentialOut.of(r, backing.get(r.id, [])) for r in records])


@api("read", response=CredentialOut, path={"id": CREDENTIAL_ID}, patterns={"id": CREDENTIAL_PATTERN})
async def get_credential(call: Call) -> CredentialOut:
    """Get a credential"""
    record = await call.core.credentials.get(call.owner_id, _ref(call))
    return await _out(call.core, call.owner_id, record)


@api(
    "write",
    body=CredentialChanges,
    response=CredentialOut,
    path={"id": CREDENTIAL_ID},
    patterns={"id": CREDENTIAL_PATTERN},
    errors=(502, 504),
)
async def update_credential(call: Call) -> CredentialOut:
    """Rename, describe or rotate a credential
    New data is verified with the provider first, then replaces the old in every connection the
    credential backs (connections that needed reconnecting are active again)."""
    body: CredentialChanges = call.body
    record = await call.core.credentials.update(
        call.owner_id,
        _ref(call),
        name=body.name,
        description=body.description,
        metadata=body.metadata,
        data=body.data,
    )
    return await _out(call.core, call.owner_id, record)


@api(
    "write",
    response=Deleted,
    path={"id": CREDENTIAL_ID},
    patterns={"id": CREDENTIAL_PATTERN},
    errors=(409,),
)
async def delete_credential(call: Call) -> Deleted:
    """Delete a credential
    Refused (409) while it backs live connections: revoke those first."""
    await call.core.credentials.delete(call.owner_id, _ref(call))
    return Deleted(deleted=True)


@api(
    "write",
    body=NewConnectorInstance,
    response=ConnectorInstanceOut,
    success=(201,),
    errors=(404, 409, 502, 504),
    creates="/id",
    collection="/api/v1/connections",
)
async def create_connector_instance(call: Call) -> Answer[ConnectorInstanceOut]:
    """Create a connector instance
    A connection of the connector `type` on a stored credential, active at once once the provider
    accepts the credential, with `config` as its defaults. It is listed under /api/v1/connections and
    offered to agents like any other connection."""
    body: NewConnectorInstance = call.body
    record = await call.core.credentials.make_connection(
        call.owner_id,
        name=body.name,
        connector_slug=body.type,
        credential=body.credential_id,
        config=body.config,
    )
    return Answer(ConnectorInstanceOut.of(record), 201)
