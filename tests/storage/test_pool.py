"""PostgreSQL connections the server closed are replaced at checkout, without a ping per checkout."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from sqlalchemy import text

from storage import db
from tests.support.postgres import PostgresCluster

pytestmark = pytest.mark.anyio


async def test_connections_the_server_closed_are_replaced_without_a_failed_request(
    postgres: PostgresCluster,
) -> None:
    engine = db.create_engine(postgres.url())
    admin = await asyncpg.connect(postgres.url(driver=""))
    try:
        async with engine.connect() as a, engine.connect() as b:  # two pooled connections
            pids = {(await c.execute(text("SELECT pg_backend_pid()"))).scalar_one() for c in (a, b)}
        # A restart or an idle timeout, as the pool sees it: the server ends the sessions.
        await admin.execute("SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid", list(pids))
        for _ in range(50):  # the loop notices the closed sockets as soon as it runs
            await asyncio.sleep(0.01)
        for _ in range(3):
            async with engine.connect() as conn:
                pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            assert pid not in pids
        assert not engine.sync_engine.pool._pre_ping  # pyright: ignore[reportAttributeAccessIssue]
    finally:
        await admin.close()
        await engine.dispose()
