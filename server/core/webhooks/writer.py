"""The delivery writer: deliveries waiting to be recorded are written together (a group commit,
server/core/group_commit.py), and each waiting request is answered once its delivery is durable;
then the agents with new jobs are told, once per batch, and so is whoever starts the executions
that new deliveries' event triggers owe (their firings are written in the same transaction)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from server.core.events import ChangeEvents
from server.core.group_commit import GroupCommit
from storage.jobs import NewDelivery, WebhookStore

WRITE_BATCH = 256


class DeliveryWriter:
    def __init__(self, hooks: WebhookStore, events: ChangeEvents) -> None:
        self._events = events
        self._fired: list[Callable[[], None]] = []
        self._commits: GroupCommit[NewDelivery, bool] = GroupCommit(
            hooks.record_deliveries, name="delivery writer", max_batch=WRITE_BATCH, after=self._announce
        )

    async def write(self, delivery: NewDelivery) -> bool:
        """Record one delivery (True when it is new, False for a duplicate); through the loop when
        it runs, directly otherwise (the CLI, tests without a lifespan)."""
        return await self._commits.write(delivery)

    async def run(self) -> None:
        """Write whatever deliveries are waiting, up to WRITE_BATCH in one transaction, and answer
        each; until stop()."""
        await self._commits.run()

    def stop(self) -> None:
        """Let the loop finish what is queued and return."""
        self._commits.stop()

    def on_firings(self, listener: Callable[[], None]) -> None:
        """Call `listener` (without waiting on it) after a batch that recorded trigger firings."""
        self._fired.append(listener)

    async def _announce(self, deliveries: list[NewDelivery], new: Sequence[bool]) -> None:
        if self._fired and any(d.firings for d, is_new in zip(deliveries, new, strict=True) if is_new):
            for listener in self._fired:
                listener()
        await self._events.jobs_arrived(
            agent
            for delivery, is_new in zip(deliveries, new, strict=True)
            if is_new
            for agent in delivery.agent_ids
        )
