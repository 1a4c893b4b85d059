"""/api/v1/connections: start a connection, submit its credential or follow its OAuth handshake,
rename it, set its defaults, run its actions, revoke it. Credentials never leave Tendril: an answer
says only whether one is stored."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from pydantic import Field, JsonValue, RootModel

from server.core import Core
from server.core.credentials import credential_ref
from server.core.errors import Invalid
from server.web.api.endpoint import (
    PROVIDER_ERRORS,
    Answer,
    ApiRequest,
    ApiResponse,
    Call,
    Deleted,
    api,
    examples,
)
from storage.repositories import ConnectionRecord, ConnectionStatus

ConfigValues = dict[str, str | int | None]


class ConnectionOut(ApiResponse):
    id: str = Field(description="The connection's id.")
    connector_slug: str = Field(description="Which connector it is of.")
    label: str = Field(description="The owner's name for it (unique per connector).")
    status: ConnectionStatus = Field(description="pending, active, needs_reauth or revoked.")
    config: dict[str, Any] = Field(description="Defaults for omitted parameters (defaultChannel, ...).")
    account: dict[str, Any] = Field(description="Non-secret facts about the account (bot name, mailbox).")
    has_credentials: bool = Field(description="Whether a credential is stored (it is never shown).")
    credential_id: str | None = Field(description="The credential object it was made from, if any.")
    auth_method: str = Field(description="oauth, api_key or none.")
    scopes: list[str] | None = Field(description="Scopes the provider granted (OAuth).")
    token_expires_at: datetime | None = Field(description="When the access token expires (OAuth).")
    last_error: str | None = Field(description="Why it needs attention, if it does.")
    connect_url: str | None = Field(description="Where a person completes it, while it is not active.")
    created_at: datetime = Field(description="When it was made.")
    updated_at: datetime = Field(description="When it last changed.")
    deleted_at: datetime | None = Field(description="When it was revoked.")

    @classmethod
    def of(cls, core: Core, record: ConnectionRecord) -> ConnectionOut:
        return cls(
            id=str(record.id),
            connector_slug=record.connector_slug,
            label=record.label,
            status=record.status,
            config=dict(record.config),
            account=dict(record.account),
            has_credentials=record.sealed_credentials is not None,
            credential_id=credential_ref(record.credential_id) if record.credential_id else None,
            auth_method=record.auth_method,
            scopes=list(record.scopes) if record.scopes is not None else None,
            token_expires_at=record.token_expires_at,
            last_error=record.last_error,
            connect_url=core.links.connect_page(record.id)
            if record.status != ConnectionStatus.ACTIVE
            else None,
            created_at=record.created_at,
            updated_at=record.updated_at,
            deleted_at=record.deleted_at,
        )


class ConnectionList(RootModel[list[ConnectionOut]]):
    pass


class StartedConnection(ApiResponse):
    connection: ConnectionOut = Field(description="The new (or reused) connection.")
    oauth_url: str | None = Field(description="Where a person approves access, for OAuth connections.")
    credential_submit_url: str | None = Field(description="Where its credential is posted, for API-key ones.")


class SubmittedCredentials(ApiResponse):
    connection: ConnectionOut = Field(description="The connection, active once the credential verified.")


class OAuthStatus(ApiResponse):
    connection_id: str = Field(description="The connection's id.")
    status: ConnectionStatus = Field(description="pending, active, needs_reauth or revoked.")
    auth_method: str = Field(description="oauth, api_key or none.")
    oauth_url: str | None = Field(description="Where a person (re)approves access, while not active.")
    scopes: list[str] | None = Field(description="Scopes the provider granted.")
    last_error: str | None = Field(description="Why the last handshake ended, if it failed.")

    @classmethod
    def of(cls, core: Core, record: ConnectionRecord, *, restarted: bool = False) -> OAuthStatus:
        waiting = record.status != ConnectionStatus.ACTIVE or restarted
        return cls(
            connection_id=str(record.id),
            status=record.status,
            auth_method=record.auth_method,
            oauth_url=core.oauth.start_url(record) if record.auth_method == "oauth" and waiting else None,
            scopes=list(record.scopes) if record.scopes is not None else None,
            last_error=record.last_error,
        )


class ActionResult(ApiResponse):
    data: dict[str, Any] = Field(description="The action's result (its output schema is in the catalog).")
    connection_id: str = Field(description="The connection it ran on.")


# -- requests ------------------------------------------------------------------------------------
class StartConnection(ApiRequest):
    model_config = examples({"connectorSlug": "github", "label": "Personal GitHub"})
    connector_slug: str | None = Field(None, description="The connector, e.g. slack.")
    label: str | None = Field(None, description="A name for it; the connector's name by default.")
    config: ConfigValues | None = Field(None, description="Defaults for omitted parameters (defaultChannel).")
    field_messages: ClassVar[dict[str, str]] = {
        "connectorSlug": "connectorSlug must be a string",
        "label": "'label' must be a string",
        "config": "config must be a JSON object of strings and numbers",
    }


class UpdateConnection(ApiRequest, extra="forbid"):
    model_config = examples({"label": "Production Slack", "config": {"defaultChannel": "#general"}})
    label: str | None = Field(None, description="A new name.")
    config: ConfigValues | None = Field(None, description="Defaults to set (merged into the current ones).")
    field_messages: ClassVar[dict[str, str]] = StartConnection.field_messages
    takes: ClassVar[str] = "PATCH takes label and config"


class CredentialSubmission(RootModel[dict[str, JsonValue]]):
    """The credential's fields (`{"bot_token": ...}`), bare or as `{"credentials": {...}}`; which
    fields depend on the connector (its catalog entry's credentialFields)."""

    def fields(self) -> dict[str, JsonValue]:
        body = self.root
        if set(body) != {"credentials"}:
            return body
        inner = body["credentials"]
        if not isinstance(inner, dict):
            raise Invalid("credentials must be a JSON object of credential fields", field="credentials")
        return inner


class RunAction(ApiRequest):
    model_config = examples({"parameters": {"channel": "#general", "text": "Deploy finished"}})
    parameters: dict[str, Any] = Field(default_factory=dict, description="The action's parameters.")
    field_messages: ClassVar[dict[str, str]] = {"parameters": "'parameters' must be a JSON object"}


# -- routes --------------------------------------------------------------------------------------
@api("write", body=StartConnection, response=StartedConnection, success=(201, 200), creates="/connection/id")
async def create_connection(call: Call) -> Answer[StartedConnection]:
    """Start a connection
    A new connection waits for its credential (API-key connectors: post it to
    credentialSubmitUrl) or its OAuth approval (send a person to oauthUrl). A live connection of
    the same connector and label is answered again (200) instead of making another."""
    core, body = call.core, call.body
    assert isinstance(body, StartConnection)
    connector = core.connections.connector(body.connector_slug)
    record, created = await core.connections.start(
        call.owner_id, connector, label=body.label, config=body.config
    )
    is_oauth = record.auth_method == "oauth"
    active = record.status == ConnectionStatus.ACTIVE
    started = StartedConnection(
        connection=ConnectionOut.of(core, record),
        oauth_url=core.oauth.start_url(record) if is_oauth and not active else None,
        credential_submit_url=None if is_oauth else core.links.credential_submit(record.id),
    )
    return Answer(started, 200 if active or not created else 201)


@api("read", response=ConnectionList)
async def list_connections(call: Call) -> ConnectionList:
    """List connections
    The owner's live connections, newest first."""
    return ConnectionList(
        [ConnectionOut.of(call.core, r) for r in await call.core.connections.list(call.owner_id)]
    )


@api("read", response=ConnectionOut, ids={"id": "connection id"})
async def get_connection(call: Call) -> ConnectionOut:
    """Get a connection"""
    return ConnectionOut.of(call.core, await call.core.connections.get(call.owner_id, call.ids["id"]))


@api("write", body=UpdateConnection, response=ConnectionOut, ids={"id": "connection id"})
async def update_connection(call: Call) -> ConnectionOut:
    """Rename a connection or set its defaults
    config is merged into the current defaults; a null value removes one."""
    body: UpdateConnection = call.body
    record = await call.core.connections.update(
        call.owner_id, call.ids["id"], label=body.label, config=body.config
    )
    return ConnectionOut.of(call.core, record)


@api("write", response=Deleted, ids={"id": "connection id"})
async def delete_connection(call: Call) -> Deleted:
    """Revoke a connection
    Its OAuth token is revoked at the provider where the provider allows it, and its credential is
    erased. A connection backed by a credential object leaves that credential as it is."""
    await call.core.connections.revoke(call.owner_id, call.ids["id"])
    return Deleted(deleted=True)


@api("read", response=OAuthStatus, ids={"id": "connection id"})
async def get_oauth_status(call: Call) -> OAuthStatus:
    """Get a connection's OAuth state"""
    return OAuthStatus.of(call.core, await call.core.connections.get(call.owner_id, call.ids["id"]))


@api("write", response=OAuthStatus, ids={"id": "connection id"})
async def restart_oauth(call: Call) -> OAuthStatus:
    """Restart a connection's OAuth handshake
    Earlier authorization links stop working; the connection waits for the new one."""
    record = await call.core.oauth.restart(call.owner_id, call.ids["id"])
    return OAuthStatus.of(call.core, record, restarted=True)


@api(
    "write",
    body=CredentialSubmission,
    response=SubmittedCredentials,
    ids={"id": "connection id"},
    errors=(502, 504),
)
async def submit_credentials(call: Call) -> SubmittedCredentials:
    """Submit a connection's credential
    The credential is checked against the connector's credential fields, verified with the
    provider, sealed, and the connection becomes active. It is never shown back."""
    submission: CredentialSubmission = call.body
    record = await call.core.connections.submit_credentials(
        call.owner_id, call.ids["id"], submission.fields()
    )
    return SubmittedCredentials(connection=ConnectionOut.of(call.core, record))


@api(
    "execute",
    body=RunAction,
    response=ActionResult,
    ids={"id": "connection id"},
    path={"action": "The action's name (see the connector's catalog entry)."},
    errors=PROVIDER_ERRORS,
)
async def run_connection_action(call: Call) -> ActionResult:
    """Run an action on a connection
    Omitted parameters are filled from the connection's defaults (defaultChannel, ...)."""
    core, body = call.core, call.body
    assert isinstance(body, RunAction)
    record = await core.connections.get(call.owner_id, call.ids["id"])
    action = core.connections.action(core.catalog[record.connector_slug], call.request.path_params["action"])
    result = await core.connections.run(record, action, body.parameters)
    return ActionResult(data=result.model_dump(mode="json"), connection_id=str(record.id))
