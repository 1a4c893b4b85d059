"""Whether this replica should be sent work: its database answers, and the database's schema is the
one this code was written for (no migration missing, none from newer code it does not know).

The answer is kept for a couple of seconds, so probes from a load balancer and an orchestrator cost
one small query between them, and concurrent probes wait for the same check.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

import anyio

from storage.db import MigrationState

logger = logging.getLogger(__name__)

CACHE_SECONDS = 2.0
CHECK_TIMEOUT_SECONDS = 3.0


class Readiness:
    def __init__(
        self,
        migration_state: Callable[[], Awaitable[MigrationState]],
        *,
        cache_seconds: float = CACHE_SECONDS,
        timeout: float = CHECK_TIMEOUT_SECONDS,
    ) -> None:
        self._migration_state = migration_state
        self._cache_seconds = cache_seconds
        self._timeout = timeout
        self._lock = anyio.Lock()
        self._reason: str | None = None
        self._until = float("-inf")

    async def problem(self) -> str | None:
        """None when ready; otherwise why not, in a sentence fit for an unauthenticated caller."""
        if time.monotonic() < self._until:
            return self._reason
        async with self._lock:
            if time.monotonic() >= self._until:
                self._reason = await self._check()
                self._until = time.monotonic() + self._cache_seconds
            return self._reason

    async def _check(self) -> str | None:
        try:
            with anyio.fail_after(self._timeout):
                state = await self._migration_state()
        except TimeoutError:
            return f"the database did not answer within {self._timeout:g}s"
        except Exception as exc:  # a probe: whatever the driver raised, this replica is not ready
            logger.warning("readiness: the database check failed: %s", type(exc).__name__)
            return "the database did not answer"
        if state.at_head:
            return None
        current = ", ".join(state.current) or "none"
        return f"the database schema is at revision {current}; this code needs {', '.join(state.head)}"
