"""The one place failures become HTTP answers.

REST errors are `{"error": "<readable message>", "code": "<CODE>"}`. Refusals of the core and of
providers map to a status here; anything unexpected is logged with a reference id and answered
500 with only that id.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel, Field
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse

from connectors import errors as provider
from server.core import errors as domain
from server.core.throttle import Throttled
from server.logs import log_unexpected

logger = logging.getLogger(__name__)

CODES = {
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

_DOMAIN_STATUS: dict[type[domain.DomainError], int] = {
    domain.Invalid: 400,
    domain.Unauthenticated: 401,
    domain.Forbidden: 403,
    domain.NotFound: 404,
    domain.Conflict: 409,
    domain.TooLarge: 413,
    domain.Upstream: 502,
    Throttled: 429,
    domain.Unavailable: 503,
}
# Provider failures: their own code (NOT_CONNECTED, RATE_LIMITED, ...) under these statuses.
_PROVIDER_STATUS: dict[type[provider.ConnectorError], int] = {
    provider.InvalidInput: 400,
    provider.InvalidCredentials: 400,
    provider.MissingScopes: 403,
    provider.Forbidden: 403,
    provider.NotFound: 404,
    provider.NotConnected: 409,
    provider.RateLimited: 429,
    provider.UpstreamTimeout: 504,
    provider.ConnectorError: 502,
}


class ErrorBody(BaseModel):
    """What every failure of Tendril's own API answers (the OpenAPI document's Error schema)."""

    error: str = Field(description="What went wrong, in words a person can act on.")
    code: str = Field(description="A stable code: BAD_REQUEST, NOT_FOUND, RATE_LIMITED, NOT_CONNECTED, ...")
    field: str | None = Field(default=None, description="The request field at fault, when one is.")
    details: dict[str, Any] | None = Field(
        default=None, description="A provider failure's facts (retryAfter, connectUrl, ...)."
    )
    reference: str | None = Field(default=None, description="For a 500: the id the server logged it under.")


class HttpProblem(Exception):
    """A refusal only HTTP has (a wrong method, a body that is not JSON or too large)."""

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def error_response(
    status: int,
    message: str,
    *,
    code: str | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    body = {"error": message, "code": code or CODES.get(status, "ERROR"), **(extra or {})}
    return JSONResponse(body, status_code=status, headers=headers)


def status_of(error: domain.DomainError | provider.ConnectorError) -> int:
    table: dict[Any, int] = _DOMAIN_STATUS if isinstance(error, domain.DomainError) else _PROVIDER_STATUS
    return next(status for kind, status in table.items() if isinstance(error, kind))


def provider_error_parts(error: provider.ConnectorError) -> tuple[int, str, dict[str, str], dict[str, Any]]:
    """Status, code, headers and details of a provider failure (shared by every REST shape)."""
    headers: dict[str, str] = {}
    if isinstance(error, provider.RateLimited):
        headers["Retry-After"] = str(max(1, round(error.retry_after)))
    facts = {k: v for k, v in error.facts().items() if k not in ("code", "message") and v is not None}
    return status_of(error), error.code.upper(), headers, facts


def response_for(error: BaseException, where: str) -> JSONResponse:
    """Whatever a route raised, as the answer the client gets."""
    if isinstance(error, HttpProblem):
        return error_response(error.status, error.message, headers=error.headers)
    if isinstance(error, Throttled):
        return error_response(429, error.message, headers={"Retry-After": str(int(error.retry_after))})
    if isinstance(error, domain.Invalid) and error.field:
        return error_response(400, error.message, extra={"field": error.field})
    if isinstance(error, domain.DomainError):
        return error_response(status_of(error), error.message)
    if isinstance(error, provider.ConnectorError):
        status, code, headers, facts = provider_error_parts(error)
        return error_response(
            status, error.message, code=code, headers=headers, extra={"details": facts} if facts else None
        )
    if isinstance(error, ClientDisconnect):  # nobody is left to read an answer; nothing went wrong here
        logger.info("%s: the client went away before sending the whole body", where)
        return error_response(400, "the client went away before sending the whole body")
    reference = log_unexpected(error, where)
    return error_response(500, f"internal error (ref={reference})", extra={"reference": reference})
