"""Small ASGI helpers for tests."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send


class Swappable:
    """An ASGI app whose target is replaced per test, so one loopback server serves many tests."""

    def __init__(self) -> None:
        self.target: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.target is None:
            raise RuntimeError("no fake installed for this test")
        await self.target(scope, receive, send)
