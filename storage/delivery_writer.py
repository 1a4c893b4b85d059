"""Recording batches of webhook deliveries on SQLite: the ingest hot path.

Through SQLAlchemy over aiosqlite, writing a delivery cost more CPU than receiving it: every value
of every row went through its type's bind processor, the batch's statements were prepared anew,
and each statement was a hop to aiosqlite's thread and back. Here a batch is one call on a thread
that owns its own sqlite3 connection to the same database file: the statements are compiled from
the schema once, the values shared by a batch (its time, the endpoint, the agents) are converted
once, and SQLite works with the GIL released. Values still go through the columns' own SQLAlchemy
bind processors, so what is stored reads back through storage.jobs like any other row.

PostgreSQL keeps the SQLAlchemy path (storage.jobs.WebhookStore), which asyncpg already makes lean.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from storage import schema
from storage.db import configure_sqlite_connection
from storage.schema import JobStatus

if TYPE_CHECKING:
    from storage.jobs import NewDelivery

_DIALECT = sqlite.dialect()
_DELIVERY_COLUMNS = ("id", "endpoint_id", "event_id", "event_key", "received_at")
_JOB_COLUMNS = (
    "id",
    "owner_id",
    "agent_id",
    "delivery_id",
    "provider",
    "event_key",
    "payload",
    "status",
    "attempts",
    "max_attempts",
    "run_after",
    "created_at",
    "updated_at",
)


def _positional_sql(statement: Any, order: Sequence[str]) -> str:
    compiled = statement.compile(dialect=_DIALECT)
    assert tuple(compiled.positiontup) == tuple(order), compiled.positiontup  # rows are built in `order`
    return str(compiled)


def _insert(table: sa.Table, columns: Sequence[str]) -> sqlite.Insert:
    return sqlite.insert(table).values({name: sa.bindparam(name) for name in columns})


_INSERT_DELIVERY = _positional_sql(
    _insert(schema.webhook_deliveries, _DELIVERY_COLUMNS).on_conflict_do_nothing(
        index_elements=["endpoint_id", "event_id"]
    ),
    _DELIVERY_COLUMNS,
)
_INSERT_JOB = _positional_sql(_insert(schema.jobs, _JOB_COLUMNS), _JOB_COLUMNS)
_endpoints = schema.webhook_endpoints
_COUNT_DELIVERIES = _positional_sql(
    _endpoints.update()
    .where(_endpoints.c.id == sa.bindparam("endpoint_id"))
    .values(
        delivery_count=_endpoints.c.delivery_count + sa.bindparam("fresh"),
        duplicate_count=_endpoints.c.duplicate_count + sa.bindparam("repeated"),
        last_delivery_at=sa.bindparam("now"),
        updated_at=sa.bindparam("now_again"),
    ),
    ("fresh", "repeated", "now", "now_again", "endpoint_id"),
)


def _bind(column: sa.Column[Any]) -> Callable[[Any], Any]:
    """The column's own conversion to what SQLite stores (UUID hex, timestamp text, JSON text)."""
    processor = column.type.dialect_impl(_DIALECT).bind_processor(_DIALECT)
    return processor or (lambda value: value)


_uuid = _bind(schema.jobs.c.id)
_timestamp = _bind(schema.jobs.c.created_at)
_json = _bind(schema.jobs.c.payload)


class SqliteDeliveryWriter:
    """One thread, one connection: batches are written one after another, never interleaved."""

    def __init__(self, database_path: str) -> None:
        self.database_path = database_path
        self._thread: ThreadPoolExecutor | None = None
        self._connection: sqlite3.Connection | None = None
        self._start_lock = threading.Lock()

    async def record(self, batch: Sequence[NewDelivery], now: datetime) -> list[bool]:
        """Write the batch in one transaction; for each delivery, False when it is a duplicate."""
        with self._start_lock:
            if self._thread is None:
                self._thread = ThreadPoolExecutor(1, thread_name_prefix="tendril-delivery-writer")
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._write, batch, now)

    def close(self) -> None:
        with self._start_lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.submit(self._close_connection).result()
            thread.shutdown()

    # -- on the writer thread ----------------------------------------------------------------------
    def _open(self) -> sqlite3.Connection:
        if self._connection is None:
            # Autocommit mode: the transaction is the explicit BEGIN IMMEDIATE below, which takes
            # SQLite's write lock up front (or waits busy_timeout for it) instead of failing mid-way.
            connection = sqlite3.connect(self.database_path, timeout=30, isolation_level=None)
            configure_sqlite_connection(connection)
            self._connection = connection
        return self._connection

    def _close_connection(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _write(self, batch: Sequence[NewDelivery], now: datetime) -> list[bool]:
        connection = self._open()
        stamp = _timestamp(now)
        counts: dict[Any, list[int]] = {}
        jobs: list[tuple[Any, ...]] = []
        new: list[bool] = []
        connection.execute("BEGIN IMMEDIATE")
        try:
            for item in batch:
                endpoint = item.endpoint
                endpoint_key = _uuid(endpoint.id)
                delivery_key = _uuid(uuid.uuid4())
                event_key = item.event_key[:200]
                inserted = connection.execute(
                    _INSERT_DELIVERY, (delivery_key, endpoint_key, item.event_id[:200], event_key, stamp)
                ).rowcount
                new.append(inserted == 1)
                counts.setdefault(endpoint_key, [0, 0])[0 if inserted == 1 else 1] += 1
                if inserted != 1:
                    continue
                owner_key, payload = _uuid(endpoint.owner_id), _json(item.payload)
                for agent_id in item.agent_ids:
                    jobs.append(
                        (
                            _uuid(uuid.uuid4()),
                            owner_key,
                            _uuid(agent_id),
                            delivery_key,
                            endpoint.provider,
                            event_key,
                            payload,
                            JobStatus.QUEUED,
                            0,
                            item.max_attempts,
                            stamp,
                            stamp,
                            stamp,
                        )
                    )
            connection.executemany(_INSERT_JOB, jobs)
            for endpoint_key, (fresh, repeated) in counts.items():
                connection.execute(_COUNT_DELIVERIES, (fresh, repeated, stamp, stamp, endpoint_key))
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        return new
