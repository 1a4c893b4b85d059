"""The agent side of block-and-resume: call a tool, and when the user must connect an account first,
show them the link, wait until they have, and retry. Whichever path the server offers is used:

- 2025-11-25 URL elicitation (error -32042, then `notifications/elicitation/complete`);
- 2026-07-28 input requests (the SDK retries once our elicitation callback returns);
- the in-band `not_connected` error result, with `tendril_wait_for_connection` to block on.

    async with TendrilAgent("http://127.0.0.1:8080/mcp", agent_key) as agent:
        result = await agent.call_tool("slack_post_message", {"channel": "#general", "text": "hi"})
"""

from __future__ import annotations

import re
import webbrowser
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import anyio
import httpx2
import mcp_types as types
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError, UrlElicitationRequiredError

WAIT_TOOL = "tendril_wait_for_connection"
_CONNECTION_IN_URL = re.compile(r"/connect/([0-9a-fA-F-]{36})")


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    """What to show the person: open `url`, then come back."""

    url: str
    message: str
    connection_id: str | None


AuthorizationHandler = Callable[[AuthorizationRequest], Awaitable[None]]


async def print_link(request: AuthorizationRequest) -> None:
    print(f"{request.message}\nOpen: {request.url}", flush=True)


async def open_in_browser(request: AuthorizationRequest) -> None:
    await print_link(request)
    await anyio.to_thread.run_sync(webbrowser.open_new_tab, request.url)


class NotAuthorizedInTime(Exception):
    """The person did not finish connecting within the wait."""


class TendrilAgent:
    def __init__(
        self,
        url: str,
        agent_key: str,
        *,
        on_authorization: AuthorizationHandler = print_link,
        mode: str = "legacy",
        url_elicitation: bool = True,
        wait_seconds: float = 300.0,
        max_rounds: int = 3,
    ) -> None:
        self._url = url
        self._headers = {"Authorization": f"Bearer {agent_key}"}
        self._on_authorization = on_authorization
        self._mode = mode
        self._url_elicitation = url_elicitation
        self._wait_seconds = wait_seconds
        self._max_rounds = max_rounds
        self._completed: dict[str, anyio.Event] = {}
        self._stack = AsyncExitStack()
        self._client: Client | None = None

    async def __aenter__(self) -> TendrilAgent:
        http = await self._stack.enter_async_context(httpx2.AsyncClient(headers=self._headers, timeout=120))
        transport = streamable_http_client(self._url, http_client=http)
        self._client = await self._stack.enter_async_context(
            Client(
                transport,
                mode=self._mode,
                cache=None,
                elicitation_callback=self._elicit if self._url_elicitation else None,
                message_handler=self._on_message,
            )
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stack.aclose()

    @property
    def client(self) -> Client:
        if self._client is None:
            raise RuntimeError("use `async with TendrilAgent(...)`")
        return self._client

    async def call_tool(self, name: str, arguments: dict[str, Any] | None = None) -> types.CallToolResult:
        """Call a tool; if the user must connect an account first, have them do it and retry."""
        for _ in range(self._max_rounds):
            try:
                result = await self.client.call_tool(name, arguments or {})
            except MCPError as exc:
                if exc.code != types.URL_ELICITATION_REQUIRED:
                    raise
                await self._after_url_elicitation(UrlElicitationRequiredError.from_error(exc.error))
                continue
            missing = _not_connected(result)
            if missing is None:
                return result
            await self._on_authorization(missing)
            await self._wait_until_connected(missing.connection_id)
        raise NotAuthorizedInTime(f"{name} still needs a connection after {self._max_rounds} attempts")

    async def _after_url_elicitation(self, error: UrlElicitationRequiredError) -> None:
        for elicitation in error.elicitations:
            event = self._completed.setdefault(elicitation.elicitation_id or "", anyio.Event())
            request = AuthorizationRequest(
                elicitation.url, elicitation.message, _connection_of(elicitation.url)
            )
            await self._on_authorization(request)
            # The server's notification is the fast path; polling covers a lost notification.
            async with anyio.create_task_group() as group:

                async def notified(
                    scope: anyio.CancelScope = group.cancel_scope, done: anyio.Event = event
                ) -> None:
                    await done.wait()
                    scope.cancel()

                async def polled(
                    scope: anyio.CancelScope = group.cancel_scope, r: AuthorizationRequest = request
                ) -> None:
                    await self._wait_until_connected(r.connection_id)
                    scope.cancel()

                group.start_soon(notified)
                group.start_soon(polled)

    async def _elicit(self, context: Any, params: Any) -> types.ElicitResult | types.ErrorData:
        """2026-07-28 input requests (and any URL elicitation request): show, wait, accept."""
        if getattr(params, "mode", None) != "url":
            return types.ElicitResult(action="decline")
        request = AuthorizationRequest(params.url, params.message, _connection_of(params.url))
        await self._on_authorization(request)
        try:
            await self._wait_until_connected(request.connection_id)
        except NotAuthorizedInTime:
            return types.ElicitResult(action="cancel")
        return types.ElicitResult(action="accept")

    async def _on_message(self, message: Any) -> None:
        if isinstance(message, types.ElicitCompleteNotification):
            event = self._completed.setdefault(message.params.elicitation_id, anyio.Event())
            event.set()

    async def _wait_until_connected(self, connection_id: str | None) -> None:
        if connection_id is None:
            raise NotAuthorizedInTime("the server named no connection to wait for")
        with anyio.move_on_after(self._wait_seconds):
            while True:
                result = await self.client.call_tool(WAIT_TOOL, {"connection_id": connection_id})
                if (result.structured_content or {}).get("connected"):
                    return
                if result.is_error:
                    raise NotAuthorizedInTime(_text(result))
        raise NotAuthorizedInTime(f"connection {connection_id} was not completed in time")


def _not_connected(result: types.CallToolResult) -> AuthorizationRequest | None:
    error = (result.structured_content or {}).get("error") if result.is_error else None
    if not isinstance(error, dict) or error.get("code") != "not_connected":
        return None
    return AuthorizationRequest(str(error["connectUrl"]), _text(result), str(error.get("connectionId")))


def _connection_of(url: str) -> str | None:
    match = _CONNECTION_IN_URL.search(url)
    return match.group(1) if match else None


def _text(result: types.CallToolResult) -> str:
    return " ".join(block.text for block in result.content if isinstance(block, types.TextContent))
