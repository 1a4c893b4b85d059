"""Recording batches of webhook deliveries on SQLite: the ingest hot path.

Through SQLAlchemy over aiosqlite, writing a delivery cost more CPU than receiving it: every value
of every row went through its type's bind processor, the batch's statements were prepared anew,
and each statement was a hop to aiosqlite's thread and back. Here a batch is converted to plain
tuples on the event loop (values shared by the batch converted once) and written in one call on a
thread that owns its own sqlite3 connection: one query finds the batch's duplicates under the write
lock, then one multi-row INSERT per table, so SQLite works with the GIL released. The statements
are compiled from the schema and the values go through the columns' own SQLAlchemy bind processors
(a payload the provider sent as JSON is stored as that text), so every row reads back through
storage.jobs like any other. WAL checkpoints run on a thread of their own (_Checkpointer).

PostgreSQL keeps the SQLAlchemy path (storage.jobs.WebhookStore), which asyncpg already makes lean.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from storage import schema
from storage.db import configure_sqlite_connection
from storage.schema import JobStatus, time_ordered_id
from storage.webhook_records import NewDelivery, dedupe_key, firing_input, firing_key

logger = logging.getLogger(__name__)

CHECKPOINT_INTERVAL_SECONDS = 0.5
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
_FIRING_COLUMNS = ("id", "owner_id", "trigger_id", "workflow_id", "idempotency_key", "input", "created_at")


def _positional_sql(statement: Any, order: Sequence[str]) -> str:
    compiled = statement.compile(dialect=_DIALECT)
    assert tuple(compiled.positiontup) == tuple(order), compiled.positiontup  # rows are built in `order`
    return str(compiled)


def _insert(table: sa.Table, columns: Sequence[str]) -> sqlite.Insert:
    return sqlite.insert(table).values({name: sa.bindparam(name) for name in columns})


_MAX_ROWS_PER_STATEMENT = 500


def _many_rows(single_row_insert: str) -> Callable[[int], str]:
    """`INSERT ... VALUES (?, ...)` for `count` rows: one statement, so one step for SQLite."""
    head, row = single_row_insert.split(" VALUES ")
    return lambda count: f"{head} VALUES {', '.join([row] * count)}"


# No ON CONFLICT: the batch's duplicates are found first, under the same write lock, so a conflict
# here is a bug and rolls the whole batch back (its deliveries answer 500; providers send again).
_insert_deliveries = _many_rows(
    _positional_sql(_insert(schema.webhook_deliveries, _DELIVERY_COLUMNS), _DELIVERY_COLUMNS)
)
_insert_jobs = _many_rows(_positional_sql(_insert(schema.jobs, _JOB_COLUMNS), _JOB_COLUMNS))
_insert_firings = _many_rows(
    _positional_sql(_insert(schema.workflow_trigger_firings, _FIRING_COLUMNS), _FIRING_COLUMNS)
)
_deliveries = schema.webhook_deliveries
_known_event_ids = (
    f"SELECT {_deliveries.c.event_id.name} FROM {_deliveries.name} "
    f"WHERE {_deliveries.c.endpoint_id.name} = ? AND {_deliveries.c.event_id.name} IN ({{marks}})"
)
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


@dataclass
class _Rows:
    """A batch as SQLite values, converted on the event loop so the writer thread runs almost only
    SQLite (every return to Python on that thread waits for the GIL behind the request handlers)."""

    stamp: Any
    deliveries: list[tuple[Any, ...]] = field(default_factory=list)  # one per delivery, in order
    jobs: list[list[tuple[Any, ...]]] = field(default_factory=list)  # the jobs of each delivery
    # The trigger firings of each delivery (event triggers it matched); mostly empty.
    firings: list[list[tuple[Any, ...]]] = field(default_factory=list)


def _rows(batch: Sequence[NewDelivery], now: datetime) -> _Rows:
    rows = _Rows(_timestamp(now))
    stamp = rows.stamp
    keys: dict[UUID, str] = {}  # a batch names the same few endpoints, owners and agents again and again

    def key(value: UUID) -> str:
        if (found := keys.get(value)) is None:
            found = keys[value] = _uuid(value)
        return found

    for item in batch:
        endpoint = item.endpoint
        delivery_key = _uuid(time_ordered_id())
        event_key = item.event_key[:200]
        rows.deliveries.append((delivery_key, key(endpoint.id), dedupe_key(item.event_id), event_key, stamp))
        owner_key = key(endpoint.owner_id)
        payload = item.payload_json if item.payload_json is not None else _json(item.payload)
        rows.jobs.append(
            [
                (
                    _uuid(time_ordered_id()),
                    owner_key,
                    key(agent_id),
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
                for agent_id in item.agent_ids
            ]
        )
        rows.firings.append(
            [
                (
                    _uuid(time_ordered_id()),
                    owner_key,
                    key(firing.trigger_id),
                    key(firing.workflow_id),
                    firing_key(endpoint.id, item.event_id),
                    _json(firing_input(item.payload)),
                    stamp,
                )
                for firing in item.firings
            ]
            if item.firings
            else []
        )
    return rows


class _Checkpointer:
    """Copies the WAL back into the database file, with its fsyncs, on a thread and connection of
    its own, at most every CHECKPOINT_INTERVAL_SECONDS. The delivery writer turns SQLite's automatic
    checkpoints off for its connection: run inside its commits, one in forty took ~20 ms and tripled
    the average commit. A PASSIVE checkpoint never blocks the writer or readers."""

    def __init__(self, database_path: str) -> None:
        self.database_path = database_path
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="tendril-wal-checkpoint")
        self._connection: sqlite3.Connection | None = None
        self._busy = False
        self._next_at = 0.0

    def soon(self) -> None:
        now = time.monotonic()
        if self._busy or now < self._next_at:
            return
        self._busy, self._next_at = True, now + CHECKPOINT_INTERVAL_SECONDS
        self._thread.submit(self._checkpoint)

    def close(self) -> None:
        self._thread.submit(self._close_connection).result()
        self._thread.shutdown()

    def _checkpoint(self) -> None:
        try:
            if self._connection is None:
                self._connection = sqlite3.connect(self.database_path, timeout=30, isolation_level=None)
                configure_sqlite_connection(self._connection)
            self._connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error:  # the next one will try again; nothing is lost meanwhile
            logger.warning("WAL checkpoint failed", exc_info=True)
        finally:
            self._busy = False

    def _close_connection(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class SqliteDeliveryWriter:
    """One thread, one connection: batches are written one after another, never interleaved."""

    def __init__(self, database_path: str) -> None:
        self.database_path = database_path
        self._thread: ThreadPoolExecutor | None = None
        self._checkpointer: _Checkpointer | None = None
        self._connection: sqlite3.Connection | None = None
        self._start_lock = threading.Lock()

    async def record(self, batch: Sequence[NewDelivery], now: datetime) -> list[bool]:
        """Write the batch in one transaction; for each delivery, False when it is a duplicate."""
        with self._start_lock:
            if self._thread is None:
                self._thread = ThreadPoolExecutor(1, thread_name_prefix="tendril-delivery-writer")
                self._checkpointer = _Checkpointer(self.database_path)
        rows = _rows(batch, now)
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._write, rows)

    def close(self) -> None:
        with self._start_lock:
            thread, self._thread = self._thread, None
            checkpointer, self._checkpointer = self._checkpointer, None
        if thread is not None:
            thread.submit(self._close_connection).result()
            thread.shutdown()
        if checkpointer is not None:
            checkpointer.close()

    # -- on the writer thread ----------------------------------------------------------------------
    def _open(self) -> sqlite3.Connection:
        if self._connection is None:
            # Autocommit mode: the transaction is the explicit BEGIN IMMEDIATE below, which takes
            # SQLite's write lock up front (or waits busy_timeout for it) instead of failing mid-way.
            connection = sqlite3.connect(
                self.database_path, timeout=30, isolation_level=None, cached_statements=512
            )
            configure_sqlite_connection(connection)
            connection.execute("PRAGMA wal_autocheckpoint=0")  # the _Checkpointer's job
            self._connection = connection
        return self._connection

    def _close_connection(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _write(self, rows: _Rows) -> list[bool]:
        connection = self._open()
        # Rows per statement: at most _MAX_ROWS_PER_STATEMENT, and within SQLite's limit on bound
        # values for the widest row (a job's).
        bindable = connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // len(_JOB_COLUMNS)
        per_statement = max(1, min(_MAX_ROWS_PER_STATEMENT, bindable))
        connection.execute("BEGIN IMMEDIATE")
        try:
            known = self._known(connection, rows.deliveries, per_statement)
            new: list[bool] = []
            for _, endpoint_key, event_id, _, _ in rows.deliveries:
                new.append((endpoint_key, event_id) not in known)
                known.add((endpoint_key, event_id))  # a second copy within the batch is a duplicate
            fresh = [row for row, is_new in zip(rows.deliveries, new, strict=True) if is_new]
            jobs = [job for jobs, is_new in zip(rows.jobs, new, strict=True) if is_new for job in jobs]
            firings = [f for each, is_new in zip(rows.firings, new, strict=True) if is_new for f in each]
            for chunk, insert in (
                (fresh, _insert_deliveries),
                (jobs, _insert_jobs),
                (firings, _insert_firings),
            ):
                for start in range(0, len(chunk), per_statement):
                    part = chunk[start : start + per_statement]
                    connection.execute(insert(len(part)), [value for row in part for value in row])
            counts: dict[Any, list[int]] = {}
            for (_, endpoint_key, _, _, _), is_new in zip(rows.deliveries, new, strict=True):
                counts.setdefault(endpoint_key, [0, 0])[0 if is_new else 1] += 1
            for endpoint_key, (fresh_count, repeated) in counts.items():
                connection.execute(
                    _COUNT_DELIVERIES, (fresh_count, repeated, rows.stamp, rows.stamp, endpoint_key)
                )
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        if self._checkpointer is not None:
            self._checkpointer.soon()
        return new

    @staticmethod
    def _known(
        connection: sqlite3.Connection, deliveries: list[tuple[Any, ...]], per_statement: int
    ) -> set[tuple[Any, str]]:
        """The (endpoint, event id) pairs of this batch already recorded: its duplicates."""
        by_endpoint: dict[Any, list[str]] = {}
        for _, endpoint_key, event_id, _, _ in deliveries:
            by_endpoint.setdefault(endpoint_key, []).append(event_id)
        known: set[tuple[Any, str]] = set()
        for endpoint_key, event_ids in by_endpoint.items():
            for start in range(0, len(event_ids), per_statement):
                part = event_ids[start : start + per_statement]
                query = _known_event_ids.format(marks=", ".join(["?"] * len(part)))
                for (event_id,) in connection.execute(query, [endpoint_key, *part]):
                    known.add((endpoint_key, event_id))
        return known
