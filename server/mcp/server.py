"""The MCP server: Tendril's tools and resources for the calling agent, on the SDK's low-level
`Server` (the tool list depends on who is calling)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.request_state import RequestStateBoundary, RequestStateSecurity

from server.core import Core
from server.mcp.caller import CallerResolver, request_state_principal
from server.mcp.connect_flow import BACKGROUND, WAIT_TOOL, ConnectFlow
from server.mcp.job_tools import JobTools
from server.mcp.resources import ResourceHandlers
from server.mcp.tools import ToolHandlers
from server.mcp.workflow_tools import WorkflowTools

INSTRUCTIONS = (
    "Tendril gives you tools that act on the user's connected accounts (Slack, Telegram, ...). "
    "When a tool answers that a connection is missing, show the user the URL it gives, call "
    f"{WAIT_TOOL} with the connectionId to wait until they have connected, then call the tool again."
)
REQUEST_STATE_TTL_SECONDS = 30 * 60.0
REQUEST_STATE_KEY_INFO = b"tendril mcp requestState"


@dataclass(frozen=True, slots=True)
class McpServer:
    server: Server[Any]
    resources: ResourceHandlers  # its notify_* methods are what the change events should call


@asynccontextmanager
async def _lifespan(_server: Server[Any]) -> AsyncIterator[dict[str, Any]]:
    """Entered once per process (HTTP session manager or stdio run): a home for watcher tasks."""
    async with anyio.create_task_group() as background:
        try:
            yield {BACKGROUND: background}
        finally:
            background.cancel_scope.cancel()


def _no_param_headers(_tool_name: str) -> None:
    """No tool takes Mcp-Param-* headers: 2026-07-28 calls need no per-call tools/list to check them."""
    return None


async def _set_logging_level(
    ctx: ServerRequestContext[Any], params: types.SetLevelRequestParams
) -> types.EmptyResult:
    # Tendril sends no log notifications to clients; the level is accepted and has no effect.
    return types.EmptyResult()


def build_mcp_server(core: Core, resolve_caller: CallerResolver) -> McpServer:
    jobs = JobTools(core.jobs)
    workflows = WorkflowTools(core.workflows, core.executions)
    connect_flow = ConnectFlow(core.connections, core.catalog, core.waiters, core.links)
    tools = ToolHandlers(
        core.catalog,
        core.connections,
        connect_flow,
        jobs,
        resolve_caller,
        core.rate_limits,
        core.metrics,
        core.audit,
        workflows,
    )
    resources = ResourceHandlers(core.files, jobs, resolve_caller, workflows)

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
        on_list_tools=tools.list_tools,
        on_call_tool=tools.call_tool,
        on_list_resources=resources.list_resources,
        on_list_resource_templates=resources.list_templates,
        on_read_resource=resources.read_resource,
        on_subscribe_resource=resources.subscribe,
        on_unsubscribe_resource=resources.unsubscribe,
        on_subscriptions_listen=resources.listen,
        on_completion=complete,
    )
    # Registered directly: the constructor argument warns that logging is deprecated in 2026-07-28,
    # but 2025 clients (and the conformance suite) still send logging/setLevel.
    server.add_request_handler("logging/setLevel", types.SetLevelRequestParams, _set_logging_level)
    # Seals the 2026-07-28 requestState: keyed from the master key, so every replica opens it.
    security = RequestStateSecurity(
        keys=[core.derive_key(REQUEST_STATE_KEY_INFO)],
        ttl=REQUEST_STATE_TTL_SECONDS,
        bind_principal=request_state_principal,
    )
    server.middleware.append(RequestStateBoundary(security, default_audience="tendril"))
    return McpServer(server, resources)
