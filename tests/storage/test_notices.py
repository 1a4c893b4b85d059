"""Change notices between replicas over PostgreSQL NOTIFY/LISTEN (both drivers), and in-process
on SQLite; a LISTEN connection that dies is replaced."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import asyncpg
import pytest

from storage import db, notices
from storage.notices import ChangeNotices
from tests.conftest import _create_database
from tests.support.postgres import PostgresCluster

pytestmark = pytest.mark.anyio


class Heard:
    def __init__(self) -> None:
        self.topics: list[str] = []
        self.changed = anyio.Event()

    async def __call__(self, topic: str) -> None:
        self.topics.append(topic)
        self.changed.set()

    async def wait_for(self, topic: str) -> None:
        with anyio.fail_after(10):
            while topic not in self.topics:
                self.changed = anyio.Event()
                await self.changed.wait()


@asynccontextmanager
async def listening(url: str) -> AsyncIterator[tuple[ChangeNotices, Heard]]:
    engine = db.create_engine(url)
    replica, heard = ChangeNotices(engine), Heard()
    replica.subscribe(heard)
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(replica.listen)
            with anyio.fail_after(10):
                while not replica._listening:  # noqa: ASYNC110 (a flag the LISTEN loop sets; no event to wait on)
                    await anyio.sleep(0.01)
            yield replica, heard
            replica.stop()
    finally:
        await engine.dispose()


@pytest.fixture
def pg_database(postgres: PostgresCluster) -> str:
    return _create_database(postgres)


@pytest.mark.parametrize("driver", ["asyncpg", "psycopg"])
async def test_a_notice_published_on_one_replica_reaches_the_others_and_itself(
    postgres: PostgresCluster, pg_database: str, driver: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = postgres.url(driver).rsplit("/", 1)[0] + f"/{pg_database}"
    async with listening(url) as (first, heard_first), listening(url) as (_second, heard_second):
        await first.publish("jobs:0d4c")
        await heard_second.wait_for("jobs:0d4c")
        await heard_first.wait_for("jobs:0d4c")  # once, through LISTEN, not also directly
        assert heard_first.topics == ["jobs:0d4c"]

        # The LISTEN connections are killed: each reconnects and hears later notices.
        monkeypatch.setattr(notices, "RECONNECT_SECONDS", 0.05)
        admin = await asyncpg.connect(postgres.url(driver=""))
        try:
            killed = await admin.fetch(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = $1 AND query LIKE 'LISTEN %tendril_changes%'",
                pg_database,
            )
            assert len(killed) == 2 and all(row[0] for row in killed)  # both replicas' LISTENs
        finally:
            await admin.close()
        with anyio.fail_after(10):
            while True:  # notices sent while it reconnects are missed: keep sending until one lands
                await first.publish("file:77aa")
                if "file:77aa" in heard_second.topics and "file:77aa" in heard_first.topics:
                    break
                await anyio.sleep(0.1)


async def test_on_sqlite_notices_are_handed_over_in_process(tmp_path: Path) -> None:
    engine = db.create_engine(f"sqlite+aiosqlite:///{tmp_path / 'tendril.db'}")
    try:
        only, heard = ChangeNotices(engine), Heard()
        only.subscribe(heard)
        await only.listen()  # returns at once: nothing to listen to
        await only.publish("jobs:1")
        assert heard.topics == ["jobs:1"]
    finally:
        await engine.dispose()
