"""What changed, told to every replica: an agent has new jobs, a file was uploaded again, a
workflow execution ended.

Storage's change notices carry it between replicas (NOTIFY on PostgreSQL, in-process on SQLite);
this module names the changes and hands them to the listeners the edges register (MCP
subscriptions, the job pusher).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from uuid import UUID

from storage.notices import ChangeNotices

logger = logging.getLogger(__name__)

_JOBS = "jobs"  # jobs:<agent id>
_FILE = "file"  # file:<connection id>
_EXECUTION = "execution"  # execution:<execution id>

Listener = Callable[[UUID], Awaitable[None]]


class ChangeEvents:
    def __init__(self, notices: ChangeNotices) -> None:
        self._notices = notices
        self._listeners: dict[str, list[Listener]] = {_JOBS: [], _FILE: [], _EXECUTION: []}
        notices.subscribe(self._received)

    def on_jobs(self, listener: Listener) -> None:
        """Call `listener(agent_id)` when that agent has new jobs, whichever replica took them."""
        self._listeners[_JOBS].append(listener)

    def on_file(self, listener: Listener) -> None:
        """Call `listener(connection_id)` when that file connection's content changed."""
        self._listeners[_FILE].append(listener)

    def on_execution(self, listener: Listener) -> None:
        """Call `listener(execution_id)` when that execution ended (completed or failed)."""
        self._listeners[_EXECUTION].append(listener)

    async def execution_ended(self, execution_id: UUID) -> None:
        await self._publish(f"{_EXECUTION}:{execution_id}")

    async def jobs_arrived(self, agent_ids: Iterable[UUID]) -> None:
        """Once per agent, not per job: a batch of a hundred events for one agent is one notice."""
        for agent_id in dict.fromkeys(agent_ids):
            await self._publish(f"{_JOBS}:{agent_id}")

    async def file_changed(self, connection_id: UUID) -> None:
        await self._publish(f"{_FILE}:{connection_id}")

    async def _publish(self, topic: str) -> None:
        try:
            await self._notices.publish(topic)
        except Exception:  # a notice must never undo what it announces (an acknowledged delivery)
            logger.exception("could not announce %s", topic)

    async def _received(self, topic: str) -> None:
        kind, _, ref = topic.partition(":")
        for listener in self._listeners.get(kind, ()):
            try:
                await listener(UUID(ref))
            except Exception:
                logger.exception("change listener failed for %s", topic)

    async def run(self) -> None:
        """Hear other replicas' changes until stop()."""
        await self._notices.listen()

    def stop(self) -> None:
        self._notices.stop()
