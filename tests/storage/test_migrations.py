"""Migrations build exactly the schema the code declares, on both engines."""

from __future__ import annotations

import uuid

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection

from storage import db
from storage.repositories import Store
from storage.schema import metadata
from tests.support.postgres import PostgresCluster

pytestmark = pytest.mark.anyio


def _differences(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


async def test_migrations_match_the_declared_schema(empty_database_url: str) -> None:
    engine = db.create_engine(empty_database_url)
    try:
        await db.upgrade(engine)
        await db.upgrade(engine)  # idempotent: a second start changes nothing
        async with engine.connect() as conn:
            differences = await conn.run_sync(_differences)
    finally:
        await engine.dispose()
    assert differences == []


async def test_psycopg_driver_works_too(postgres: PostgresCluster) -> None:
    """TENDRIL_DATABASE_URL may name psycopg 3 instead of asyncpg."""
    engine = db.create_engine(postgres.url(driver="psycopg"))
    try:
        await db.upgrade(engine)
        store = Store(engine)
        owner = await store.create_owner(f"psycopg-{uuid.uuid4().hex[:6]}")
        assert await store.owner_by_name(owner.name) == owner
    finally:
        await engine.dispose()
