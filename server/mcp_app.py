"""The MCP server: each agent sees its allowed connectors' actions as tools.

Built on the SDK's low-level `Server`, because the tool list depends on who is calling. Callers
are agents; over HTTP they present their agent key as a Bearer token, over stdio the process was
started with one (`TENDRIL_AGENT_KEY`).

When a call needs a connection the user has not made yet (or must make again), Tendril prepares a
pending connection and answers according to what the client can do:

- 2025-11-25 with URL elicitation: error -32042 whose elicitation points at the connect page, then
  `notifications/elicitation/complete` once the user has finished, so the client retries;
- 2026-07-28 with URL elicitation: an `InputRequiredResult` with a URL input request and a sealed
  `requestState`; the client's retry runs the call;
- anyone else: an `isError` result naming the link, and `tendril_wait_for_connection` to block until
  the user has finished.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import cache
from typing import Any
from uuid import UUID, uuid4

import anyio
import anyio.abc
import mcp_types as types
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.request_state import RequestStateBoundary, RequestStateSecurity
from mcp.server.subscriptions import ListenHandler
from mcp.shared.exceptions import MCPError, UrlElicitationRequiredError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from connectors import Action, Connector
from connectors.errors import ConnectorError, InvalidInput, NotConnected
from server import errors
from server.errors import ApiError
from server.hub import Hub
from server.mcp_jobs import JOB_TOOL_DEFINITIONS, JOB_TOOLS, JobTools
from server.mcp_resources import ResourceHandlers
from storage.repositories import ConnectionRecord, ConnectionStatus

logger = logging.getLogger(__name__)

WAIT_TOOL = "tendril_wait_for_connection"
WAIT_MAX_SECONDS = 60

INSTRUCTIONS = (
    "Tendril gives you tools that act on the user's connected accounts (Slack, Telegram, ...). "
    "When a tool answers that a connection is missing, show the user the URL it gives, call "
    f"{WAIT_TOOL} with the connectionId to wait until they have connected, then call the tool again."
)
CONNECTION_ARGUMENT = "connection"

# A 2026-07-28 client retries as soon as the user has agreed to open the link, usually before they
# have finished there: the retry waits this long for the connection before answering it is missing.
RESUME_GRACE_SECONDS = 60.0
# How long this process watches the database for a connection it sent a URL elicitation about, to
# notify the client when another replica (or, for `tendril mcp`, the web server) completes it.
ELICITATION_WATCH_SECONDS = 15 * 60.0
REQUEST_STATE_TTL_SECONDS = 30 * 60.0
REQUEST_STATE_KEY_INFO = b"tendril mcp requestState"

_CONNECT_INPUT = "connect"  # the key of the URL request in an InputRequiredResult
_STATE_PREFIX = "connect:"
_BAD_STATE = "Invalid or expired requestState"
_BACKGROUND = "tendril.background"  # lifespan-context key of the task group for watchers
# Handshake-era versions that define URL elicitation and error -32042.
_URL_ELICITATION_HANDSHAKE_VERSIONS = frozenset({"2025-11-25"})


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


def _http_user(ctx: ServerRequestContext[Any]) -> AuthenticatedUser | None:
    request = ctx.request
    user = getattr(request, "scope", {}).get("user") if request is not None else None
    return user if isinstance(user, AuthenticatedUser) else None


async def caller_from_http(ctx: ServerRequestContext[Any]) -> Caller:
    user = _http_user(ctx)
    if user is None:
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


def request_state_principal(ctx: ServerRequestContext[Any]) -> str | None:
    """Binds a sealed requestState to the agent that was given it (None over stdio: one agent)."""
    user = _http_user(ctx)
    return f"agent:{user.access_token.client_id}" if user is not None else None


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


# -- tendril_wait_for_connection -------------------------------------------------------------------
class WaitForConnectionInput(BaseModel):
    model_config = ConfigDict(extra="forbid", title="WaitForConnectionInput")

    connection_id: str = Field(
        description="The connectionId from the not_connected error of the tool that needs the connection."
    )
    timeout_seconds: int = Field(
        default=WAIT_MAX_SECONDS,
        ge=1,
        le=WAIT_MAX_SECONDS,
        description=f"How long to wait at most (1-{WAIT_MAX_SECONDS}); call again to keep waiting.",
    )


_WAIT_RESULT_FIELDS = ["connectionId", "status", "connected"]
_WAIT_OUTPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "connectionId": {"type": "string", "description": "The connection waited for."},
        "status": {
            "type": "string",
            "enum": [ConnectionStatus.ACTIVE, ConnectionStatus.PENDING, ConnectionStatus.NEEDS_REAUTH],
            "description": "The connection's status when the wait ended.",
        },
        "connected": {
            "type": "boolean",
            "description": "True when the connection is active: retry the original tool call now.",
        },
        "error": _ERROR_SCHEMA,
    },
    "anyOf": [{"required": _WAIT_RESULT_FIELDS}, {"required": ["error"]}],
}
_WAIT_TITLE = "Tendril: wait for a connection"
WAIT_TOOL_DEFINITION = types.Tool(
    name=WAIT_TOOL,
    title=_WAIT_TITLE,
    description=(
        "Wait until the user has finished connecting an account. After a tool answered not_connected "
        "and you showed the user its connect link, call this with that error's connectionId: it returns "
        "as soon as the connection is active (connected=true; then retry the original call), or after "
        f"timeout_seconds (at most {WAIT_MAX_SECONDS}) with connected=false; call it again to keep waiting."
    ),
    input_schema=_schema(WaitForConnectionInput),
    output_schema=_WAIT_OUTPUT_SCHEMA,
    annotations=types.ToolAnnotations(
        title=_WAIT_TITLE,
        read_only_hint=True,
        destructive_hint=False,
        idempotent_hint=True,
        open_world_hint=False,
    ),
)
_UNKNOWN_CONNECTION = (
    "No connection with that id is available to this agent. "
    "Use the connectionId from the not_connected error of the tool you called."
)


# -- what the client can do ------------------------------------------------------------------------
def _is_modern(ctx: ServerRequestContext[Any]) -> bool:
    return ctx.protocol_version in MODERN_PROTOCOL_VERSIONS


def _accepts_url_elicitation(ctx: ServerRequestContext[Any]) -> bool:
    """The client declared URL-mode elicitation (at initialize, or in this request's _meta)."""
    caps = ctx.session.client_capabilities
    if caps is None or caps.elicitation is None or caps.elicitation.url is None:
        return False
    return _is_modern(ctx) or ctx.protocol_version in _URL_ELICITATION_HANDSHAKE_VERSIONS


def _resumed_connection_id(
    ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
) -> UUID | None:
    """The connection a 2026-07-28 retry comes back for, from the requestState Tendril minted.

    The RequestStateBoundary middleware has already verified the seal, expiry, audience, the
    agent and the tool call it was issued for; this only reads what Tendril put in.
    """
    if not _is_modern(ctx) or params.request_state is None:
        return None
    state = params.request_state
    try:
        if not state.startswith(_STATE_PREFIX):
            raise ValueError(state)
        return UUID(state.removeprefix(_STATE_PREFIX))
    except ValueError:
        logger.warning("sealed requestState of unknown shape on tools/call %s", params.name)
        raise MCPError(types.INVALID_PARAMS, _BAD_STATE) from None


def _connect_answer(params: types.CallToolRequestParams) -> str | None:
    """accept, decline or cancel: what the user said to the URL request (None if not answered)."""
    response = (params.input_responses or {}).get(_CONNECT_INPUT)
    return response.action if isinstance(response, types.ElicitResult) else None


def _not_connected_result(needed: NotConnected) -> types.CallToolResult:
    message = (
        f"{needed.message} To wait until they have, call {WAIT_TOOL} with "
        f'connection_id "{needed.connection_id}".'
    )
    return errors.tool_error(message, {**needed.facts(), "message": message})


class ToolHandlers:
    def __init__(self, hub: Hub, resolve_caller: CallerResolver) -> None:
        self._hub = hub
        self._resolve_caller = resolve_caller
        self._watching: set[UUID] = set()
        self.jobs = JobTools(hub)

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
        if connectors:
            tools.append(WAIT_TOOL_DEFINITION)
        if self.jobs.visible(caller):
            tools += JOB_TOOL_DEFINITIONS
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
    ) -> types.CallToolResult | types.InputRequiredResult:
        caller = await self._resolve_caller(ctx)
        if params.name == WAIT_TOOL and self._visible_connectors(caller):
            return await self._wait_for_connection(caller, params.arguments or {})
        if params.name in JOB_TOOLS and self.jobs.visible(caller):
            return await self.jobs.call(caller, params.name, dict(params.arguments or {}))
        action = self._hub.catalog.find_tool(params.name)
        if action is None or action.connector_slug not in caller.allowed_connectors:
            # Identical for a tool that does not exist and one this agent may not use.
            raise MCPError(types.INVALID_PARAMS, f"Unknown tool: {params.name}")
        arguments = dict(params.arguments or {})
        label = arguments.pop(CONNECTION_ARGUMENT, None)
        resuming = _resumed_connection_id(ctx, params)
        connection: ConnectionRecord | None = None
        try:
            if resuming is not None:
                resumed = await self._resume(caller, action, resuming, _connect_answer(params))
                if isinstance(resumed, types.CallToolResult):
                    return resumed
                connection = resumed
            if connection is None:
                connection = await self._pick_connection(caller, action, label)
            if connection.status != ConnectionStatus.ACTIVE:
                reauth = connection.status == ConnectionStatus.NEEDS_REAUTH
                raise self._hub.not_connected(connection, reauth=reauth)
            result = await self._hub.run_on_connection(connection, action, arguments)
        except NotConnected as needed:
            if connection is None or resuming is not None:
                return _not_connected_result(needed)  # a retry never asks twice
            return self._ask_to_connect(ctx, caller, connection, needed)
        except ConnectorError as error:
            return errors.tool_result_from_connector(error)
        except ApiError as error:  # e.g. an OAuth connector whose client is not configured
            return errors.tool_error(error.message, {"code": error.code.lower(), "message": error.message})
        except Exception as exc:
            return errors.tool_result_from_unexpected(exc, params.name)
        return errors.tool_success(result.model_dump(mode="json"))

    async def _pick_connection(self, caller: Caller, action: Action, label: Any) -> ConnectionRecord:
        """The connection to run on; when none is active, the (new or reused) pending one."""
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
        # Nothing connected yet: prepare a pending connection for the user to complete.
        connector = self._hub.catalog[slug]
        pending, _ = await self._hub.start_connection(caller.owner_id, connector, None)
        return pending

    # -- a connection is needed ------------------------------------------------------------------
    def _ask_to_connect(
        self,
        ctx: ServerRequestContext[Any],
        caller: Caller,
        connection: ConnectionRecord,
        needed: NotConnected,
    ) -> types.CallToolResult | types.InputRequiredResult:
        """Send the user to the connect page the way this client understands, or say it in-band."""
        if not _accepts_url_elicitation(ctx):
            return _not_connected_result(needed)
        message = self._elicitation_message(connection)
        if _is_modern(ctx):
            # An InputRequiredResult must never reach a 2025 client (it answers -32603 there).
            url_request = types.ElicitRequestURLParams(message=message, url=needed.connect_url)
            return types.InputRequiredResult(
                input_requests={_CONNECT_INPUT: types.ElicitRequest(params=url_request)},
                request_state=f"{_STATE_PREFIX}{connection.id}",  # sealed by RequestStateBoundary
            )
        elicitation_id = str(uuid4())
        session = ctx.session

        async def notify() -> None:
            # No related request: it goes out on the session's standalone (GET) stream.
            await session.send_elicit_complete(elicitation_id)

        self._hub.waiters.elicitation_sent(connection.id, elicitation_id, notify)
        self._watch(ctx, caller.owner_id, connection.id)
        raise UrlElicitationRequiredError(
            [
                types.ElicitRequestURLParams(
                    message=message, url=needed.connect_url, elicitation_id=elicitation_id
                )
            ],
            message=needed.message,
        )

    def _elicitation_message(self, connection: ConnectionRecord) -> str:
        connector = self._hub.catalog[connection.connector_slug]
        name = connector.spec.name
        if connection.status == ConnectionStatus.PENDING:
            why = f"This needs your {name} account, which is not connected to Tendril yet"
        else:
            why = f"Your {name} connection needs to be connected again"
        if connection.auth_method == "oauth":
            how = f"sign in to {name} and approve access"
        else:
            fields = [f.label for f in connector.spec.credential_fields if f.required]
            how = f"enter the {' and '.join(fields) or 'credentials'} for {name} in Tendril"
        return (
            f"{why} (connection '{connection.label}'). "
            f"Open the link to {how}; the call continues once you are done."
        )

    async def _resume(
        self, caller: Caller, action: Action, connection_id: UUID, answer: str | None
    ) -> ConnectionRecord | types.CallToolResult | None:
        """A 2026-07-28 retry: the connection to run on, the answer to give, or None to pick afresh."""
        connection = await self._owned_connection(caller, connection_id)
        if connection is None or connection.connector_slug != action.connector_slug:
            return None  # revoked meanwhile: the normal path answers (in-band, no second request)
        if answer in ("decline", "cancel"):
            name = self._hub.catalog[connection.connector_slug].spec.name
            url = self._hub.connect_page_url(connection)
            message = (
                f"The user declined to connect {name} (connection '{connection.label}'), so the call "
                f"was not made. If they change their mind, they can open {url} and you can retry."
            )
            facts = {"code": "connection_declined", "connectUrl": url, "connectionId": str(connection.id)}
            return errors.tool_error(message, {**facts, "message": message})
        if connection.status != ConnectionStatus.ACTIVE and answer == "accept":
            # "accept" means the user agreed to open the link; give them time to finish there.
            await self._hub.waiters.wait(
                connection.id, RESUME_GRACE_SECONDS, self._is_active(caller.owner_id, connection.id)
            )
            connection = await self._owned_connection(caller, connection_id)
        return connection

    def _watch(self, ctx: ServerRequestContext[Any], owner_id: UUID, connection_id: UUID) -> None:
        """Notify this process's elicited clients when the database says the connection is active."""
        lifespan = ctx.lifespan_context
        background = lifespan.get(_BACKGROUND) if isinstance(lifespan, Mapping) else None
        if not isinstance(background, anyio.abc.TaskGroup) or connection_id in self._watching:
            return
        self._watching.add(connection_id)
        background.start_soon(self._watch_connection, owner_id, connection_id)

    async def _watch_connection(self, owner_id: UUID, connection_id: UUID) -> None:
        try:
            waiters = self._hub.waiters
            if await waiters.wait(
                connection_id, ELICITATION_WATCH_SECONDS, self._is_active(owner_id, connection_id)
            ):
                await waiters.connected(connection_id)  # a no-op when this process already did it
            else:
                waiters.forget(connection_id)  # nobody finished: release the sessions kept for it
        except Exception:
            logger.warning("watching connection %s for its elicitation failed", connection_id, exc_info=True)
        finally:
            self._watching.discard(connection_id)

    # -- tendril_wait_for_connection --------------------------------------------------------------
    async def _wait_for_connection(
        self, caller: Caller, arguments: Mapping[str, Any]
    ) -> types.CallToolResult:
        try:
            request = WaitForConnectionInput.model_validate(arguments)
        except ValidationError as exc:
            return errors.tool_result_from_connector(InvalidInput.from_validation(exc))
        connection = await self._owned_connection(caller, request.connection_id)
        if connection is not None:
            await self._hub.waiters.wait(
                connection.id, request.timeout_seconds, self._is_active(caller.owner_id, connection.id)
            )
            connection = await self._owned_connection(caller, connection.id)  # revoked meanwhile?
        if connection is None:
            # Identical for an id that does not exist, another owner's, and a connector not allowed.
            return errors.tool_error(
                _UNKNOWN_CONNECTION, {"code": "not_found", "message": _UNKNOWN_CONNECTION}
            )
        return errors.tool_success(
            {
                "connectionId": str(connection.id),
                "status": connection.status,
                "connected": connection.status == ConnectionStatus.ACTIVE,
            }
        )

    async def _owned_connection(self, caller: Caller, connection_id: str | UUID) -> ConnectionRecord | None:
        """The caller's owner's live connection, if its connector is one this agent may use."""
        try:
            parsed = connection_id if isinstance(connection_id, UUID) else UUID(connection_id)
        except ValueError:
            return None
        record = await self._hub.store.get_connection(caller.owner_id, parsed)
        if (
            record is None
            or record.status == ConnectionStatus.REVOKED
            or record.connector_slug not in caller.allowed_connectors
        ):
            return None
        return record

    def _is_active(self, owner_id: UUID, connection_id: UUID) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            record = await self._hub.store.get_connection(owner_id, connection_id)
            return record is not None and record.status == ConnectionStatus.ACTIVE

        return check

    # -- the rest of the protocol -------------------------------------------------------------------
    async def set_logging_level(
        self, ctx: ServerRequestContext[Any], params: types.SetLevelRequestParams
    ) -> types.EmptyResult:
        # Tendril sends no log notifications to clients; the level is accepted and has no effect.
        return types.EmptyResult()


