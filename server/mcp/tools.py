"""tools/list and tools/call: each agent sees its allowed connectors' actions as tools, plus the
connect-flow, job and workflow tools it can use, and calls them on its owner's connections."""

from __future__ import annotations

import time
from typing import Any

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError

from connectors import Action, Catalog, Connector
from connectors.errors import InvalidInput, NotConnected
from server.core.audit import Actor, Audit, acting_as
from server.core.connections import Connections
from server.core.metrics import Metrics
from server.core.rate_limits import OverQuota, RateLimits
from server.mcp import definitions, errors
from server.mcp.caller import Caller, CallerResolver
from server.mcp.connect_flow import WAIT_TOOL, WAIT_TOOL_DEFINITION, ConnectFlow, not_connected_result
from server.mcp.job_tools import JOB_TOOLS, JobTools
from server.mcp.workflow_tools import WORKFLOW_TOOLS, WorkflowTools
from storage.repositories import ConnectionRecord

CONNECTION_ARGUMENT = "connection"
TENDRIL_TOOLS = frozenset({WAIT_TOOL, *JOB_TOOLS, *WORKFLOW_TOOLS})


def outcome_of(result: types.CallToolResult | types.InputRequiredResult) -> str:
    """ "ok", the error code of a failed call, or "input_required" when the user is asked to connect."""
    if isinstance(result, types.InputRequiredResult):
        return "input_required"
    if not result.is_error:
        return "ok"
    error = (result.structured_content or {}).get("error")
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) and code.isidentifier() else "error"


def action_tool(connector: Connector, action: Action, active: list[ConnectionRecord]) -> types.Tool:
    """The tool for an action; with several active connections, a `connection` argument picks one."""
    input_schema = dict(definitions.schema(action.input_model))
    if len(active) > 1:
        labels = [record.label for record in active]
        input_schema["properties"] = {
            **input_schema.get("properties", {}),
            CONNECTION_ARGUMENT: {
                "type": "string",
                "enum": labels,
                "description": f"Which {connector.spec.name} connection to use; defaults to '{labels[0]}'.",
            },
        }
    return definitions.tool(
        action.tool_name,
        f"{connector.spec.name}: {action.title}",
        action.description,
        input_schema=input_schema,
        output=definitions.output_schema(action.output_model),
        hints=action.hints,
    )


