"""Engine creation and migrations for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

import functools
import logging
import os
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import QueuePool

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Any constant works: replicas starting together take turns at migrating.
_MIGRATION_LOCK_ID = 7_311_2024
VERSION_TABLE = "alembic_version"
# PostgreSQL connections are reopened after an hour, before a proxy's or server's idle limit.
RECYCLE_SECONDS = 3600  # where Alembic records the revisions a database is at


def sqlite_file(engine: AsyncEngine) -> str | None:
    """The database file of a SQLite engine; None for PostgreSQL or an in-memory database."""
    url = engine.url
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return url.database


def create_engine(url: str) -> AsyncEngine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            _private_file(Path(parsed.database))
        engine = create_async_engine(url, connect_args={"timeout": 30})
        event.listen(engine.sync_engine, "connect", _on_connect)
        return engine
    # No pool_pre_ping: asyncpg's costs three round trips (BEGIN, a query, ROLLBACK) on every
    # checkout, which was a sixth of a workflow execution's event-loop time. A connection the
    # server closed (a restart, an idle timeout, pg_terminate_backend) is already marked closed by
    # asyncpg when the loop saw its socket close; the checkout hook below swaps it for a fresh one
    # without asking the server. One that died unseen (a network partition; psycopg, which does
    # not watch idle sockets) fails its one request, and SQLAlchemy then replaces every pooled
    # connection older than it.
    engine = create_async_engine(url, pool_size=10, max_overflow=10, pool_recycle=RECYCLE_SECONDS)
    event.listen(engine.sync_engine, "checkout", _refuse_closed)
    return engine


class SingleStatements:
    """Connections whose statements each stand alone (one read, one UPDATE), committed as they run.

    On PostgreSQL they are in autocommit: a statement is one round trip, not three (BEGIN, it, and
    COMMIT or ROLLBACK). On SQLite, autocommit would cost two more trips to aiosqlite's thread per
    connection (setting and resetting the mode) while its driver issues no BEGIN for a read anyway,
    so there it is an ordinary transaction. Never for statements that must commit together or see
    one snapshot."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._autocommit = engine.dialect.name == "postgresql"
        self._engine = engine.execution_options(isolation_level="AUTOCOMMIT") if self._autocommit else engine

    def connect(self) -> AbstractAsyncContextManager[AsyncConnection]:
        return self._engine.connect() if self._autocommit else self._engine.begin()


def _refuse_closed(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """Pool checkout: a connection its driver knows is closed is replaced (SQLAlchemy retries the
    checkout with a new one when this raises DisconnectionError)."""
    driver = getattr(dbapi_connection, "_connection", None)
    closed = getattr(driver, "is_closed", None)  # asyncpg
    if callable(closed) and closed():
        raise DisconnectionError("the server closed this connection")
    if getattr(driver, "closed", False) or getattr(driver, "broken", False):  # psycopg 3
        raise DisconnectionError("the server closed this connection")


def _private_file(path: Path) -> None:
    """The database file, readable by this user only; SQLite gives its WAL and shared-memory files
    the same mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    os.chmod(path, 0o600)


def _on_connect(dbapi_connection: Any, _record: Any) -> None:
    configure_sqlite_connection(dbapi_connection)


def configure_sqlite_connection(dbapi_connection: Any) -> None:
    """Every SQLite connection Tendril opens (the pool's, and storage.delivery_writer's)."""
    cursor = dbapi_connection.cursor()
    # WAL lets readers proceed during a write; foreign keys are off by default in SQLite.
    cursor.execute("PRAGMA journal_mode=WAL")
    # In WAL mode NORMAL skips the fsync per commit and stays durable across process crashes
    # (SIGKILL included; tests/server/test_webhook_crash.py); only a power loss can drop the
    # last commits. PostgreSQL is the engine for stronger guarantees.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the schema to `revision`; safe to run from several replicas at once."""
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK_ID})
        await conn.run_sync(_run_upgrade, revision)


def _run_upgrade(connection: Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


@dataclass(frozen=True, slots=True)
class MigrationState:
    current: tuple[str, ...]  # the revisions the database says it is at (none before the first)
    head: tuple[str, ...]  # the newest revisions this code ships

    @property
    def at_head(self) -> bool:
        return set(self.current) == set(self.head)


@functools.cache
def head_revisions() -> tuple[str, ...]:
    """Read from the migration scripts once per process (they do not change while it runs)."""
    return tuple(sorted(ScriptDirectory.from_config(alembic_config()).get_heads()))


async def migration_state(engine: AsyncEngine) -> MigrationState:
    """Where the database's schema is against the code's migrations: two small queries. (Alembic's
    MigrationContext would log two INFO lines per look, every few seconds under readiness probes.)"""
    async with engine.connect() as conn:
        current = await conn.run_sync(_current_revisions)
    return MigrationState(current, head_revisions())


def _current_revisions(connection: Connection) -> tuple[str, ...]:
    if not inspect(connection).has_table(VERSION_TABLE):
        return ()
    return tuple(
        sorted(row[0] for row in connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")))
    )


def pool_usage(engine: AsyncEngine) -> tuple[int, int] | None:
    """(connections checked out, the pool's configured size), for a pool that has a size."""
    pool = engine.pool
    if not isinstance(pool, QueuePool):
        return None
    return pool.checkedout(), pool.size()