@asynccontextmanager
async def _lifespan(_server: Server[Any]) -> AsyncIterator[dict[str, Any]]:
    """Entered once per process (HTTP session manager or stdio run): a home for watcher tasks."""
    async with anyio.create_task_group() as background:
        try:
            yield {_BACKGROUND: background}
        finally:
            background.cancel_scope.cancel()


def _no_param_headers(_tool_name: str) -> None:
    """No tool takes Mcp-Param-* headers: 2026-07-28 calls need no per-call tools/list to check them."""
    return None


def build_mcp_server(hub: Hub, resolve_caller: CallerResolver) -> Server[Any]:
    handlers = ToolHandlers(hub, resolve_caller)
    resources = ResourceHandlers(hub, resolve_caller, handlers.jobs)

    async def complete(
        ctx: ServerRequestContext[Any], params: types.CompleteRequestParams
    ) -> types.CompleteResult:
        values = (await resources.complete(ctx, params))[:100]
        return types.CompleteResult(
            completion=types.Completion(values=values, total=len(values), has_more=False)
        )

    server: Server[Any] = Server(
        "tendril",
        version="0.1.0",
        title="Tendril",
        instructions=INSTRUCTIONS,
        lifespan=_lifespan,
        get_tool_input_schema=_no_param_headers,
        on_list_tools=handlers.list_tools,
        on_call_tool=handlers.call_tool,
        on_list_resources=resources.list_resources,
        on_list_resource_templates=resources.list_templates,
        on_read_resource=resources.read_resource,
        on_subscribe_resource=resources.subscribe,
        on_unsubscribe_resource=resources.unsubscribe,
        on_subscriptions_listen=ListenHandler(resources.bus),
        on_completion=complete,
    )
    # Registered directly: the constructor argument warns that logging is deprecated in 2026-07-28,
    # but 2025 clients (and the conformance suite) still send logging/setLevel.
    server.add_request_handler("logging/setLevel", types.SetLevelRequestParams, handlers.set_logging_level)
    # Seals the 2026-07-28 requestState: keyed from the master key, so every replica opens it.
    security = RequestStateSecurity(
        keys=[hub.vault.keyring.derive(REQUEST_STATE_KEY_INFO)],
        ttl=REQUEST_STATE_TTL_SECONDS,
        bind_principal=request_state_principal,
    )
    server.middleware.append(RequestStateBoundary(security, default_audience="tendril"))
    return server