class ToolHandlers:
    def __init__(
        self,
        catalog: Catalog,
        connections: Connections,
        connect_flow: ConnectFlow,
        jobs: JobTools,
        resolve_caller: CallerResolver,
        rate_limits: RateLimits,
        metrics: Metrics,
        audit: Audit,
        workflows: WorkflowTools,
    ) -> None:
        self._workflows = workflows
        self._rate_limits = rate_limits
        self._audit = audit
        self._metrics = metrics
        self._catalog = catalog
        self._connections = connections
        self._connect = connect_flow
        self._jobs = jobs
        self._resolve_caller = resolve_caller

    def _visible_connectors(self, caller: Caller) -> list[Connector]:
        return [c for slug, c in self._catalog.items() if caller.allows(slug)]

    async def list_tools(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        caller = await self._resolve_caller(ctx)
        connectors = self._visible_connectors(caller)
        active = await self._connections.active_by_connector(caller.owner_id, [c.slug for c in connectors])
        tools = [
            action_tool(connector, action, active.get(connector.slug, []))
            for connector in connectors
            for action in connector.actions.values()
        ]
        if connectors:
            tools.append(WAIT_TOOL_DEFINITION)
        tools += self._jobs.definitions(caller)
        tools += await self._workflows.definitions(caller)
        return types.ListToolsResult(tools=tools)

    async def call_tool(
        self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult | types.InputRequiredResult:
        """A tool call, counted and timed by connector, action and outcome (ok or the error code)."""
        started = time.perf_counter()
        outcome = "internal_error"
        try:
            result = await self._call_tool(ctx, params)
            outcome = outcome_of(result)
            return result
        except MCPError:
            outcome = "unknown_tool"
            raise
        finally:
            connector, action = self._labels(params.name)
            self._metrics.tool_call(connector, action, outcome, time.perf_counter() - started)

    def _labels(self, tool: str) -> tuple[str, str]:
        """A tool's metric labels, from the catalog or Tendril's own tools: never the name as sent."""
        action = self._catalog.find_tool(tool)
        if action is not None:
            return action.connector_slug, action.name
        return ("tendril", tool) if tool in TENDRIL_TOOLS else ("unknown", "unknown")

    async def _call_tool(
        self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult | types.InputRequiredResult:
        caller = await self._resolve_caller(ctx)
        with acting_as(Actor.agent(caller.agent_id)):
            return await self._call_as(caller, ctx, params, time.perf_counter())

    async def _call_as(
        self,
        caller: Caller,
        ctx: ServerRequestContext[Any],
        params: types.CallToolRequestParams,
        started: float,
    ) -> types.CallToolResult | types.InputRequiredResult:
        """The call, audited once: by Connections.run when it runs a connector action, here otherwise."""
        try:
            await self._rate_limits.tool_call(caller.agent_id, caller.tool_rate_limit)
        except OverQuota as over:
            # A result the model can wait out, not a drop.
            return self._audited(caller, params.name, started, errors.tool_failure(over, params.name))
        if params.name == WAIT_TOOL and self._visible_connectors(caller):
            waited = await self._connect.wait_tool(caller, params.arguments or {})
            return self._audited(caller, params.name, started, waited)
        if self._jobs.offers(caller, params.name):
            done = await self._jobs.call(caller, params.name, dict(params.arguments or {}))
            return self._audited(caller, params.name, started, done)
        if self._workflows.offers(caller, params.name):
            ran = await self._workflows.call(caller, params.name, dict(params.arguments or {}))
            return self._audited(caller, params.name, started, ran)
        action = self._catalog.find_tool(params.name)
        if action is None or not caller.allows(action.connector_slug):
            self._record(caller, params.name[:128], started, "unknown_tool")
            # Identical for a tool that does not exist and one this agent may not use.
            raise MCPError(types.INVALID_PARAMS, f"Unknown tool: {params.name}")
        arguments = dict(params.arguments or {})
        label = arguments.pop(CONNECTION_ARGUMENT, None)
        resuming = self._connect.resumed_connection_id(ctx, params)
        connection: ConnectionRecord | None = None
        try:
            if resuming is not None:
                resumed = await self._connect.resume(caller, action, resuming, params)
                if isinstance(resumed, types.CallToolResult):
                    return self._audited(caller, params.name, started, resumed, action)
                connection = resumed
            if connection is None:
                connection = await self._pick_connection(caller, action, label)
        except NotConnected as needed:  # a retry never asks twice
            return self._audited(caller, params.name, started, not_connected_result(needed), action)
        except Exception as exc:
            return self._audited(caller, params.name, started, errors.tool_failure(exc, params.name), action)
        try:
            result = await self._connections.run(connection, action, arguments)
        except NotConnected as needed:
            if resuming is not None:
                return not_connected_result(needed)
            return self._connect.ask(ctx, caller, connection, needed)
        except Exception as exc:
            return errors.tool_failure(exc, params.name)
        return errors.tool_success(result.model_dump(mode="json"))

    def _audited(
        self,
        caller: Caller,
        tool: str,
        started: float,
        result: types.CallToolResult,
        action: Action | None = None,
    ) -> types.CallToolResult:
        self._record(caller, tool, started, outcome_of(result), action)
        return result

    def _record(
        self, caller: Caller, tool: str, started: float, outcome: str, action: Action | None = None
    ) -> None:
        self._audit.record(
            "tool.call",
            caller.owner_id,
            connector=action.connector_slug if action is not None else None,
            action=tool,
            outcome=outcome,
            latency_ms=(time.perf_counter() - started) * 1000,
        )

    async def _pick_connection(self, caller: Caller, action: Action, label: Any) -> ConnectionRecord:
        """The connection to run on; when none is active, the (new or reused) pending one."""
        slug = action.connector_slug
        active = (await self._connections.active_by_connector(caller.owner_id, [slug])).get(slug, [])
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
        pending, _ = await self._connections.start(caller.owner_id, self._catalog[slug])
        return pending
