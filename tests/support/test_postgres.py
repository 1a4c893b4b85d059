"""Smoke test for the throwaway PostgreSQL helper."""

from __future__ import annotations

import socket
import time

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.support.postgres import PostgresCluster, throwaway_postgres


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_url_formats() -> None:
    cluster = PostgresCluster(
        host="127.0.0.1", port=5433, user="tendril", password="p@ss", database="tendril"
    )
    assert cluster.url() == "postgresql+asyncpg://tendril:p%40ss@127.0.0.1:5433/tendril"
    assert cluster.url("psycopg") == "postgresql+psycopg://tendril:p%40ss@127.0.0.1:5433/tendril"
    assert cluster.url("") == "postgresql://tendril:p%40ss@127.0.0.1:5433/tendril"


@pytest.mark.anyio
async def test_throwaway_postgres_select_1() -> None:
    t0 = time.monotonic()
    with throwaway_postgres() as cluster:
        startup = time.monotonic() - t0
        engine = create_async_engine(cluster.url())
        try:
            async with engine.connect() as conn:
                assert (await conn.execute(text("SELECT 1"))).scalar_one() == 1
                db = (await conn.execute(text("SELECT current_database()"))).scalar_one()
                assert db == "tendril"
        finally:
            await engine.dispose()
    assert startup < 60, f"PostgreSQL took {startup:.1f}s to start"
    # The server is gone once the context exits.
    with pytest.raises(OSError), socket.create_connection((cluster.host, cluster.port), timeout=2):
        pass
