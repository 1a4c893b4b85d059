"""Whether a Tendril database is already there, found without creating one.

`db.create_engine` makes a SQLite file on first use and `db.upgrade` fills an empty database with
the schema; the commands that only act on an existing database ask here first.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

# Alembic's bookkeeping table: present once the first migration ran.
VERSION_TABLE = "alembic_version"


async def schema_present(url: str) -> bool:
    """True when the database at `url` exists and its schema was created (by `tendril serve` or
    `tendril db upgrade`). Raises the driver's error when a server database cannot be reached."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_schema_present(parsed.database)
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(lambda sync: sa.inspect(sync).has_table(VERSION_TABLE))
    finally:
        await engine.dispose()


def _sqlite_schema_present(database: str | None) -> bool:
    if not database or database == ":memory:" or not Path(database).is_file():
        return False
    # mode=rw opens an existing file and never creates one.
    uri = f"{Path(database).resolve().as_uri()}?mode=rw"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
        found = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (VERSION_TABLE,)
        ).fetchone()
    return found is not None
