"""Repositories scope every read by owner, and keep only digests and ciphertext."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import pytest
import sqlalchemy as sa

from storage import db, schema
from storage.repositories import AlreadyExists, ConnectionRecord, ConnectionStatus, Store

pytestmark = pytest.mark.anyio


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    engine = db.create_engine(database_url)
    await db.upgrade(engine)
    try:
        yield Store(engine)
    finally:
        await engine.dispose()


async def test_owner_names_are_unique(store: Store) -> None:
    await store.create_owner("acme")
    with pytest.raises(AlreadyExists):
        await store.create_owner("acme")
    assert await store.count_owners() == 1


LIVE = (ConnectionStatus.PENDING, ConnectionStatus.ACTIVE, ConnectionStatus.NEEDS_REAUTH)


async def activate(
    store: Store, owner_id: UUID, connection_id: UUID, **values: Any
) -> ConnectionRecord | None:
    return await store.move_connection(
        connection_id, owner_id=owner_id, to=ConnectionStatus.ACTIVE, allowed_from=LIVE, **values
    )


async def revoke(store: Store, owner_id: UUID, connection_id: UUID) -> ConnectionRecord | None:
    return await store.move_connection(
        connection_id, owner_id=owner_id, to=ConnectionStatus.REVOKED, allowed_from=LIVE, credentials=None
    )


async def test_connections_are_scoped_to_their_owner(store: Store) -> None:
    alice, bob = await store.create_owner("alice"), await store.create_owner("bob")
    connection = await store.create_connection(alice.id, connector_slug="slack", label="Slack", config={})
    assert await store.get_connection(alice.id, connection.id) == connection
    assert await store.get_connection(bob.id, connection.id) is None
    assert await store.list_connections(bob.id) == []
    assert await activate(store, bob.id, connection.id, credentials="v1:x:y") is None
    assert await revoke(store, bob.id, connection.id) is None
    assert (await store.get_connection(alice.id, connection.id)) == connection


async def test_connections_list_newest_first_and_filter(store: Store) -> None:
    ticks = iter(range(100))
    from datetime import UTC, datetime, timedelta

    base = datetime(2026, 1, 1, tzinfo=UTC)
    store.clock = lambda: base + timedelta(seconds=next(ticks))
    owner = await store.create_owner("o")
    first = await store.create_connection(owner.id, connector_slug="slack", label="A", config={})
    second = await store.create_connection(owner.id, connector_slug="telegram", label="B", config={"x": 1})
    assert [c.id for c in await store.list_connections(owner.id)] == [second.id, first.id]
    assert [c.id for c in await store.list_connections(owner.id, connector_slugs=["slack"])] == [first.id]
    activated = await activate(store, owner.id, first.id, credentials="v1:k:abc", account={"team": "Acme"})
    assert activated is not None and activated.status == ConnectionStatus.ACTIVE
    assert activated.created_at.tzinfo is not None and activated.updated_at > activated.created_at
    assert [c.id for c in await store.list_connections(owner.id, status="active")] == [first.id]


async def test_revoked_connection_loses_its_credential_and_disappears(store: Store) -> None:
    owner = await store.create_owner("o")
    record = await store.create_connection(owner.id, connector_slug="slack", label="S", config={})
    await activate(store, owner.id, record.id, credentials="v1:k:abc")
    revoked = await revoke(store, owner.id, record.id)
    assert revoked is not None
    assert revoked.status == "revoked" and revoked.deleted_at is not None
    assert revoked.sealed_credentials is None
    assert await store.get_connection(owner.id, record.id) is None
    assert await store.list_connections(owner.id) == []
    assert await store.all_sealed_credentials() == []


async def test_a_status_move_from_a_status_it_does_not_allow_changes_nothing(store: Store) -> None:
    owner = await store.create_owner("o")
    record = await store.create_connection(owner.id, connector_slug="slack", label="S", config={})
    needs_reauth = await store.move_connection(
        record.id, owner_id=owner.id, to=ConnectionStatus.NEEDS_REAUTH, allowed_from=[ConnectionStatus.ACTIVE]
    )
    assert needs_reauth is None  # pending is not active: the compare-and-set refused
    assert (await store.get_connection(owner.id, record.id)) == record


async def test_api_keys_are_found_by_digest_until_revoked(store: Store) -> None:
    owner = await store.create_owner("o")
    key = await store.create_api_key(
        owner.id, name="k", key_hash="a" * 64, key_prefix="tdl_abcd", permissions=["read"]
    )
    found = await store.api_key_by_hash("a" * 64)
    assert found is not None and found.id == key.id and found.permissions == ("read",)
    other = await store.create_owner("other")
    assert await store.revoke_api_key(other.id, key.id) is False
    assert await store.revoke_api_key(owner.id, key.id) is True
    assert await store.api_key_by_hash("a" * 64) is None
    async with store.engine.connect() as conn:
        stored = (await conn.execute(sa.select(schema.api_keys.c.key_hash))).scalars().all()
    assert stored == ["a" * 64]


async def test_agent_names_are_unique_per_owner_and_deleted_agents_lose_their_key(store: Store) -> None:
    owner, other = await store.create_owner("o"), await store.create_owner("p")
    agent = await store.create_agent(
        owner.id, name="bot", allowed_connectors=["slack"], key_hash="b" * 64, key_prefix="p"
    )
    await store.create_agent(other.id, name="bot", allowed_connectors=[], key_hash="c" * 64, key_prefix="p")
    with pytest.raises(AlreadyExists):
        await store.create_agent(
            owner.id, name="bot", allowed_connectors=[], key_hash="d" * 64, key_prefix="p"
        )
    assert await store.get_agent(other.id, agent.id) is None
    assert await store.delete_agent(other.id, agent.id) is False
    assert await store.delete_agent(owner.id, agent.id) is True
    assert await store.agent_by_key_hash("b" * 64) is None
    assert await store.get_agent(owner.id, uuid.uuid4()) is None
