"""The MCP server: each agent sees its allowed connectors' actions as tools.

Built on the SDK's low-level `Server`, because the tool list depends on who is calling. Callers
are agents; over HTTP they present their agent key as a Bearer token, over stdio the process was
started with one (`TENDRIL_AGENT_KEY`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cache
from typing import Any
from uuid import UUID

import mcp_types as types
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError

from connectors import Action, Connector
from connectors.errors import ConnectorError, InvalidInput
from server import errors
from server.hub import Hub
from storage.repositories import ConnectionRecord, ConnectionStatus

logger = logging.getLogger(__name__)

INSTRUCTIONS = (
    "Tendril gives you tools that act on the user's connected accounts (Slack, Telegram, ...). "
    "When a tool answers that a connection is missing, show the user the URL it gives, wait for "
    "them to connect, then call the tool again."
)
CONNECTION_ARGUMENT = "connection"


@dataclass(frozen=True, slots=True)
class Caller:
    agent_id: UUID
    owner_id: UUID
    allowed_connectors: frozenset[str]


class AgentKeyVerifier:
    """Turns an agent key into the SDK's AccessToken; the agent's facts ride in its claims."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub

    async def verify_token(self, token: str) -> AccessToken | None:
        agent = await self._hub.authenticate_agent(token)
        if agent is None:
            return None
        return AccessToken(
            token="",  # never keep the key itself around
            client_id=str(agent.id),
            scopes=[],
            subject=str(agent.owner_id),
            claims={"allowed_connectors": list(agent.allowed_connectors)},
        )


def caller_from_token(token: AccessToken) -> Caller:
    allowed = (token.claims or {}).get("allowed_connectors", [])
    return Caller(UUID(token.client_id), UUID(str(token.subject)), frozenset(allowed))


CallerResolver = Callable[[ServerRequestContext[Any]], Awaitable[Caller]]


async def caller_from_http(ctx: ServerRequestContext[Any]) -> Caller:
    request = ctx.request
    user = getattr(request, "scope", {}).get("user") if request is not None else None
    if not isinstance(user, AuthenticatedUser):
        # The transport's auth middleware runs first, so this means a wiring mistake.
        raise MCPError(types.INVALID_REQUEST, "unauthenticated request")
    return caller_from_token(user.access_token)


def fixed_agent_resolver(hub: Hub, agent_key: str) -> CallerResolver:
    """For stdio: the process speaks for one agent; its record is re-read per request."""

    async def resolve(_ctx: ServerRequestContext[Any]) -> Caller:
        token = await AgentKeyVerifier(hub).verify_token(agent_key)
        if token is None:
            raise MCPError(types.INVALID_REQUEST, "TENDRIL_AGENT_KEY is not a valid agent key")
        return caller_from_token(token)

    return resolve


@cache
def _schema(model: type[Any]) -> dict[str, Any]:
    return model.model_json_schema()


_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Present instead of the result when isError is true: what went wrong and what to do.",
    "properties": {
        "code": {"type": "string", "description": "Stable error code, e.g. not_connected, rate_limited."},
        "message": {"type": "string", "description": "What happened, safe to show the user."},
    },
    "required": ["code", "message"],
}


@cache
def _output_schema(model: type[Any]) -> dict[str, Any]:
    """The result model's schema, also admitting the `{"error": {...}}` of an error result.

    Error results carry their facts in structuredContent too, and some clients (MCP Inspector)
    validate every result against the output schema, errors included.
    """
    schema = dict(_schema(model))
    schema["properties"] = {**schema.get("properties", {}), "error": _ERROR_SCHEMA}
    required = schema.pop("required", None)
    if required:
        schema["anyOf"] = [{"required": required}, {"required": ["error"]}]
    return schema


