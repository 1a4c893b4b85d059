"""Who is calling over MCP: an agent, by its key.

Over HTTP the agent presents its key as a Bearer token, which the SDK's auth middleware hands to
`AgentKeyVerifier`; the agent's facts ride in the access token's claims. Over stdio the process
was started for one agent (`TENDRIL_AGENT_KEY`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any
from uuid import UUID

import mcp_types as types
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.core.identity import AgentPrincipal, Identity
from server.core.throttle import Throttled
from server.logs import note_agent

Caller = AgentPrincipal
CallerResolver = Callable[[ServerRequestContext[Any]], Awaitable[Caller]]


# The HTTP request being served, for the key verifier (the SDK hands it only the token): the
# client's address for throttling, and the access log's note of which agent called.
_request: ContextVar[Scope | None] = ContextVar("tendril_mcp_request", default=None)


class AgentKeyVerifier:
    """Turns an agent key into the SDK's AccessToken; the agent's facts ride in its claims."""

    def __init__(self, identity: Identity) -> None:
        self._identity = identity

    async def verify_token(self, token: str) -> AccessToken | None:
        scope = _request.get()
        try:
            agent = await self._identity.authenticate_agent(token, _client_host(scope))
        except Throttled:
            return None  # ThrottledClients answers 429 before the next attempt gets this far
        if agent is None:
            return None
        if scope is not None:
            note_agent(scope, agent.id)
        return AccessToken(
            token="",  # never keep the key itself around
            client_id=str(agent.id),
            scopes=[],
            subject=str(agent.owner_id),
            claims={
                "allowed_connectors": list(agent.allowed_connectors),
                "tool_rate_limit": agent.tool_rate_limit,
            },
        )


def caller_from_token(token: AccessToken) -> Caller:
    claims = token.claims or {}
    return Caller(
        UUID(token.client_id),
        UUID(str(token.subject)),
        frozenset(claims.get("allowed_connectors", [])),
        claims.get("tool_rate_limit"),
    )


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


def fixed_agent_resolver(identity: Identity, agent_key: str) -> CallerResolver:
    """For stdio: the process speaks for one agent; its record is re-read per request."""

    async def resolve(_ctx: ServerRequestContext[Any]) -> Caller:
        agent = await identity.authenticate_agent(agent_key)
        if agent is None:
            raise MCPError(types.INVALID_REQUEST, "TENDRIL_AGENT_KEY is not a valid agent key")
        return Caller.of(agent)

    return resolve


def request_state_principal(ctx: ServerRequestContext[Any]) -> str | None:
    """Binds a sealed requestState to the agent that was given it (None over stdio: one agent)."""
    user = _http_user(ctx)
    return f"agent:{user.access_token.client_id}" if user is not None else None


class McpGate:
    """In front of /mcp: remembers who is calling (for AgentKeyVerifier); answers 429 with
    Retry-After while that client is slowed down for failed keys, before any key is checked; and
    gives a request that presented no credential a 401 without an error code (RFC 6750 section
    3.1: the SDK's says invalid_token), still pointing at the resource metadata."""

    def __init__(self, app: ASGIApp, identity: Identity) -> None:
        self.app = app
        self._identity = identity

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            self._identity.throttle.check(_client_host(scope), _bearer(scope))
        except Throttled as throttled:
            refusal = JSONResponse(
                {"error": throttled.message, "code": "RATE_LIMITED"},
                status_code=429,
                headers={"Retry-After": str(int(throttled.retry_after))},
            )
            await refusal(scope, receive, send)
            return
        remembered = _request.set(scope)
        try:
            await self.app(scope, receive, send if _has_authorization(scope) else _without_error_code(send))
        finally:
            _request.reset(remembered)


def _client_host(scope: Scope | None) -> str | None:
    peer = scope.get("client") if scope is not None else None
    return peer[0] if peer else None


def _has_authorization(scope: Scope) -> bool:
    return any(name == b"authorization" for name, _ in scope.get("headers", ()))


def _without_error_code(send: Send) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start" and message["status"] == 401:
            headers = [
                (name, _drop_error_params(value) if name.lower() == b"www-authenticate" else value)
                for name, value in message.get("headers", [])
            ]
            message = {**message, "headers": headers}
        await send(message)

    return sending


def _drop_error_params(challenge: bytes) -> bytes:
    """`Bearer error="..", error_description="..", resource_metadata=".."` keeps its metadata only."""
    text = challenge.decode("latin-1")
    params = [p.strip() for p in text.removeprefix("Bearer").split(",") if p.strip()]
    kept = [p for p in params if not p.startswith(("error=", "error_description="))]
    return ("Bearer " + ", ".join(kept) if kept else "Bearer").encode("latin-1")


def _bearer(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return (token.strip() or None) if scheme.lower() == "bearer" else None
    return None
