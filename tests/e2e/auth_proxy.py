"""A loopback reverse proxy that adds an agent's Bearer key, for clients that cannot send headers.

The conformance suite has no header option, so it talks to this proxy. Everything except the
Authorization header passes through untouched, Host and Origin included: the suite's
dns-rebinding-protection scenario sends bad ones and expects Tendril itself to refuse them.
Responses stream chunk by chunk so SSE (POST answers and GET streams) is not buffered.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import anyio
import httpx
from starlette.types import Message, Receive, Scope, Send

from tests.fakes.loopback import run_asgi_on_loopback

# Per-connection headers (RFC 9110 7.6.1) are not forwarded; content-length is recomputed by httpx.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)


class AuthProxy:
    """Raw ASGI app forwarding every request to `upstream` with `Authorization: Bearer <key>`."""

    def __init__(self, upstream: str, api_key: str) -> None:
        self.upstream = upstream.rstrip("/")
        self._auth = f"Bearer {api_key}".encode()
        self._http: httpx.AsyncClient | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._forward(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # No read timeout: a GET SSE stream may stay quiet for as long as the client likes.
                self._http = httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=None))
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._http is not None:
                    await self._http.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _forward(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self._http is not None, "proxy used without lifespan"
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = [
            (name, value)
            for name, value in scope["headers"]
            if name not in HOP_BY_HOP and name not in (b"authorization", b"content-length")
        ]
        headers.append((b"authorization", self._auth))
        url = self.upstream + (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        if scope["query_string"]:
            url += "?" + scope["query_string"].decode("latin-1")
        # httpx.Request, not client.build_request: the client's default headers would be added.
        request = httpx.Request(scope["method"], url, headers=headers, content=bytes(body))
        response = await self._http.send(request, stream=True)
        try:
            async with anyio.create_task_group() as tg:
                # Stop relaying (and close the upstream stream) as soon as the client goes away.
                tg.start_soon(_cancel_on_disconnect, receive, tg.cancel_scope)
                await _relay(response, send)
                tg.cancel_scope.cancel()
        finally:
            await response.aclose()


async def _relay(response: httpx.Response, send: Send) -> None:
    # uvicorn adds its own date and server headers; dropping Tendril's avoids sending both.
    skip = HOP_BY_HOP | {b"date", b"server"}
    headers = [(k, v) for k, v in response.headers.raw if k.lower() not in skip]
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    async for chunk in response.aiter_raw():  # raw: any content-encoding passes through as sent
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _cancel_on_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
    message: Message = await receive()
    while message["type"] != "http.disconnect":
        message = await receive()
    scope.cancel()


@contextmanager
def run_auth_proxy(upstream: str, api_key: str) -> Iterator[str]:
    """Serve an `AuthProxy` on loopback; yields its base URL."""
    with run_asgi_on_loopback(AuthProxy(upstream, api_key), lifespan="on") as url:
        yield url
