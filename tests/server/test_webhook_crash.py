"""Crash safety: 1,000 signed deliveries (10% sent twice) into a `tendril serve` that is killed with
SIGKILL and restarted several times. Every delivery that got a 2xx is a job exactly once."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from uuid import UUID

import anyio
import anyio.to_thread
import httpx
import pytest
import sqlalchemy as sa

from server.settings import Settings
from storage import db, schema
from tests.conftest import child_env
from tests.e2e.tendril_process import free_port
from tests.support.core import prepared_core
from tests.support.webhooks import GitHubSigner

pytestmark = pytest.mark.anyio

EVENTS = 1000
KILLS = 4
SENDERS = 8


async def _bootstrap(settings: Settings, signer: GitHubSigner) -> tuple[UUID, UUID]:
    async with prepared_core(settings.model_copy(update={"webhook_allow_insecure_urls": True})) as core:
        owner = await core.identity.create_owner("crash-owner")
        await core.identity.create_agent(owner.id, name="worker", allowed_connectors=["github"])
        connection, _ = await core.connections.start(owner.id, core.catalog["github"], label="gh")
        endpoint, _ = await core.webhooks.setup(
            owner.id, connection.id, provider="github", secrets=signer.secrets
        )
        return owner.id, endpoint.id


class Server:
    def __init__(self, settings: Settings, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = child_env(settings, TENDRIL_PUBLIC_URL=self.url, TENDRIL_LOG_LEVEL="WARNING")
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    async def start(self) -> None:
        argv = [sys.executable, "-m", "server.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        log_path = self.workdir / f"serve-{self.starts}.log"

        def spawn() -> subprocess.Popen[bytes]:
            with log_path.open("wb") as log:  # the child keeps its own copy of the descriptor
                return subprocess.Popen(argv, cwd=self.workdir, env=self.env, stdout=log, stderr=log)

        self.process = await anyio.to_thread.run_sync(spawn)
        self.starts += 1
        deadline = time.monotonic() + 30
        async with httpx.AsyncClient() as probe:
            while time.monotonic() < deadline:
                try:
                    if (await probe.get(f"{self.url}/healthz", timeout=1)).status_code == 200:
                        return
                except httpx.HTTPError:
                    await anyio.sleep(0.05)
        raise TimeoutError(
            f"tendril serve did not start: {(self.workdir / 'serve-0.log').read_text()[-2000:]}"
        )

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


async def test_acknowledged_deliveries_survive_sigkill_exactly_once(
    settings: Settings, tmp_path: Path
) -> None:
    signer = GitHubSigner()
    owner_id, endpoint_id = await _bootstrap(settings, signer)
    path = f"/api/v1/connectors/webhooks/github/{endpoint_id}"
    event_ids = [f"delivery-{n:04d}" for n in range(EVENTS)]
    sends = event_ids + random.Random(7).sample(event_ids, EVENTS // 10)  # 10% duplicates
    random.Random(11).shuffle(sends)
    pending = list(sends)
    acked: list[str] = []
    # The killer strikes as acknowledgements pass these counts, so every kill lands mid-stream.
    marks = [(k + 1) * len(sends) // (KILLS + 1) for k in range(KILLS)]
    reached = [anyio.Event() for _ in marks]
    refused: list[int] = []
    server = Server(settings, tmp_path)
    await server.start()
    try:
        async with httpx.AsyncClient(timeout=5) as client, anyio.create_task_group() as group:

            async def sender() -> None:
                while pending:
                    event_id = pending.pop()
                    delivery = signer.deliver(event_id)
                    try:
                        reply = await client.post(
                            server.url + path, content=delivery.body, headers=delivery.headers
                        )
                    except httpx.HTTPError:  # the process died under us: the provider sends again
                        pending.insert(0, event_id)
                        await anyio.sleep(0.05)
                        continue
                    if 200 <= reply.status_code < 300:
                        acked.append(event_id)
                        for mark, event in zip(marks, reached, strict=True):
                            if len(acked) >= mark:
                                event.set()
                    else:
                        refused.append(reply.status_code)
                        pending.insert(0, event_id)

            async def killer() -> None:
                for kill, event in enumerate(reached):
                    await event.wait()
                    server.kill()
                    await anyio.sleep(random.Random(kill).uniform(0.05, 0.3))
                    await server.start()

            for _ in range(SENDERS):
                group.start_soon(sender)
            group.start_soon(killer)
    finally:
        server.stop()

    assert server.starts == KILLS + 1 and refused == []
    assert set(acked) == set(event_ids)
    engine = db.create_engine(settings.resolved_database_url)
    try:
        async with engine.connect() as conn:
            deliveries = (
                (
                    await conn.execute(
                        sa.select(schema.webhook_deliveries.c.event_id).where(
                            schema.webhook_deliveries.c.endpoint_id == endpoint_id
                        )
                    )
                )
                .scalars()
                .all()
            )
            jobs = (
                (
                    await conn.execute(
                        sa.select(schema.webhook_deliveries.c.event_id)
                        .join(schema.jobs, schema.jobs.c.delivery_id == schema.webhook_deliveries.c.id)
                        .where(schema.jobs.c.owner_id == owner_id)
                    )
                )
                .scalars()
                .all()
            )
    finally:
        await engine.dispose()
    assert sorted(deliveries) == sorted(event_ids)  # none lost, none doubled
    assert sorted(jobs) == sorted(event_ids)  # one job per delivery for the one agent
