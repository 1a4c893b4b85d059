"""Change notices between replicas: "agent X has new jobs", "file Y was uploaded again".

Each replica tells its own MCP subscribers and job pusher about a change; these notices make sure
every replica hears of it, whichever one took the delivery or the upload. On PostgreSQL they travel
by NOTIFY on one channel, which every replica LISTENs to on a connection of its own (outside the
pool: a pooled connection would carry the LISTEN to whoever borrows it next). On SQLite (one
machine, one process) they are handed to the handlers directly.

A topic is a short string, `kind:id` (see server/core/events.py); never a secret, since
anyone who can read the database can LISTEN.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.db import SingleStatements

logger = logging.getLogger(__name__)

CHANNEL = "tendril_changes"
RECONNECT_SECONDS = 1.0
Handler = Callable[[str], Awaitable[None]]
_NOTIFY = text("SELECT pg_notify(:channel, :topic)")


class ChangeNotices:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._single = SingleStatements(engine)
        self._handlers: list[Handler] = []
        self._shared = engine.dialect.name == "postgresql"
        self._listening = False  # while true, our own NOTIFYs come back to us through LISTEN
        self._inbox: asyncio.Queue[str | None] | None = None
        self._stopping = False

    def subscribe(self, handler: Handler) -> None:
        self._handlers.append(handler)

    async def publish(self, topic: str) -> None:
        if self._shared:
            async with self._single.connect() as conn:  # autocommit: sent at once
                await conn.execute(_NOTIFY, {"channel": CHANNEL, "topic": topic})
            if self._listening:
                return
        await self._deliver(topic)  # this replica, when nothing LISTENs for it (SQLite, the CLI)

    async def listen(self) -> None:
        """PostgreSQL: LISTEN until stop(), reconnecting after a lost connection (notices sent
        meanwhile are missed: subscribers then learn of the jobs when they next read or claim)."""
        if not self._shared:
            return
        self._inbox = asyncio.Queue()
        while not self._stopping:
            try:
                await self._listen_once(self._inbox)
            except Exception:
                logger.warning("lost the change-notice connection; reconnecting", exc_info=True)
            finally:
                self._listening = False
            if not self._stopping:
                await asyncio.sleep(RECONNECT_SECONDS)

    def stop(self) -> None:
        self._stopping = True
        if self._inbox is not None:
            self._inbox.put_nowait(None)

    async def _listen_once(self, inbox: asyncio.Queue[str | None]) -> None:
        url = self.engine.url
        if url.get_driver_name() == "psycopg":
            await self._listen_psycopg(url.set(drivername="postgresql"), inbox)
        else:
            await self._listen_asyncpg(url.set(drivername="postgresql"), inbox)

    async def _listen_asyncpg(self, url: Any, inbox: asyncio.Queue[str | None]) -> None:
        import asyncpg

        connection = await asyncpg.connect(url.render_as_string(hide_password=False))
        lost = asyncio.Event()
        try:

            def on_lost(_connection: Any) -> None:
                lost.set()
                inbox.put_nowait(None)

            await connection.add_listener(CHANNEL, lambda _c, _pid, _ch, payload: inbox.put_nowait(payload))
            connection.add_termination_listener(on_lost)
            self._listening = True
            await self._drain(inbox, lost)
        finally:
            await connection.close(timeout=5)

    async def _listen_psycopg(self, url: Any, inbox: asyncio.Queue[str | None]) -> None:
        import psycopg

        async with await psycopg.AsyncConnection.connect(
            url.render_as_string(hide_password=False), autocommit=True
        ) as connection:
            await connection.execute(f"LISTEN {CHANNEL}")
            lost = asyncio.Event()

            async def relay() -> None:
                try:
                    async for notice in connection.notifies():
                        inbox.put_nowait(notice.payload)
                finally:
                    lost.set()
                    inbox.put_nowait(None)

            relaying = asyncio.create_task(relay())
            self._listening = True
            try:
                await self._drain(inbox, lost)
            finally:
                relaying.cancel()

    async def _drain(self, inbox: asyncio.Queue[str | None], lost: asyncio.Event) -> None:
        while True:
            topic = await inbox.get()
            if topic is not None:
                await self._deliver(topic)
            elif self._stopping:
                return
            elif lost.is_set():
                raise ConnectionError("the LISTEN connection closed")

    async def _deliver(self, topic: str) -> None:
        for handler in self._handlers:
            try:
                await handler(topic)
            except Exception:  # one handler's failure must not keep the others uninformed
                logger.exception("change-notice handler failed for %s", topic)
