"""The job queue on both engines: dedupe, leases, retries with backoff, dead letters, isolation."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

import anyio
import pytest

from connectors import Backoff
from storage import db, delivery_writer
from storage.db import sqlite_file
from storage.jobs import EndpointRecord, JobQueue, JobStatus, NewDelivery, WebhookStore
from storage.repositories import Store, utcnow

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class World:
    store: Store
    hooks: WebhookStore
    queue: JobQueue
    clock: Clock
    endpoint: EndpointRecord
    agents: list[UUID]

    async def deliver(self, event_id: str, agents: list[UUID] | None = None) -> bool:
        return await self.hooks.record_delivery(
            self.endpoint,
            event_id=event_id,
            event_key="github.issues.opened",
            payload={"n": event_id},
            agent_ids=self.agents if agents is None else agents,
            max_attempts=2,
        )


@pytest.fixture
async def world(database_url: str) -> AsyncIterator[World]:
    engine = db.create_engine(database_url)
    await db.upgrade(engine)
    clock = Clock()
    store = Store(engine)
    owner = await store.create_owner("queue-owner")
    agents = [
        (
            await store.create_agent(
                owner.id, name=name, allowed_connectors=["github"], key_hash=name * 4, key_prefix="p"
            )
        ).id
        for name in ("a1", "a2")
    ]
    hooks = WebhookStore(engine, clock)
    endpoint = await hooks.create_endpoint(
        owner.id, provider="github", connection_id=None, sealed_secrets="sealed", agent_ids=None
    )
    try:
        yield World(
            store, hooks, JobQueue(engine, clock, backoff=Backoff(2.0, 600).delay), clock, endpoint, agents
        )
    finally:
        await engine.dispose()


async def test_a_delivery_is_one_job_per_agent_and_duplicates_add_nothing(world: World) -> None:
    assert await world.deliver("d-1") is True
    assert await world.deliver("d-1") is False
    jobs = await world.queue.list(world.endpoint.owner_id)
    assert sorted(j.agent_id for j in jobs) == sorted(world.agents)
    endpoint = await world.hooks.endpoint(world.endpoint.id)
    assert endpoint is not None and (endpoint.delivery_count, endpoint.duplicate_count) == (1, 1)


async def test_concurrent_duplicates_still_make_one_delivery(world: World) -> None:
    results: list[bool] = []

    async def send() -> None:
        results.append(await world.deliver("same", [world.agents[0]]))

    async with anyio.create_task_group() as group:
        for _ in range(10):
            group.start_soon(send)
    assert sorted(results) == [False] * 9 + [True]
    assert len(await world.queue.list(world.endpoint.owner_id)) == 1


async def test_a_batch_dedupes_within_itself_and_against_what_is_stored(world: World) -> None:
    """The group-commit path: 600 deliveries x 2 agents are more rows than one SQLite statement takes
    (storage.delivery_writer), so the batch is split; everything reads back through the ordinary queries."""
    assert await world.deliver("seen-before") is True
    payload = {"action": "opened", "issue": {"title": "ünïcode \u2603", "n": None}}
    batch = [
        NewDelivery(world.endpoint, f"b-{n}", "github.issues.opened", payload, tuple(world.agents), 3)
        for n in range(600)
    ]
    batch[10] = batch[3]  # a provider retry inside the same batch
    batch[20] = NewDelivery(world.endpoint, "seen-before", "github.issues.opened", payload, (), 3)
    # As a provider sent it (its spacing, raw UTF-8): stored as that text where the engine allows.
    sent_text = json.dumps({"sent": "as is ☃"}, ensure_ascii=False, indent=1)
    batch[30] = NewDelivery(
        world.endpoint,
        "as-sent",
        "github.issues.opened",
        json.loads(sent_text),
        (world.agents[0],),
        3,
        sent_text,
    )
    new = await world.hooks.record_deliveries(batch)
    assert [n for n, is_new in enumerate(new) if not is_new] == [10, 20]
    jobs = await world.queue.list(world.endpoint.owner_id, limit=5000)
    assert len(jobs) == 2 + 597 * 2 + 1
    assert [j.payload for j in jobs if "sent" in j.payload] == [{"sent": "as is ☃"}]
    sample = next(j for j in jobs if j.payload == payload)
    assert sample.status == JobStatus.QUEUED and sample.max_attempts == 3
    assert sample.created_at == world.clock.now and sample.run_after == world.clock.now
    assert len({j.id for j in jobs}) == len(jobs)
    endpoint = await world.hooks.endpoint(world.endpoint.id)
    assert endpoint is not None
    assert (endpoint.delivery_count, endpoint.duplicate_count) == (599, 2)
    assert endpoint.last_delivery_at == world.clock.now


async def test_an_agent_claims_only_its_own_and_a_dead_workers_lease_comes_back(world: World) -> None:
    await world.deliver("d-1")
    mine, theirs = world.agents
    [job] = await world.queue.claim(worker="w1", lease_seconds=30, agent_id=mine, limit=5)
    assert (job.agent_id, job.status, job.attempts) == (mine, JobStatus.RUNNING, 1)
    assert await world.queue.claim(worker="w2", lease_seconds=30, agent_id=mine) == []  # leased
    assert await world.queue.complete(job.id, agent_id=theirs, result={}) is None  # not theirs
    world.clock.advance(31)  # w1 died: the lease runs out
    [again] = await world.queue.claim(worker="w2", lease_seconds=30, agent_id=mine)
    assert (again.id, again.attempts, again.claimed_by) == (job.id, 2, "w2")
    done = await world.queue.complete(again.id, agent_id=mine, result={"ok": True})
    assert done is not None and done.status == JobStatus.SUCCEEDED and done.result == {"ok": True}
    assert await world.queue.claim(worker="w3", lease_seconds=30, agent_id=mine) == []


async def test_failures_back_off_then_go_dead_and_can_be_retried(world: World) -> None:
    await world.deliver("d-1", [world.agents[0]])
    agent = world.agents[0]
    [job] = await world.queue.claim(worker="w", lease_seconds=30, agent_id=agent)
    failed = await world.queue.fail(job.id, agent_id=agent, error="boom", retry=True)
    assert failed is not None and failed.status == JobStatus.FAILED and failed.run_after > world.clock.now
    assert await world.queue.claim(worker="w", lease_seconds=30, agent_id=agent) == []  # backing off
    world.clock.advance(5)
    [second] = await world.queue.claim(worker="w", lease_seconds=30, agent_id=agent)
    dead = await world.queue.fail(second.id, agent_id=agent, error="boom again", retry=True)
    assert dead is not None and dead.status == JobStatus.DEAD and dead.last_error == "boom again"
    revived = await world.queue.retry_dead(job.id, owner_id=world.endpoint.owner_id)
    assert revived is not None and revived.status == JobStatus.QUEUED
    [third] = await world.queue.claim(worker="w", lease_seconds=30, agent_id=agent)
    assert third.attempts == 3


async def test_a_lease_lost_on_the_last_attempt_is_a_dead_letter(world: World) -> None:
    await world.deliver("d-1", [world.agents[0]])
    agent = world.agents[0]
    for _ in range(2):
        assert await world.queue.claim(worker="w", lease_seconds=10, agent_id=agent)
        world.clock.advance(11)
    assert await world.queue.claim(worker="w", lease_seconds=10, agent_id=agent) == []
    [job] = await world.queue.list(world.endpoint.owner_id, status=JobStatus.DEAD)
    assert job.last_error == "lease expired on the last attempt"


async def test_parallel_workers_never_share_a_job(world: World) -> None:
    for n in range(20):
        await world.deliver(f"d-{n}", [world.agents[0]])
    claimed: list[UUID] = []

    async def worker(name: str) -> None:
        while batch := await world.queue.claim(worker=name, lease_seconds=60, limit=3):
            claimed.extend(j.id for j in batch)

    async with anyio.create_task_group() as group:
        for n in range(4):
            group.start_soon(worker, f"w{n}")
    assert len(claimed) == len(set(claimed)) == 20


async def test_on_sqlite_the_wal_is_checkpointed_off_the_delivery_writers_commits(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer's own connection never checkpoints (its commits stay short); the checkpointer
    thread copies the WAL back into the database file instead."""
    database_file = sqlite_file(world.hooks.engine)
    if database_file is None:
        pytest.skip("PostgreSQL has no WAL file to checkpoint")
    monkeypatch.setattr(delivery_writer, "CHECKPOINT_INTERVAL_SECONDS", 0.0)
    database = anyio.Path(database_file)
    size_before = (await database.stat()).st_size
    for batch in range(40):
        deliveries = [
            NewDelivery(world.endpoint, f"c-{batch}-{n}", "github.push", {"n": n}, tuple(world.agents), 3)
            for n in range(50)
        ]
        await world.hooks.record_deliveries(deliveries)
    world.hooks.close()  # waits for the checkpoint in progress
    # 2,000 deliveries and 4,000 jobs reached the database file itself, not only its WAL.
    assert (await database.stat()).st_size > size_before + 500_000
