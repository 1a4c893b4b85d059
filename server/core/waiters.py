"""Who is waiting for a connection to become active, and telling them when it does.

In-process: MCP sessions that were sent a URL elicitation (they get
`notifications/elicitation/complete`) and callers blocked in `tendril_wait_for_connection`.
Waiters also poll the database, so a connection completed on another replica still wakes them.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from uuid import UUID

import anyio

logger = logging.getLogger(__name__)

ElicitationNotifier = Callable[[], Awaitable[None]]
_POLL_SECONDS = 0.5
# A connection the user never completes must not pin sessions forever: the newest few are kept.
_MAX_ELICITATIONS_PER_CONNECTION = 16


@dataclass
class _Elicitation:
    elicitation_id: str
    notify: ElicitationNotifier


class ConnectionWaiters:
    def __init__(self) -> None:
        self._events: dict[UUID, anyio.Event] = {}
        self._elicitations: dict[UUID, list[_Elicitation]] = defaultdict(list)

    def elicitation_sent(self, connection_id: UUID, elicitation_id: str, notify: ElicitationNotifier) -> None:
        """Remember to send `notifications/elicitation/complete` when this connection completes."""
        pending = self._elicitations[connection_id]
        if all(e.elicitation_id != elicitation_id for e in pending):
            pending.append(_Elicitation(elicitation_id, notify))
            del pending[:-_MAX_ELICITATIONS_PER_CONNECTION]

    def forget(self, connection_id: UUID) -> None:
        """Drop what is waiting on a connection (its watch ended without a completion)."""
        self._elicitations.pop(connection_id, None)
        self._events.pop(connection_id, None)

    async def connected(self, connection_id: UUID) -> None:
        """Called wherever a connection becomes active (OAuth callback, credential submission)."""
        event = self._events.pop(connection_id, None)
        if event is not None:
            event.set()
        for elicitation in self._elicitations.pop(connection_id, []):
            try:
                await elicitation.notify()
            except Exception:  # a client that went away must not fail the user's connect
                logger.warning("could not notify elicitation %s", elicitation.elicitation_id, exc_info=True)

    async def wait(
        self, connection_id: UUID, seconds: float, is_active: Callable[[], Awaitable[bool]]
    ) -> bool:
        """Wait until the connection is active (event here, or seen in the database); False on timeout."""
        with anyio.move_on_after(seconds):
            while True:
                if await is_active():
                    return True
                event = self._events.setdefault(connection_id, anyio.Event())
                with anyio.move_on_after(_POLL_SECONDS):
                    await event.wait()
        return await is_active()
