"""The delivery writer: deliveries waiting to be recorded are written together (a group commit,
server/core/group_commit.py), and each waiting request is answered once its delivery is durable;
then the agents with new jobs are told, once per batch."""

from __future__ import annotations

from collections.abc import Sequence

from server.core.events import ChangeEvents
from server.core.group_commit import GroupCommit
from storage.jobs import NewDelivery, WebhookStore

WRITE_BATCH = 256


class DeliveryWriter:
    def __init__(self, hooks: WebhookStore, events: ChangeEvents) -> None:
        self._events = events
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

    async def _announce(self, deliveries: list[NewDelivery], new: Sequence[bool]) -> None:
        await self._events.jobs_arrived(
            agent
            for delivery, is_new in zip(deliveries, new, strict=True)
            if is_new
            for agent in delivery.agent_ids
        )
