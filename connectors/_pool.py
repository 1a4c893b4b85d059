"""Open provider clients kept for reuse: one per connector and credential, so consecutive calls
share a connection (keep-alive, one TLS handshake) instead of opening a client each time."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio

logger = logging.getLogger(__name__)

IDLE_SECONDS = 300.0  # a client unused this long is closed (a rotated or revoked credential's, say)
MAX_CLIENTS = 256


@dataclass
class _Entry:
    client: Any
    stack: AsyncExitStack
    users: int = 0
    last_used: float = field(default_factory=time.monotonic)


class ClientPool:
    def __init__(
        self,
        *,
        idle_seconds: float = IDLE_SECONDS,
        max_clients: int = MAX_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._idle_seconds = idle_seconds
        self._max_clients = max_clients
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._opening: dict[str, anyio.Lock] = {}

    def __len__(self) -> int:
        return len(self._entries)

    @asynccontextmanager
    async def lease(
        self, key: str, open_client: Callable[[], AbstractAsyncContextManager[Any]]
    ) -> AsyncIterator[Any]:
        """The client kept under `key`, opened with `open_client` the first time (once, even when
        several calls ask together). A client whose opening fails is not kept."""
        entry = self._entries.get(key) or await self._open(key, open_client)
        entry.users += 1
        try:
            yield entry.client
        finally:
            entry.users -= 1
            entry.last_used = self._clock()
            await self._close_idle()

    async def _open(self, key: str, open_client: Callable[[], AbstractAsyncContextManager[Any]]) -> _Entry:
        lock = self._opening.setdefault(key, anyio.Lock())
        async with lock:
            entry = self._entries.get(key)
            if entry is None:
                stack = AsyncExitStack()
                client = await stack.enter_async_context(open_client())
                entry = self._entries[key] = _Entry(client, stack)
        self._opening.pop(key, None)
        return entry

    async def _close_idle(self) -> None:
        now = self._clock()
        idle = sorted((e.last_used, k) for k, e in self._entries.items() if e.users == 0)
        surplus = len(self._entries) - self._max_clients
        for last_used, key in idle:
            if now - last_used < self._idle_seconds and surplus <= 0:
                break
            surplus -= 1
            await self._close(key)

    async def _close(self, key: str) -> None:
        entry = self._entries.pop(key)
        try:
            await entry.stack.aclose()
        except Exception:  # a client that fails to close must not fail the call that evicted it
            logger.warning("closing a pooled provider client failed", exc_info=True)

    async def aclose(self) -> None:
        """Close every client (at shutdown)."""
        for key in list(self._entries):
            await self._close(key)
