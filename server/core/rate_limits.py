"""How many requests an API key may make, and how many tools an agent may call, per minute.

Fixed windows: a bucket's window starts with its first request and lasts a minute; every request
counts, and past the limit the rest are refused until the window ends (the REST edge answers 429
with Retry-After, the MCP edge a tool error with retryAfter), before they do anything.

In one process (SQLite) the counts live in memory, kept by the `limits` library. With several
replicas (PostgreSQL) each replica counts locally and adds its counts to the bucket's shared window
in the database (storage/rate_windows.py), reading back everyone's total: on the bucket's first
request in a window, whenever it has used a quarter of what was left at its last look (so every
request looks once the limit is near), and in the background every `sync_seconds`. One replica's
traffic thus counts against the others' within that delay, and exactly at the limit.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import anyio
from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import FixedWindowRateLimiter

from server.core.throttle import Throttled
from storage.rate_windows import RateWindowStore

logger = logging.getLogger(__name__)

WINDOW_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Quota:
    """Where a bucket stands after a request: what it may make per window, what is left, and
    when the window ends (Unix seconds)."""

    limit: int
    remaining: int
    reset_at: float
    allowed: bool

    def retry_after(self, now: float) -> int:
        return max(1, math.ceil(self.reset_at - now))


class OverQuota(Throttled):
    """A request past its bucket's limit."""

    def __init__(self, quota: Quota, what: str, now: float) -> None:
        wait = quota.retry_after(now)
        super().__init__(
            f"rate limit exceeded: {quota.limit} {what} per minute; try again in {wait}s", retry_after=wait
        )
        self.quota = quota


class WindowCounter(Protocol):
    async def hit(self, bucket: str, limit: int) -> Quota: ...

    async def flush(self) -> None: ...


class LocalWindows:
    """Counts in this process (`limits`' fixed windows in memory)."""

    def __init__(self) -> None:
        self._windows = FixedWindowRateLimiter(MemoryStorage())

    async def hit(self, bucket: str, limit: int) -> Quota:
        item = RateLimitItemPerMinute(limit)
        allowed = self._windows.hit(item, bucket)
        stats = self._windows.get_window_stats(item, bucket)
        return Quota(limit, stats.remaining, stats.reset_time, allowed)

    async def flush(self) -> None:
        return None


@dataclass(slots=True)
class _Seen:
    """One bucket's window as this replica knows it."""

    known: int = 0  # everyone's hits at the last look
    pending: int = 0  # this replica's hits since, not yet added
    window_end: float = 0.0  # 0 until the first look tells

    def ended(self, now: float) -> bool:
        return 0 < self.window_end <= now


class SharedWindows:
    """Counts shared by every replica through the database."""

    def __init__(self, store: RateWindowStore, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock
        self._seen: dict[str, _Seen] = {}
        self._forgotten_at = 0.0

    async def hit(self, bucket: str, limit: int) -> Quota:
        now = self._clock()
        seen = self._seen.get(bucket)
        if seen is None or seen.ended(now):
            seen = self._seen[bucket] = _Seen()
        seen.pending += 1
        if seen.window_end <= now or seen.pending >= max(1, (limit - seen.known) // 4):
            await self._add({bucket: seen}, now)
        used = seen.known + seen.pending
        return Quota(limit, max(0, limit - used), seen.window_end, used <= limit)

    async def flush(self) -> None:
        """Add what this replica counted since its last look, read back what the others did to the
        windows it knows, and forget ended windows."""
        now = self._clock()
        for bucket in [b for b, seen in self._seen.items() if seen.ended(now)]:
            del self._seen[bucket]
        await self._add({b: seen for b, seen in self._seen.items() if seen.pending}, now)
        idle = [b for b, seen in self._seen.items() if not seen.pending and seen.window_end]
        if idle:
            for bucket, (hits, _) in (await self._store.read(idle, now=now)).items():
                if bucket in self._seen:
                    self._seen[bucket].known = max(self._seen[bucket].known, hits)
        if now - self._forgotten_at >= WINDOW_SECONDS:
            self._forgotten_at = now
            await self._store.forget_ended(now)

    async def _add(self, buckets: dict[str, _Seen], now: float) -> None:
        if not buckets:
            return
        added = {bucket: seen.pending for bucket, seen in buckets.items()}
        for seen in buckets.values():
            seen.pending = 0  # hits counted while the database answers stay pending
        totals = await self._store.add_hits(added, now=now, seconds=WINDOW_SECONDS)
        for bucket, (hits, window_end) in totals.items():
            buckets[bucket].known, buckets[bucket].window_end = hits, window_end


class RateLimits:
    """The buckets: an API key's requests, an address's requests without a valid key, an agent's
    tool calls. A key or agent without a limit of its own gets the server's default."""

    def __init__(
        self,
        counter: WindowCounter,
        *,
        api_default: int,
        tool_call_default: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.counter = counter
        self.api_default = api_default
        self.tool_call_default = tool_call_default
        self._clock = clock
        self._stopping: anyio.Event | None = None

    async def run(self, every: float) -> None:
        """Share this replica's counts every `every` seconds until stopped (a no-op in one process)."""
        self._stopping = stopping = anyio.Event()
        while not stopping.is_set():
            with anyio.move_on_after(every):
                await stopping.wait()
            try:
                await self.counter.flush()
            except Exception:  # the database is away: counts stay pending, requests go on
                logger.warning("could not share rate-limit counts; will try again", exc_info=True)

    def stop(self) -> None:
        if self._stopping is not None:
            self._stopping.set()

    async def api_request(self, key_id: object, limit: int | None) -> Quota:
        """Count a request made with an API key; raises OverQuota past its limit."""
        return await self._take(f"key:{key_id}", limit or self.api_default, "requests")

    async def anonymous_request(self, client: str | None) -> Quota:
        """Count a request made without a valid key, by the caller's address."""
        return await self._take(f"client:{client or 'unknown'}", self.api_default, "requests")

    async def tool_call(self, agent_id: object, limit: int | None) -> Quota:
        """Count an agent's tool call; raises OverQuota past its limit."""
        return await self._take(f"agent:{agent_id}", limit or self.tool_call_default, "tool calls")

    async def _take(self, bucket: str, limit: int, what: str) -> Quota:
        quota = await self.counter.hit(bucket, limit)
        if not quota.allowed:
            raise OverQuota(quota, what, self._clock())
        return quota
