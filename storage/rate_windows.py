"""Shared rate-limit windows: replicas add the requests they counted to a bucket's window and read
back the total, in one statement. A window that has ended starts over with the hits being added."""

from __future__ import annotations

from collections.abc import Collection, Mapping

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from storage import schema


class RateWindowStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def add_hits(
        self, hits: Mapping[str, int], *, now: float, seconds: float
    ) -> dict[str, tuple[int, float]]:
        """Add each bucket's hits to its current window (a new one past its end); for each bucket,
        the window's total hits and when it ends."""
        table = schema.rate_windows
        insert = postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert
        totals: dict[str, tuple[int, float]] = {}
        async with self.engine.begin() as conn:
            for bucket, added in sorted(hits.items()):  # one order on every replica: no deadlocks
                statement = insert(table).values(bucket=bucket, hits=added, window_end=now + seconds)
                ended, new = table.c.window_end <= now, statement.excluded
                statement = statement.on_conflict_do_update(
                    index_elements=[table.c.bucket],
                    set_={
                        "hits": sa.case((ended, new.hits), else_=table.c.hits + added),
                        "window_end": sa.case((ended, new.window_end), else_=table.c.window_end),
                    },
                ).returning(table.c.hits, table.c.window_end)
                row = (await conn.execute(statement)).one()
                totals[bucket] = (row.hits, row.window_end)
        return totals

    async def read(self, buckets: Collection[str], *, now: float) -> dict[str, tuple[int, float]]:
        """The buckets' current windows (total hits, end); an ended or unknown one is left out."""
        table = schema.rate_windows
        query = sa.select(table).where(table.c.bucket.in_(list(buckets)), table.c.window_end > now)
        async with self.engine.connect() as conn:
            return {row.bucket: (row.hits, row.window_end) for row in await conn.execute(query)}

    async def forget_ended(self, now: float) -> int:
        """Drop windows that ended: their buckets start afresh on their next request anyway."""
        table = schema.rate_windows
        async with self.engine.begin() as conn:
            result = await conn.execute(table.delete().where(table.c.window_end <= now))
        return result.rowcount
