"""The group-commit writer: deliveries waiting to be recorded are written together, one
transaction for many, by one loop per process (so SQLite never has two writers fighting over its
lock), and each waiting request is answered once its delivery is durable."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from server.core.events import ChangeEvents
from storage.jobs import NewDelivery, WebhookStore

WRITE_BATCH = 256


class DeliveryWriter:
    def __init__(self, hooks: WebhookStore, events: ChangeEvents) -> None:
        self._hooks = hooks
        self._events = events
        self._writes: asyncio.Queue[tuple[NewDelivery, asyncio.Future[bool]] | None] | None = None

    async def write(self, delivery: NewDelivery) -> bool:
        """Record one delivery (True when it is new, False for a duplicate); through the loop when
        it runs, directly otherwise (the CLI, tests without a lifespan)."""
        if self._writes is None:
            [new] = await self._hooks.record_deliveries([delivery])
            await self._announce([(delivery, new)])
            return new
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._writes.put_nowait((delivery, done))  # unbounded: each waiting request holds one
        return await done

    async def run(self) -> None:
        """Take whatever deliveries are waiting, up to WRITE_BATCH, write them in one transaction,
        answer each; until stop()."""
        self._writes = asyncio.Queue()
        try:
            while (first := await self._writes.get()) is not None:
                batch = [first]
                while len(batch) < WRITE_BATCH and not self._writes.empty():
                    if (item := self._writes.get_nowait()) is None:
                        self._writes.put_nowait(None)  # stop after this batch
                        break
                    batch.append(item)
                try:
                    results = await self._hooks.record_deliveries([delivery for delivery, _ in batch])
                except Exception as exc:  # each waiting request answers 500; providers retry
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(exc)
                    continue
                for (_, done), new in zip(batch, results, strict=True):
                    if not done.done():
                        done.set_result(new)
                await self._announce(zip((delivery for delivery, _ in batch), results, strict=True))
        finally:
            pending, self._writes = self._writes, None
            while not pending.empty():  # not written, so not acknowledged: the provider retries
                item = pending.get_nowait()
                if item is not None and not item[1].done():
                    item[1].set_exception(RuntimeError("shutting down"))

    def stop(self) -> None:
        """Let the loop finish what is queued and return (cancelling it midway can wedge aiosqlite's
        worker thread at shutdown)."""
        if self._writes is not None:
            self._writes.put_nowait(None)

    async def _announce(self, written: Iterable[tuple[NewDelivery, bool]]) -> None:
        await self._events.jobs_arrived(
            agent for delivery, new in written if new for agent in delivery.agent_ids
        )
