"""GET /api/v1/connectors: the connector catalog, with each connector's tools and, for API-key
connectors, the credential fields a connection asks for."""

from __future__ import annotations

from typing import Any

from pydantic import Field, RootModel

from connectors import Action, Connector, CredentialField
from server.core import Core
from server.web.api.endpoint import ApiRequest, ApiResponse, Call, api


def _absent_when_none(value: object) -> bool:
    return value is None


class ToolOut(ApiResponse):
    name: str = Field(description="The MCP tool name, `<connector>_<action>`.")
    action: str = Field(description="The action's name within its connector.")
    title: str = Field(description="A short human title.")
    description: str = Field(description="What the action does (what a model reads).")
    input_schema: dict[str, Any] = Field(description="JSON Schema of the parameters.")
    output_schema: dict[str, Any] = Field(description="JSON Schema of the result.")
    annotations: dict[str, bool] = Field(description="MCP tool annotations (readOnlyHint, ...).")
    scopes: list[str] = Field(description="Provider scopes the action needs.")

    @classmethod
    def of(cls, action: Action) -> ToolOut:
        return cls(
            name=action.tool_name,
            action=action.name,
            title=action.title,
            description=action.description,
            input_schema=action.input_model.model_json_schema(),
            output_schema=action.output_model.model_json_schema(),
            annotations=action.hints.as_mcp(),
            scopes=list(action.scopes),
        )


class ActionOut(ApiResponse):
    """The same action as the Integration Layer's catalog shows it."""

    name: str = Field(description="The action's name within its connector.")
    description: str = Field(description="What the action does.")
    input_schema: dict[str, Any] = Field(description="JSON Schema of the parameters.")
    output_schema: dict[str, Any] = Field(description="JSON Schema of the result.")


class CredentialFieldOut(ApiResponse):
    key: str = Field(description="The field's key in a credential submission.")
    label: str = Field(description="What to call it on a form.")
    required: bool = Field(description="Whether a credential must include it.")
    secret: bool = Field(description="Whether it is a secret (masked on forms, never shown back).")
    pattern: str | None = Field(
        default=None, exclude_if=_absent_when_none, description="A regular expression it must match."
    )
    description: str | None = Field(
        default=None, exclude_if=_absent_when_none, description="Where to find it."
    )
    placeholder: str | None = Field(
        default=None, exclude_if=_absent_when_none, description="An example of its shape."
    )

    @classmethod
    def of(cls, spec: CredentialField) -> CredentialFieldOut:
        return cls.model_validate(spec.model_dump())


class ConnectorOut(ApiResponse):
    slug: str = Field(description="The connector's id.")
    name: str = Field(description="Its display name.")
    description: str = Field(description="What it connects to.")
    auth_type: str = Field(description="How a new connection authenticates: oauth, api_key or none.")
    configured: bool = Field(description="False for an OAuth-only connector whose client is not set up.")
    availability: str = Field(description="available, not_configured, coming_soon or deprecated.")
    tools: list[ToolOut] = Field(description="Its actions, as MCP tools.")
    type: str = Field(description="The slug again, as the Integration Layer names it.")
    actions: list[ActionOut] = Field(description="Its actions, as the Integration Layer lists them.")
    availability_reason: str | None = Field(
        default=None, exclude_if=_absent_when_none, description="Why it is not available, when it is not."
    )
    credential_fields: list[CredentialFieldOut] | None = Field(
        default=None, exclude_if=_absent_when_none, description="What an API-key connection asks for."
    )

    @classmethod
    def of(cls, core: Core, item: Connector) -> ConnectorOut:
        spec = item.spec
        configured = core.connections.is_configured(item)
        availability = spec.availability if configured else "not_configured"
        auth_type = core.connections.auth_mode(item)
        reason = None
        if availability != "available":
            reason = (
                f"set TENDRIL_{spec.slug.upper()}_CLIENT_ID and _CLIENT_SECRET"
                if not configured
                else spec.availability_reason or f"connector is {spec.availability}"
            )
        return cls(
            slug=spec.slug,
            name=spec.name,
            description=spec.description,
            auth_type=auth_type,
            configured=configured,
            availability=availability,
            tools=[ToolOut.of(action) for action in item.actions.values()],
            type=spec.slug,
            actions=[
                ActionOut(
                    name=action.name,
                    description=action.description,
                    input_schema=action.input_model.model_json_schema(),
                    output_schema=action.output_model.model_json_schema(),
                )
                for action in item.actions.values()
            ],
            availability_reason=reason,
            credential_fields=[CredentialFieldOut.of(f) for f in spec.credential_fields]
            if auth_type == "api_key"
            else None,
        )


class ConnectorList(RootModel[list[ConnectorOut]]):
    pass


class CatalogQuery(ApiRequest):
    available: bool = Field(False, description="Only connectors that can be connected now.")


@api("read", query=CatalogQuery, response=ConnectorList)
async def list_connectors(call: Call) -> ConnectorList:
    """List the connector catalog
    Every connector with its actions (as MCP tools and in the Integration Layer's shape) and, for
    API-key connectors, the credential fields a connection asks for."""
    query: CatalogQuery = call.query
    items = [ConnectorOut.of(call.core, c) for c in call.core.catalog.values()]
    if query.available:
        items = [item for item in items if item.availability == "available"]
    return ConnectorList(items)
