"""How Tendril is served over HTTP: uvicorn with its httptools parser, plus deadlines for slow clients.

A client that connects and trickles its request headers (slowloris), or its body, would otherwise
hold a connection and a task for as long as it likes. Here the headers of each request must arrive
within `header_seconds` of its first byte (or of the connection), and its body within
`body_seconds` of the headers, extended by one second per `body_min_rate` bytes received, so a
large upload at a sane speed never runs out of time while a trickle does (Apache's mod_reqtimeout
rule). A connection past its deadline is closed; the application sees the client leave.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from server.settings import Settings


def protocol_with_deadlines(settings: Settings) -> type[asyncio.Protocol]:
    header_seconds = settings.header_timeout_seconds
    body_seconds = settings.body_timeout_seconds
    body_min_rate = settings.body_min_bytes_per_second

    class DeadlineHttpToolsProtocol(HttpToolsProtocol):
        _deadline: asyncio.TimerHandle | None = None
        _deadline_at = 0.0

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm(header_seconds)  # a connection that never sends a request is dropped too

        def data_received(self, data: bytes) -> None:
            if self._deadline is None and (self.cycle is None or self.cycle.response_complete):
                self._arm(header_seconds)  # the first bytes of the next request on this connection
            super().data_received(data)

        def on_headers_complete(self) -> None:
            super().on_headers_complete()
            self._arm(body_seconds)

        def on_body(self, body: bytes) -> None:
            super().on_body(body)
            if self._deadline is not None:
                self._deadline_at += len(body) / body_min_rate
                self._deadline.cancel()
                self._deadline = self.loop.call_at(self._deadline_at, self._too_slow)

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._disarm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self, seconds: float) -> None:
            self._disarm()
            self._deadline_at = self.loop.time() + seconds
            self._deadline = self.loop.call_at(self._deadline_at, self._too_slow)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _too_slow(self) -> None:
            self._deadline = None
            if not self.transport.is_closing():
                self.transport.close()

    return DeadlineHttpToolsProtocol


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """What `tendril serve` hands uvicorn besides the app and the address."""
    return {
        "http": protocol_with_deadlines(settings),
        "proxy_headers": True,
        "forwarded_allow_ips": settings.forwarded_allow_ips,
        "log_level": "warning",
        # One access line per request comes from server/web/access.py; uvicorn's own lines (errors)
        # go through Tendril's handler (redacted, text or JSON) instead of a handler of its own.
        "access_log": False,
        "log_config": None,
    }
