"""The one place failures become MCP answers.

A tool that fails answers an `isError` result: readable text for the model and the same facts as
structured data (`{"error": {code, message, ...}}`). Resource reads answer JSON-RPC errors. Provider
failures keep their code (not_connected, rate_limited, ...); refusals of the core get the codes
below; anything unexpected is logged with a reference, which is all the client sees.
"""

from __future__ import annotations

import json
from typing import Any

import mcp_types as types
from mcp.shared.exceptions import MCPError

from connectors.errors import ConnectorError, RateLimited
from server.core import errors as domain
from server.core.throttle import Throttled
from server.logs import log_unexpected

RESOURCE_NOT_FOUND = -32002  # the spec's code for resources/read of an unknown URI

_CODES: dict[type[domain.DomainError], str] = {
    domain.Invalid: "invalid_input",
    domain.Unauthenticated: "unauthenticated",
    domain.Forbidden: "forbidden",
    domain.NotFound: "not_found",
    domain.Conflict: "conflict",
    domain.TooLarge: "too_large",
    domain.Unavailable: "unavailable",
    domain.Upstream: "upstream_error",
}


def tool_error(message: str, facts: dict[str, Any]) -> types.CallToolResult:
    """An `isError` result: readable text for the model, the same facts as structured data."""
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=message)],
        structured_content={"error": facts},
        is_error=True,
    )


def tool_success(structured: dict[str, Any]) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=json.dumps(structured, ensure_ascii=False))],
        structured_content=structured,
    )


def tool_failure(error: BaseException, tool: str) -> types.CallToolResult:
    """Whatever a tool call raised, as the result the model reads."""
    if isinstance(error, ConnectorError):
        message = error.message
        if isinstance(error, RateLimited):
            message += f" (retry in {error.retry_after:g}s)"
        return tool_error(message, error.facts())
    if isinstance(error, Throttled):
        facts = {"code": "rate_limited", "message": error.message, "retryAfter": int(error.retry_after)}
        return tool_error(error.message, facts)
    if isinstance(error, domain.DomainError):
        facts: dict[str, Any] = {"code": _code(error), "message": error.message}
        if isinstance(error, domain.Invalid) and error.field:
            facts["field"] = error.field
        return tool_error(error.message, facts)
    reference = log_unexpected(error, f"tool {tool}")
    return tool_error(
        f"internal error (ref={reference}); the operator can find details in Tendril's log",
        {"code": "internal_error", "reference": reference},
    )


def protocol_error(error: domain.DomainError | ConnectorError) -> MCPError:
    """A refusal while reading a resource: not found is the spec's -32002, the rest invalid params."""
    code = RESOURCE_NOT_FOUND if isinstance(error, domain.NotFound) else types.INVALID_PARAMS
    return MCPError(code, error.message)


def _code(error: domain.DomainError) -> str:
    return next((code for kind, code in _CODES.items() if isinstance(error, kind)), "error")
