"""The one place failures become HTTP responses and MCP tool results.

REST errors are `{"error": "<readable message>", "code": "<CODE>"}`. Connector errors keep their
safe message; anything unexpected is logged with a reference id and shown only as that id.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

import mcp_types as types
from starlette.responses import JSONResponse

from connectors.errors import ConnectorError, RateLimited

logger = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    429: "RATE_LIMITED",
    500: "INTERNAL_ERROR",
    502: "UPSTREAM_ERROR",
    503: "UNAVAILABLE",
    504: "UPSTREAM_TIMEOUT",
}


class ApiError(Exception):
    """An error the REST API answers with, as-is."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or _HTTP_CODES.get(status, "ERROR")
        self.headers = headers or {}
        self.extra = extra or {}


def error_response(error: ApiError) -> JSONResponse:
    body: dict[str, Any] = {"error": error.message, "code": error.code, **error.extra}
    return JSONResponse(body, status_code=error.status, headers=error.headers)


def api_error_from_connector(error: ConnectorError) -> ApiError:
    headers: dict[str, str] = {}
    if isinstance(error, RateLimited):
        headers["Retry-After"] = str(max(1, round(error.retry_after)))
    facts = {k: v for k, v in error.facts().items() if k not in ("code", "message") and v is not None}
    return ApiError(
        error.http_status,
        error.message,
        code=error.code.upper(),
        headers=headers,
        extra={"details": facts} if facts else None,
    )


def new_reference() -> str:
    return uuid.uuid4().hex[:12]


def log_unexpected(exc: BaseException, where: str) -> str:
    reference = new_reference()
    logger.error("unexpected error in %s (ref=%s)", where, reference, exc_info=exc)
    return reference


def internal_error_response(exc: BaseException, where: str) -> JSONResponse:
    reference = log_unexpected(exc, where)
    return error_response(ApiError(500, f"internal error (ref={reference})", extra={"reference": reference}))


def tool_error(message: str, facts: dict[str, Any]) -> types.CallToolResult:
    """An `isError` tool result: readable text for the model, the same facts as structured data."""
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=message)],
        structured_content={"error": facts},
        is_error=True,
    )


def tool_result_from_connector(error: ConnectorError) -> types.CallToolResult:
    message = error.message
    if isinstance(error, RateLimited):
        message += f" (retry in {error.retry_after:g}s)"
    return tool_error(message, error.facts())


def tool_result_from_unexpected(exc: BaseException, tool: str) -> types.CallToolResult:
    reference = log_unexpected(exc, f"tool {tool}")
    return tool_error(
        f"internal error (ref={reference}); the operator can find details in Tendril's log",
        {"code": "internal_error", "reference": reference},
    )


def tool_success(structured: dict[str, Any]) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=json.dumps(structured, ensure_ascii=False))],
        structured_content=structured,
    )