class ToolHandlers:
    def __init__(self, hub: Hub, resolve_caller: CallerResolver) -> None:
        self._hub = hub
        self._resolve_caller = resolve_caller

    def _visible_connectors(self, caller: Caller) -> list[Connector]:
        return [c for slug, c in self._hub.catalog.items() if slug in caller.allowed_connectors]

    async def _active_by_connector(
        self, caller: Caller, slugs: list[str]
    ) -> dict[str, list[ConnectionRecord]]:
        records = await self._hub.store.list_connections(
            caller.owner_id, connector_slugs=slugs, status=ConnectionStatus.ACTIVE
        )
        grouped: dict[str, list[ConnectionRecord]] = {}
        # Oldest first: the first connection made is the default one.
        for record in sorted(records, key=lambda r: (r.created_at, str(r.id))):
            grouped.setdefault(record.connector_slug, []).append(record)
        return grouped

    async def list_tools(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        caller = await self._resolve_caller(ctx)
        connectors = self._visible_connectors(caller)
        active = await self._active_by_connector(caller, [c.slug for c in connectors])
        tools = [
            self._tool(connector, action, active.get(connector.slug, []))
            for connector in connectors
            for action in connector.actions.values()
        ]
        return types.ListToolsResult(tools=tools)

    def _tool(self, connector: Connector, action: Action, active: list[ConnectionRecord]) -> types.Tool:
        input_schema = dict(_schema(action.input_model))
        if len(active) > 1:
            labels = [record.label for record in active]
            input_schema["properties"] = {
                **input_schema.get("properties", {}),
                CONNECTION_ARGUMENT: {
                    "type": "string",
                    "enum": labels,
                    "description": f"Which {connector.spec.name} connection to use; "
                    f"defaults to '{labels[0]}'.",
                },
            }
        hints = action.hints
        return types.Tool(
            name=action.tool_name,
            title=f"{connector.spec.name}: {action.title}",
            description=action.description,
            input_schema=input_schema,
            output_schema=_output_schema(action.output_model),
            annotations=types.ToolAnnotations(
                title=f"{connector.spec.name}: {action.title}",
                read_only_hint=hints.read_only,
                destructive_hint=hints.destructive,
                idempotent_hint=hints.idempotent or hints.read_only,
                open_world_hint=hints.open_world,
            ),
        )

    async def call_tool(
        self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        caller = await self._resolve_caller(ctx)
        action = self._hub.catalog.find_tool(params.name)
        if action is None or action.connector_slug not in caller.allowed_connectors:
            # Identical for a tool that does not exist and one this agent may not use.
            raise MCPError(types.INVALID_PARAMS, f"Unknown tool: {params.name}")
        arguments = dict(params.arguments or {})
        try:
            connection = await self._pick_connection(caller, action, arguments.pop(CONNECTION_ARGUMENT, None))
            result = await self._hub.run_on_connection(connection, action, arguments)
        except ConnectorError as error:
            return errors.tool_result_from_connector(error)
        except Exception as exc:
            return errors.tool_result_from_unexpected(exc, params.name)
        return errors.tool_success(result.model_dump(mode="json"))

    async def _pick_connection(self, caller: Caller, action: Action, label: Any) -> ConnectionRecord:
        slug = action.connector_slug
        active = (await self._active_by_connector(caller, [slug])).get(slug, [])
        if label is not None:
            match = [record for record in active if record.label == label]
            if not match:
                choices = ", ".join(repr(r.label) for r in active) or "none"
                raise InvalidInput(
                    f"no active connection labelled {label!r}; choose one of: {choices}",
                    field=CONNECTION_ARGUMENT,
                )
            return match[0]
        if active:
            return active[0]
        # Nothing connected yet: prepare a pending connection and tell the agent where to send the user.
        connector = self._hub.catalog[slug]
        pending, _ = await self._hub.start_connection(caller.owner_id, connector, None)
        raise self._hub.not_connected(pending, reauth=pending.status == ConnectionStatus.NEEDS_REAUTH)

    async def list_resources(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        await self._resolve_caller(ctx)
        return types.ListResourcesResult(resources=[])

    async def complete(
        self, ctx: ServerRequestContext[Any], params: types.CompleteRequestParams
    ) -> types.CompleteResult:
        await self._resolve_caller(ctx)
        return types.CompleteResult(completion=types.Completion(values=[], total=0, has_more=False))

    async def set_logging_level(
        self, ctx: ServerRequestContext[Any], params: types.SetLevelRequestParams
    ) -> types.EmptyResult:
        # Tendril sends no log notifications to clients; the level is accepted and has no effect.
        return types.EmptyResult()


def build_mcp_server(hub: Hub, resolve_caller: CallerResolver) -> Server[Any]:
    handlers = ToolHandlers(hub, resolve_caller)
    server: Server[Any] = Server(
        "tendril",
        version="0.1.0",
        title="Tendril",
        instructions=INSTRUCTIONS,
        on_list_tools=handlers.list_tools,
        on_call_tool=handlers.call_tool,
        on_list_resources=handlers.list_resources,
        on_completion=handlers.complete,
    )
    # Registered directly: the constructor argument warns that logging is deprecated in 2026-07-28,
    # but 2025 clients (and the conformance suite) still send logging/setLevel.
    server.add_request_handler("logging/setLevel", types.SetLevelRequestParams, handlers.set_logging_level)
    return server
