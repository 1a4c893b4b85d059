"""Group commit: records waiting to be stored are written together, one transaction for many, by
one loop per process (so SQLite never has two writers fighting over its lock).

Two ways in: `write` waits until its record is durable and returns what the batch writer said of it
(webhook deliveries: the provider is answered only then); `submit` only queues it (the audit trail:
the operation it describes does not wait, and never fails because of it). With `linger`, the loop
lets records gather for that long before writing a batch, unless `flush`, `stop` or a full batch
hurries it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[T, R]):
    def __init__(
        self,
        write_batch: Callable[[list[T]], Awaitable[Sequence[R]]],
        *,
        name: str,
        max_batch: int = 256,
        linger: float = 0.0,
        max_pending: int | None = None,
        after: Callable[[list[T], Sequence[R]], Awaitable[None]] | None = None,
    ) -> None:
        """`write_batch` stores a batch in one transaction and says something of each record, in
        order; `after` runs once the waiting writers have been answered (telling listeners)."""
        self._write_batch = write_batch
        self._after = after
        self._name = name
        self._max_batch = max_batch
        self._linger = linger
        self._max_pending = max_pending
        self._items: deque[tuple[T, asyncio.Future[R] | None]] = deque()
        self._added = 0  # records ever queued
        self._finished = 0  # of those, records whose batch was written (or failed)
        self._flushes: list[tuple[int, asyncio.Future[None]]] = []
        # Set while run() runs: new records wake it; flush/stop/a full batch cut its lingering short.
        self._wake: asyncio.Event | None = None
        self._hurry: asyncio.Event | None = None
        self._stopping = False
        self._dropping = False
        self.dropped = 0  # submitted records lost: refused past max_pending, or in a failed batch

    async def write(self, item: T) -> R:
        """Store one record and return what the batch writer said of it; through the loop when it
        runs, directly otherwise (the CLI, tests without a lifespan)."""
        if self._wake is None:
            [result] = await self._write_batch([item])
            if self._after is not None:
                await self._after([item], [result])
            return result
        done: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue(item, done)
        return await done

    def submit(self, item: T) -> bool:
        """Queue one record without waiting for it; False when it was dropped (max_pending records
        already wait). Records submitted while the loop is not running wait for flush()."""
        if self._max_pending is not None and len(self._items) >= self._max_pending:
            self.dropped += 1
            if not self._dropping:
                self._dropping = True
                logger.warning(
                    "%s: %d records wait to be written; dropping new ones", self._name, len(self._items)
                )
            return False
        self._queue(item, None)
        return True

    def _queue(self, item: T, done: asyncio.Future[R] | None) -> None:
        self._items.append((item, done))
        self._added += 1
        if self._wake is not None and self._hurry is not None:
            self._wake.set()
            if len(self._items) >= self._max_batch:
                self._hurry.set()

    async def flush(self) -> None:
        """Return once every record queued before the call is written (or its batch failed)."""
        if self._wake is None or self._hurry is None:
            while self._items:
                await self._commit(self._take())
            return
        target = self._added
        if self._finished >= target:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._flushes.append((target, done))
        self._hurry.set()
        self._wake.set()
        await done

    async def run(self) -> None:
        """Write batches of whatever is queued, up to max_batch at a time, until stop()."""
        wake, hurry = self._wake, self._hurry = asyncio.Event(), asyncio.Event()
        try:
            while True:
                if not self._items:
                    if self._stopping:
                        return
                    wake.clear()
                    await wake.wait()
                    continue
                if (
                    self._linger
                    and not (self._stopping or self._flushes)
                    and len(self._items) < self._max_batch
                ):
                    hurry.clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self._linger):
                            await hurry.wait()
                await self._commit(self._take())
        finally:
            self._wake = self._hurry = None
            self._stopping = False
            # Writers still waiting were not written, so not acknowledged (a provider sends again);
            # submitted records stay queued for a later flush().
            kept: deque[tuple[T, asyncio.Future[R] | None]] = deque()
            for item, done in self._items:
                if done is None:
                    kept.append((item, done))
                elif not done.done():
                    done.set_exception(RuntimeError("shutting down"))
            self._finished += len(self._items) - len(kept)
            self._items = kept
            for _, waiting in self._flushes:
                if not waiting.done():
                    waiting.set_result(None)
            self._flushes.clear()

    def stop(self) -> None:
        """Let the loop write what is queued and return (cancelling it midway can wedge aiosqlite's
        worker thread at shutdown)."""
        self._stopping = True
        if self._wake is not None and self._hurry is not None:
            self._wake.set()
            self._hurry.set()

    def _take(self) -> list[tuple[T, asyncio.Future[R] | None]]:
        count = min(len(self._items), self._max_batch)
        return [self._items.popleft() for _ in range(count)]

    async def _commit(self, batch: list[tuple[T, asyncio.Future[R] | None]]) -> None:
        items = [item for item, _ in batch]
        try:
            results = await self._write_batch(items)
        except Exception as exc:  # each waiting writer gets the error; submitted records are lost
            for _, done in batch:
                if done is not None and not done.done():
                    done.set_exception(exc)
            lost = sum(1 for _, done in batch if done is None)
            if lost:
                self.dropped += lost
                logger.warning("%s: a batch failed; %d records dropped", self._name, lost, exc_info=True)
            return
        except BaseException:  # cancelled midway: nobody will answer these writers otherwise
            for _, done in batch:
                if done is not None and not done.done():
                    done.set_exception(RuntimeError("shutting down"))
            raise
        finally:
            self._finished += len(batch)
            self._answer_flushes()
        self._dropping = False
        for (_, done), result in zip(batch, results, strict=True):
            if done is not None and not done.done():
                done.set_result(result)
        if self._after is not None:
            await self._after(items, results)

    def _answer_flushes(self) -> None:
        if not self._flushes:
            return
        waiting = []
        for target, done in self._flushes:
            if self._finished >= target:
                if not done.done():
                    done.set_result(None)
            else:
                waiting.append((target, done))
        self._flushes = waiting
