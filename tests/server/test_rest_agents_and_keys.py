"""REST: owner API keys (auth headers, permissions, revocation) and agents (CRUD, allowedConnectors)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import Owner, Tendril
from tests.support.rest import assert_error

pytestmark = pytest.mark.anyio

PERMISSIONS = ["read", "write", "execute", "admin"]
SOME_ID = "6f1c3c55-2f4e-4d8e-9a61-0c7cf0d7c1a1"

# (method, path, required permission) for every owner-authenticated REST route.
ROUTES: list[tuple[str, str, str]] = [
    ("GET", "/api/v1/connectors", "read"),
    ("GET", "/api/v1/connections", "read"),
    ("GET", f"/api/v1/connections/{SOME_ID}", "read"),
    ("GET", "/api/v1/agents", "read"),
    ("GET", f"/api/v1/agents/{SOME_ID}", "read"),
    ("POST", "/api/v1/connections", "write"),
    ("DELETE", f"/api/v1/connections/{SOME_ID}", "write"),
    ("POST", f"/api/v1/connections/{SOME_ID}/credentials", "write"),
    ("POST", "/api/v1/agents", "write"),
    ("PATCH", f"/api/v1/agents/{SOME_ID}", "write"),
    ("DELETE", f"/api/v1/agents/{SOME_ID}", "write"),
    ("POST", f"/api/v1/connections/{SOME_ID}/actions/post_message", "execute"),
    ("POST", "/api/v1/connect/slack", "execute"),
    ("POST", "/api/v1/keys", "admin"),
    ("GET", "/api/v1/keys", "admin"),
    ("DELETE", f"/api/v1/keys/{SOME_ID}", "admin"),
]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def call(http: httpx.AsyncClient, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
    if method in ("POST", "PATCH"):
        return await http.request(method, path, json={}, headers=headers)
    return await http.request(method, path, headers=headers)


# -- authentication ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(lambda key: {"Authorization": f"Bearer {key}"}, id="bearer"),
        pytest.param(lambda key: {"Authorization": f"bearer {key}"}, id="lowercase-bearer"),
        pytest.param(lambda key: {"X-Api-Key": key}, id="x-api-key"),
    ],
)
async def test_an_owner_key_is_accepted_as_bearer_or_x_api_key(tendril: Tendril, headers: Any) -> None:
    owner = await tendril.new_owner()
    assert owner.api_key.startswith("tdl_")
    async with tendril.raw() as http:
        response = await http.get("/api/v1/connections", headers=headers(owner.api_key))
    assert response.status_code == 200, response.text
    assert response.json() == []


@pytest.mark.parametrize(
    ("headers", "fragment"),
    [
        ({}, "missing API key"),
        ({"Authorization": "Bearer "}, "missing API key"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "missing API key"),
        ({"X-Api-Key": "   "}, "missing API key"),
        ({"Authorization": "Bearer tdl_not-a-real-key-at-all-000000"}, "invalid or revoked API key"),
        ({"X-Api-Key": "tdl_not-a-real-key-at-all-000000"}, "invalid or revoked API key"),
    ],
)
async def test_a_missing_or_unknown_key_is_unauthorized_on_every_route(
    tendril: Tendril, headers: dict[str, str], fragment: str
) -> None:
    async with tendril.raw() as http:
        for method, path, _ in ROUTES:
            response = await call(http, method, path, headers)
            assert_error(response, 401, "UNAUTHORIZED", fragment)


async def test_an_agent_key_cannot_use_the_owner_rest_api(tendril: Tendril) -> None:
    owner = await tendril.new_owner()
    created = await tendril.client(owner.api_key).create_agent("bot", ["slack"])
    assert created.api_key.startswith("tdl_agent_")
    async with tendril.raw() as http:
        for method, path, _ in ROUTES:
            assert_error(await call(http, method, path, bearer(created.api_key)), 401, "UNAUTHORIZED")
            assert_error(await call(http, method, path, {"X-Api-Key": created.api_key}), 401, "UNAUTHORIZED")


# -- permissions ---------------------------------------------------------------------------------
@pytest.mark.parametrize("permission", PERMISSIONS)
async def test_each_route_needs_its_permission_and_admin_grants_all(
    tendril: Tendril, permission: str
) -> None:
    owner = await tendril.new_owner(permissions=[permission])
    async with tendril.raw() as http:
        for method, path, required in ROUTES:
            response = await call(http, method, path, bearer(owner.api_key))
            if permission in (required, "admin"):
                assert response.status_code not in (401, 403), (method, path, response.text)
                assert response.status_code < 500, (method, path, response.text)
            else:
                assert_error(response, 403, "FORBIDDEN", f"lacks the '{required}' permission")


async def test_a_forbidden_write_has_no_effect(tendril: Tendril) -> None:
    owner = await tendril.new_owner(permissions=["read"])
    async with tendril.raw() as http:
        denied = await http.post(
            "/api/v1/connections", json={"connectorSlug": "slack"}, headers=bearer(owner.api_key)
        )
        agent = await http.post(
            "/api/v1/agents", json={"name": "x", "allowedConnectors": []}, headers=bearer(owner.api_key)
        )
        connections = await http.get("/api/v1/connections", headers=bearer(owner.api_key))
        agents = await http.get("/api/v1/agents", headers=bearer(owner.api_key))
    assert_error(denied, 403, "FORBIDDEN", "'write'")
    assert_error(agent, 403, "FORBIDDEN", "'write'")
    assert connections.json() == [] and agents.json() == []


async def test_a_key_with_several_permissions_gets_exactly_those(tendril: Tendril) -> None:
    owner = await tendril.new_owner(permissions=["read", "execute"])
    async with tendril.raw() as http:
        read = await http.get("/api/v1/agents", headers=bearer(owner.api_key))
        write = await http.post("/api/v1/agents", json={"name": "x"}, headers=bearer(owner.api_key))
        admin = await http.get("/api/v1/keys", headers=bearer(owner.api_key))
    assert read.status_code == 200
    assert_error(write, 403, "FORBIDDEN", "'write'")
    assert_error(admin, 403, "FORBIDDEN", "'admin'")


# -- API keys ------------------------------------------------------------------------------------
async def test_creating_a_key_returns_its_plaintext_once_with_default_permissions(tendril: Tendril) -> None:
    owner = await tendril.new_owner()
    async with tendril.raw() as http:
        response = await http.post("/api/v1/keys", json={"name": "ci"}, headers=bearer(owner.api_key))
        listed = await http.get("/api/v1/keys", headers=bearer(owner.api_key))
    assert response.status_code == 201, response.text
    body = response.json()
    plaintext = body["apiKey"]
    assert plaintext.startswith("tdl_") and len(plaintext) > 40
    key = body["key"]
    assert key["name"] == "ci"
    assert plaintext.startswith(key["prefix"])
    assert key["permissions"] == ["read", "write", "execute"]
    assert key["revokedAt"] is None
    # Listed newest first, and never with a plaintext key.
    assert [k["name"] for k in listed.json()] == ["ci", "test"]
    assert plaintext not in listed.text
    assert owner.api_key not in listed.text
    assert all("apiKey" not in k for k in listed.json())


async def test_a_created_key_works_with_exactly_its_permissions(tendril: Tendril) -> None:
    owner = await tendril.new_owner()
    created = await tendril.client(owner.api_key).create_key("reader", ["read"])
    assert created.key.permissions == ["read"]
    async with tendril.raw() as http:
        read = await http.get("/api/v1/connections", headers={"X-Api-Key": created.api_key})
        write = await http.post(
            "/api/v1/connections", json={"connectorSlug": "slack"}, headers={"X-Api-Key": created.api_key}
        )
    assert read.status_code == 200
    assert_error(write, 403, "FORBIDDEN", "'write'")


async def test_a_key_records_when_it_was_last_used(tendril: Tendril) -> None:
    owner = await tendril.new_owner()
    client = tendril.client(owner.api_key)
    created = await client.create_key("fresh")
    before = {k["id"]: k for k in await client.request("GET", "/api/v1/keys")}
    assert before[created.key.id]["lastUsedAt"] is None
    async with tendril.raw() as http:
        await http.get("/api/v1/connectors", headers=bearer(created.api_key))
    after = {k["id"]: k for k in await client.request("GET", "/api/v1/keys")}
    assert after[created.key.id]["lastUsedAt"] is not None


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ({"name": "x", "permissions": ["root"]}, "unknown permission(s) ['root']"),
        ({"name": "x", "permissions": "admin"}, "permissions must be a list of strings"),
        ({"name": "x", "permissions": [1]}, "permissions must be a list of strings"),
        ({"name": "x", "permissions": {"read": True}}, "permissions must be a list of strings"),
        ({"name": ""}, "key name must be"),
        ({"name": 5}, "key name must be"),
        ({"name": "bad/name"}, "key name must be"),
        ({"name": "trailing-newline\n"}, "key name must be"),
        ({"name": "x" * 101}, "key name must be"),
    ],
)
async def test_creating_a_key_with_bad_fields_is_a_bad_request(
    tendril: Tendril, payload: dict[str, Any], fragment: str
) -> None:
    owner = await tendril.new_owner()
    async with tendril.raw() as http:
        response = await http.post("/api/v1/keys", json=payload, headers=bearer(owner.api_key))
        listed = await http.get("/api/v1/keys", headers=bearer(owner.api_key))
    assert_error(response, 400, "BAD_REQUEST", fragment)
    assert len(listed.json()) == 1


async def test_a_revoked_key_is_unauthorized_and_listed_as_revoked(tendril: Tendril) -> None:
    owner = await tendril.new_owner()
    client = tendril.client(owner.api_key)
    created = await client.create_key("temp", ["admin"])
    async with tendril.raw() as http:
        works = await http.get("/api/v1/connections", headers=bearer(created.api_key))
        revoked = await http.delete(f"/api/v1/keys/{created.key.id}", headers=bearer(owner.api_key))
        refused = await http.get("/api/v1/connections", headers=bearer(created.api_key))
        refused_header = await http.get("/api/v1/connections", headers={"X-Api-Key": created.api_key})
        again = await http.delete(f"/api/v1/keys/{created.key.id}", headers=bearer(owner.api_key))
    assert works.status_code == 200
    assert revoked.status_code == 200
    assert revoked.json() == {"revoked": True}
    assert_error(refused, 401, "UNAUTHORIZED", "invalid or revoked API key")
    assert_error(refused_header, 401, "UNAUTHORIZED")
    assert_error(again, 404, "NOT_FOUND", "API key not found")
    listed = {k.id: k for k in await client.keys()}
    assert listed[created.key.id].revoked_at is not None


async def test_an_owner_can_revoke_the_very_key_they_are_using(tendril: Tendril) -> None:
    owner = await tendril.new_owner()
    async with tendril.raw() as http:
        keys = (await http.get("/api/v1/keys", headers=bearer(owner.api_key))).json()
        [own] = keys
        revoked = await http.delete(f"/api/v1/keys/{own['id']}", headers=bearer(owner.api_key))
        after = await http.get("/api/v1/keys", headers=bearer(owner.api_key))
    assert revoked.json() == {"revoked": True}
    assert_error(after, 401, "UNAUTHORIZED")


async def test_revoking_a_malformed_or_unknown_key_id_is_400_or_404(tendril: Tendril) -> None:
    owner = await tendril.new_owner()
    async with tendril.raw() as http:
        malformed = await http.delete("/api/v1/keys/tdl_abc", headers=bearer(owner.api_key))
        unknown = await http.delete(f"/api/v1/keys/{uuid.uuid4()}", headers=bearer(owner.api_key))
    assert_error(malformed, 400, "BAD_REQUEST", "malformed key id")
    assert_error(unknown, 404, "NOT_FOUND", "API key not found")


# -- agents --------------------------------------------------------------------------------------
async def test_creating_an_agent_returns_its_key_only_at_creation(tendril: Tendril) -> None:
    owner = await tendril.new_owner()
    async with tendril.raw() as http:
        response = await http.post(
            "/api/v1/agents",
            json={"name": "Poster bot", "allowedConnectors": ["slack", "telegram"]},
            headers=bearer(owner.api_key),
        )
        body = response.json()
        agent_id = body["agent"]["id"]
        fetched = await http.get(f"/api/v1/agents/{agent_id}", headers=bearer(owner.api_key))
        listed = await http.get("/api/v1/agents", headers=bearer(owner.api_key))
        patched = await http.patch(
            f"/api/v1/agents/{agent_id}", json={"name": "Renamed"}, headers=bearer(owner.api_key)
        )
    assert response.status_code == 201, response.text
    plaintext = body["apiKey"]
    assert plaintext.startswith("tdl_agent_")
    agent = body["agent"]
    assert agent["name"] == "Poster bot"
    assert agent["allowedConnectors"] == ["slack", "telegram"]
    assert plaintext.startswith(agent["keyPrefix"])
    uuid.UUID(agent_id)
    assert fetched.json() == agent
    assert listed.json() == [agent]
    for later in (fetched, listed, patched):
        assert plaintext not in later.text
        assert "apiKey" not in later.text


async def test_agents_are_listed_newest_first(tendril: Tendril) -> None:
    owner = await tendril.new_owner()
    client = tendril.client(owner.api_key)
    for name in ("first", "second", "third"):
        await client.create_agent(name, [])
    assert [a.name for a in await client.agents()] == ["third", "second", "first"]


async def test_allowed_connectors_default_to_none_and_duplicates_collapse(tendril: Tendril) -> None:
    owner = await tendril.new_owner()
    async with tendril.raw() as http:
        bare = await http.post("/api/v1/agents", json={"name": "bare"}, headers=bearer(owner.api_key))
        doubled = await http.post(
            "/api/v1/agents",
            json={"name": "doubled", "allowedConnectors": ["slack", "slack", "telegram"]},
            headers=bearer(owner.api_key),
        )
    assert bare.status_code == 201
    assert bare.json()["agent"]["allowedConnectors"] == []
    assert doubled.json()["agent"]["allowedConnectors"] == ["slack", "telegram"]


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ({"name": "a", "allowedConnectors": ["fax"]}, "unknown connector slug(s): fax"),
        (
            {"name": "a", "allowedConnectors": ["slack", "nope", "zilch"]},
            "unknown connector slug(s): nope, zilch",
        ),
        ({"name": "a", "allowedConnectors": "slack"}, "allowedConnectors must be a list of connector slugs"),
        ({"name": "a", "allowedConnectors": [1]}, "allowedConnectors must be a list of connector slugs"),
        ({"name": "a", "allowedConnectors": None}, "allowedConnectors must be a list of connector slugs"),
        ({"allowedConnectors": ["slack"]}, "agent name must be"),
        ({"name": "", "allowedConnectors": []}, "agent name must be"),
        ({"name": 12, "allowedConnectors": []}, "agent name must be"),
        ({"name": "line\nbreak", "allowedConnectors": []}, "agent name must be"),
        ({"name": "trailing\n", "allowedConnectors": []}, "agent name must be"),
        ({"name": "<script>", "allowedConnectors": []}, "agent name must be"),
        ({"name": "n" * 101, "allowedConnectors": []}, "agent name must be"),
    ],
)
async def test_creating_an_agent_with_bad_fields_is_a_bad_request(
    tendril: Tendril, payload: dict[str, Any], fragment: str
) -> None:
    owner = await tendril.new_owner()
    async with tendril.raw() as http:
        response = await http.post("/api/v1/agents", json=payload, headers=bearer(owner.api_key))
        listed = await http.get("/api/v1/agents", headers=bearer(owner.api_key))
    assert_error(response, 400, "BAD_REQUEST", fragment)
    assert listed.json() == []


async def test_an_agent_name_is_unique_per_owner_until_the_agent_is_deleted(tendril: Tendril) -> None:
    owner = await tendril.new_owner()
    other = await tendril.new_owner()
    async with tendril.raw() as http:
        first = await http.post("/api/v1/agents", json={"name": "twin"}, headers=bearer(owner.api_key))
        clash = await http.post("/api/v1/agents", json={"name": "twin"}, headers=bearer(owner.api_key))
        elsewhere = await http.post("/api/v1/agents", json={"name": "twin"}, headers=bearer(other.api_key))
        await http.delete(f"/api/v1/agents/{first.json()['agent']['id']}", headers=bearer(owner.api_key))
        reused = await http.post("/api/v1/agents", json={"name": "twin"}, headers=bearer(owner.api_key))
    assert first.status_code == 201
    assert_error(clash, 409, "CONFLICT", "twin")
    assert elsewhere.status_code == 201
    assert reused.status_code == 201


async def test_patching_an_agent_changes_only_the_given_fields(tendril: Tendril) -> None:
    owner = await tendril.new_owner()
    client = tendril.client(owner.api_key)
    created = await client.create_agent("helper", ["slack"])
    renamed = await client.update_agent(created.agent.id, name="helper two")
    assert renamed.name == "helper two"
    assert renamed.allowed_connectors == ["slack"]
    rescoped = await client.update_agent(created.agent.id, allowed_connectors=["telegram"])
    assert rescoped.name == "helper two"
    assert rescoped.allowed_connectors == ["telegram"]
    emptied = await client.update_agent(created.agent.id, allowed_connectors=[])
    assert emptied.allowed_connectors == []
    async with tendril.raw() as http:
        noop = await http.patch(f"/api/v1/agents/{created.agent.id}", json={}, headers=bearer(owner.api_key))
        nulls = await http.patch(
            f"/api/v1/agents/{created.agent.id}",
            json={"name": None, "allowedConnectors": None},
            headers=bearer(owner.api_key),
        )
    assert noop.status_code == 200
    assert noop.json()["name"] == "helper two"
    assert nulls.json()["name"] == "helper two"
    assert (await client.agent(created.agent.id)).allowed_connectors == []
    # The agent's key is unchanged by edits.
    assert (await tendril.core.identity.authenticate_agent(created.api_key)) is not None


@pytest.mark.parametrize(
    ("payload", "status", "code", "fragment"),
    [
        ({"allowedConnectors": ["fax"]}, 400, "BAD_REQUEST", "unknown connector slug(s): fax"),
        ({"allowedConnectors": "slack"}, 400, "BAD_REQUEST", "allowedConnectors must be a list"),
        ({"name": ""}, 400, "BAD_REQUEST", "agent name must be"),
        ({"name": ["x"]}, 400, "BAD_REQUEST", "agent name must be"),
        ({"apiKey": "tdl_agent_mine"}, 400, "BAD_REQUEST", "unknown field(s): apiKey"),
        ({"id": SOME_ID}, 400, "BAD_REQUEST", "unknown field(s): id"),
        ({"name": "taken"}, 409, "CONFLICT", "taken"),
    ],
)
async def test_patching_an_agent_with_bad_fields_is_refused_and_changes_nothing(
    tendril: Tendril, payload: dict[str, Any], status: int, code: str, fragment: str
) -> None:
    owner = await tendril.new_owner()
    client = tendril.client(owner.api_key)
    await client.create_agent("taken", [])
    created = await client.create_agent("mine", ["slack"])
    async with tendril.raw() as http:
        response = await http.patch(
            f"/api/v1/agents/{created.agent.id}", json=payload, headers=bearer(owner.api_key)
        )
    assert_error(response, status, code, fragment)
    unchanged = await client.agent(created.agent.id)
    assert (unchanged.name, unchanged.allowed_connectors) == ("mine", ["slack"])


async def test_deleting_an_agent_removes_it_and_disables_its_key(tendril: Tendril) -> None:
    owner = await tendril.new_owner()
    client = tendril.client(owner.api_key)
    created = await client.create_agent("short-lived", ["telegram"])
    async with tendril.raw() as http:
        deleted = await http.delete(f"/api/v1/agents/{created.agent.id}", headers=bearer(owner.api_key))
        fetched = await http.get(f"/api/v1/agents/{created.agent.id}", headers=bearer(owner.api_key))
        patched = await http.patch(
            f"/api/v1/agents/{created.agent.id}", json={"name": "zombie"}, headers=bearer(owner.api_key)
        )
        again = await http.delete(f"/api/v1/agents/{created.agent.id}", headers=bearer(owner.api_key))
    assert deleted.status_code == 200
    assert deleted.json() == {"deleted": True}
    assert_error(fetched, 404, "NOT_FOUND", "agent not found")
    assert_error(patched, 404, "NOT_FOUND", "agent not found")
    assert_error(again, 404, "NOT_FOUND", "agent not found")
    assert await client.agents() == []
    assert await tendril.core.identity.authenticate_agent(created.api_key) is None


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
async def test_a_malformed_or_unknown_agent_id_is_400_or_404(tendril: Tendril, method: str) -> None:
    owner = await tendril.new_owner()
    async with tendril.raw() as http:
        malformed = await call(http, method, "/api/v1/agents/agent-1", bearer(owner.api_key))
        unknown = await call(http, method, f"/api/v1/agents/{uuid.uuid4()}", bearer(owner.api_key))
    assert_error(malformed, 400, "BAD_REQUEST", "malformed agent id")
    assert_error(unknown, 404, "NOT_FOUND", "agent not found")


async def test_the_typed_client_round_trips_agents_and_keys(tendril: Tendril) -> None:
    owner: Owner = await tendril.new_owner()
    client = tendril.client(owner.api_key)
    agent = await client.create_agent("typed", ["slack"])
    key = await client.create_key("typed-key", ["read", "execute"])
    assert [a.id for a in await client.agents()] == [agent.agent.id]
    assert (await client.agent(agent.agent.id)).allowed_connectors == ["slack"]
    assert key.key.id in {k.id for k in await client.keys()}
    await client.revoke_key(key.key.id)
    await client.delete_agent(agent.agent.id)
    assert await client.agents() == []


async def test_rotating_an_agent_key_keeps_the_agent_and_retires_the_old_key(tendril: Tendril) -> None:
    owner = await tendril.new_owner()
    client = tendril.client(owner.api_key)
    created = await client.create_agent("rotating", ["telegram", "slack"])
    rotated = await client.rotate_agent_key(created.agent.id)
    assert rotated.api_key != created.api_key and rotated.api_key.startswith("tdl_agent_")
    assert rotated.agent.id == created.agent.id
    assert rotated.agent.allowed_connectors == ["telegram", "slack"]
    assert rotated.agent.key_prefix != created.agent.key_prefix
    assert rotated.api_key.startswith(rotated.agent.key_prefix)
    assert await tendril.core.identity.authenticate_agent(created.api_key) is None
    now = await tendril.core.identity.authenticate_agent(rotated.api_key)
    assert now is not None and str(now.id) == created.agent.id
    assert [a.id for a in await client.agents()] == [created.agent.id]
    async with tendril.raw() as http:
        unknown = await http.post(f"/api/v1/agents/{uuid.uuid4()}/key", headers=bearer(owner.api_key))
        reader = await tendril.core.identity.create_api_key(
            uuid.UUID(owner.id), name="reader", permissions=["read"]
        )
        refused = await http.post(f"/api/v1/agents/{created.agent.id}/key", headers=bearer(reader.plaintext))
    assert_error(unknown, 404, "NOT_FOUND", "agent not found")
    assert_error(refused, 403, "FORBIDDEN", "write")
    assert await tendril.core.identity.authenticate_agent(rotated.api_key) is not None


async def test_rotating_an_api_key_keeps_it_and_ends_what_the_old_secret_opened(tendril: Tendril) -> None:
    owner = await tendril.new_owner()
    identity = tendril.core.identity
    made = await identity.create_api_key(uuid.UUID(owner.id), name="laptop", permissions=["read", "write"])
    session = await identity.open_session(await identity.authenticate_owner(made.plaintext))
    assert await identity.session(session.token) is not None
    rotated = await identity.rotate_api_key(uuid.UUID(owner.id), made.record.id)
    assert rotated.record.id == made.record.id and rotated.record.permissions == ("read", "write")
    assert rotated.plaintext != made.plaintext and rotated.plaintext.startswith(rotated.record.key_prefix)
    assert await identity.session(session.token) is None  # signed in with the old secret
    async with tendril.raw() as http:
        old = await http.get("/api/v1/agents", headers=bearer(made.plaintext))
        new = await http.get("/api/v1/agents", headers=bearer(rotated.plaintext))
    assert_error(old, 401, "UNAUTHORIZED", "invalid or revoked API key")
    assert new.status_code == 200
