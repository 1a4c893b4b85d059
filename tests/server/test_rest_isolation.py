"""REST: nothing crosses owners. Alice and Bob each have connections, an agent and keys; every
endpoint that takes an id refuses the other owner's id exactly as it refuses an id that does not exist.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.conftest import SLACK_TOKEN, TELEGRAM_TOKEN, Fakes, Owner, Tendril

pytestmark = pytest.mark.anyio

BOB_SLACK_TOKEN = "xoxb-7777-8888-BobsOwnWorkspaceToken"


@dataclass
class Side:
    owner: Owner
    slack_id: str  # active
    telegram_id: str  # Alice: pending, Bob: active
    agent_id: str
    agent_key: str
    extra_key_id: str
    extra_key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.owner.api_key}"}


@dataclass
class World:
    alice: Side
    bob: Side


async def _side(
    http: httpx.AsyncClient, owner: Owner, slack_token: str, *, telegram_active: bool, allowed: list[str]
) -> Side:
    headers = {"Authorization": f"Bearer {owner.api_key}"}

    async def start(slug: str) -> str:
        response = await http.post("/api/v1/connections", json={"connectorSlug": slug}, headers=headers)
        assert response.status_code == 201, response.text
        return response.json()["connection"]["id"]

    async def activate(connection_id: str, token: str) -> None:
        response = await http.post(
            f"/api/v1/connections/{connection_id}/credentials", json={"bot_token": token}, headers=headers
        )
        assert response.status_code == 200, response.text

    slack_id = await start("slack")
    await activate(slack_id, slack_token)
    telegram_id = await start("telegram")
    if telegram_active:
        await activate(telegram_id, TELEGRAM_TOKEN)
    agent = (
        await http.post(
            "/api/v1/agents", json={"name": "assistant", "allowedConnectors": allowed}, headers=headers
        )
    ).json()
    key = (await http.post("/api/v1/keys", json={"name": "extra"}, headers=headers)).json()
    return Side(
        owner, slack_id, telegram_id, agent["agent"]["id"], agent["apiKey"], key["key"]["id"], key["apiKey"]
    )


@pytest.fixture
async def world(tendril: Tendril, fakes: Fakes) -> World:
    fakes.slack.add_token(BOB_SLACK_TOKEN, team="T999", team_name="Bobco")
    alice = await tendril.new_owner("alice")
    bob = await tendril.new_owner("bob")
    async with tendril.raw() as http:
        a = await _side(http, alice, SLACK_TOKEN, telegram_active=False, allowed=["slack"])
        b = await _side(http, bob, BOB_SLACK_TOKEN, telegram_active=True, allowed=["telegram"])
    fakes.slack.calls.clear()
    fakes.telegram.calls.clear()
    return World(a, b)


def assert_not_found(response: httpx.Response, what: str) -> None:
    assert response.status_code == 404, response.text
    assert response.json() == {"error": f"{what} not found", "code": "NOT_FOUND"}


# -- listings ------------------------------------------------------------------------------------
async def test_each_owner_lists_only_their_own_connections(tendril: Tendril, world: World) -> None:
    async with tendril.raw() as http:
        for me, other in ((world.alice, world.bob), (world.bob, world.alice)):
            response = await http.get("/api/v1/connections", headers=me.headers)
            ids = {c["id"] for c in response.json()}
            assert ids == {me.slack_id, me.telegram_id}
            assert not ids & {other.slack_id, other.telegram_id}
    alice_view = await tendril.client(world.alice.owner.api_key).connections()
    assert {c.account.get("team") for c in alice_view if c.connector_slug == "slack"} == {"Acme"}


async def test_each_owner_lists_only_their_own_agents_with_their_own_allowed_connectors(
    tendril: Tendril, world: World
) -> None:
    async with tendril.raw() as http:
        alice = (await http.get("/api/v1/agents", headers=world.alice.headers)).json()
        bob = (await http.get("/api/v1/agents", headers=world.bob.headers)).json()
    # Same name on both sides: names are per owner.
    assert [(a["id"], a["name"], a["allowedConnectors"]) for a in alice] == [
        (world.alice.agent_id, "assistant", ["slack"])
    ]
    assert [(a["id"], a["name"], a["allowedConnectors"]) for a in bob] == [
        (world.bob.agent_id, "assistant", ["telegram"])
    ]


async def test_each_owner_lists_only_their_own_keys(tendril: Tendril, world: World) -> None:
    async with tendril.raw() as http:
        alice = await http.get("/api/v1/keys", headers=world.alice.headers)
        bob = await http.get("/api/v1/keys", headers=world.bob.headers)
    assert world.alice.extra_key_id in {k["id"] for k in alice.json()}
    assert world.bob.extra_key_id not in {k["id"] for k in alice.json()}
    assert world.alice.extra_key_id not in {k["id"] for k in bob.json()}
    assert len(alice.json()) == len(bob.json()) == 2


# -- connections by id ---------------------------------------------------------------------------
async def test_another_owners_connection_cannot_be_fetched(tendril: Tendril, world: World) -> None:
    async with tendril.raw() as http:
        for connection_id in (world.bob.slack_id, world.bob.telegram_id):
            response = await http.get(f"/api/v1/connections/{connection_id}", headers=world.alice.headers)
            assert_not_found(response, "connection")
            assert "Bobco" not in response.text


async def test_another_owners_connection_cannot_be_deleted(tendril: Tendril, world: World) -> None:
    async with tendril.raw() as http:
        response = await http.delete(f"/api/v1/connections/{world.bob.slack_id}", headers=world.alice.headers)
        bobs = await http.get(f"/api/v1/connections/{world.bob.slack_id}", headers=world.bob.headers)
    assert_not_found(response, "connection")
    assert bobs.json()["status"] == "active"
    assert bobs.json()["deletedAt"] is None


async def test_credentials_cannot_be_submitted_to_another_owners_connection(
    tendril: Tendril, world: World, fakes: Fakes
) -> None:
    async with tendril.raw() as http:
        # Bob tries to take over Alice's pending Telegram connection with his own bot token.
        pending = await http.post(
            f"/api/v1/connections/{world.alice.telegram_id}/credentials",
            json={"bot_token": TELEGRAM_TOKEN},
            headers=world.bob.headers,
        )
        # ...and to swap his token into Alice's active Slack connection.
        active = await http.post(
            f"/api/v1/connections/{world.alice.slack_id}/credentials",
            json={"bot_token": BOB_SLACK_TOKEN},
            headers=world.bob.headers,
        )
        alices = {
            c["id"]: c for c in (await http.get("/api/v1/connections", headers=world.alice.headers)).json()
        }
    assert_not_found(pending, "connection")
    assert_not_found(active, "connection")
    assert alices[world.alice.telegram_id]["status"] == "pending"
    assert alices[world.alice.slack_id]["account"]["team"] == "Acme"
    assert fakes.slack.calls == [] and fakes.telegram.calls == []


async def test_actions_cannot_run_on_another_owners_connection(
    tendril: Tendril, world: World, fakes: Fakes
) -> None:
    async with tendril.raw() as http:
        slack = await http.post(
            f"/api/v1/connections/{world.bob.slack_id}/actions/post_message",
            json={"parameters": {"channel": "#general", "text": "as Bob's bot"}},
            headers=world.alice.headers,
        )
        telegram = await http.post(
            f"/api/v1/connections/{world.bob.telegram_id}/actions/telegram_get_me",
            json={},
            headers=world.alice.headers,
        )
        own = await http.post(
            f"/api/v1/connections/{world.alice.slack_id}/actions/post_message",
            json={"parameters": {"channel": "#general", "text": "as Alice's bot"}},
            headers=world.alice.headers,
        )
    assert_not_found(slack, "connection")
    assert_not_found(telegram, "connection")
    assert own.status_code == 200
    # Only Alice's own call reached a provider, with Alice's own token.
    assert [(m["token"], m["text"]) for m in fakes.slack.messages] == [(SLACK_TOKEN, "as Alice's bot")]
    assert fakes.telegram.calls == []


async def test_another_owners_ids_look_exactly_like_ids_that_do_not_exist(
    tendril: Tendril, world: World
) -> None:
    nowhere = str(uuid.uuid4())
    async with tendril.raw() as http:
        for template in (
            "GET /api/v1/connections/{}",
            "DELETE /api/v1/connections/{}",
            "POST /api/v1/connections/{}/credentials",
            "POST /api/v1/connections/{}/actions/post_message",
        ):
            method, path = template.split(" ")
            body: dict[str, Any] | None = {"bot_token": BOB_SLACK_TOKEN} if method == "POST" else None
            theirs = await http.request(
                method, path.format(world.bob.slack_id), json=body, headers=world.alice.headers
            )
            unknown = await http.request(method, path.format(nowhere), json=body, headers=world.alice.headers)
            assert (theirs.status_code, theirs.json()) == (unknown.status_code, unknown.json()), template
        for method in ("GET", "PATCH", "DELETE"):
            body = {"name": "x"} if method == "PATCH" else None
            theirs = await http.request(
                method, f"/api/v1/agents/{world.bob.agent_id}", json=body, headers=world.alice.headers
            )
            unknown = await http.request(
                method, f"/api/v1/agents/{nowhere}", json=body, headers=world.alice.headers
            )
            assert (theirs.status_code, theirs.json()) == (unknown.status_code, unknown.json()), method
        theirs = await http.delete(f"/api/v1/keys/{world.bob.extra_key_id}", headers=world.alice.headers)
        unknown = await http.delete(f"/api/v1/keys/{nowhere}", headers=world.alice.headers)
        assert (theirs.status_code, theirs.json()) == (unknown.status_code, unknown.json())


async def test_starting_a_connection_never_hands_back_another_owners(tendril: Tendril, world: World) -> None:
    async with tendril.raw() as http:
        # Bob has an active Slack connection labelled "Slack"; Alice's own is returned, not his.
        again = await http.post(
            "/api/v1/connections", json={"connectorSlug": "slack"}, headers=world.alice.headers
        )
        carol = await tendril.new_owner("carol")
        fresh = await http.post(
            "/api/v1/connections",
            json={"connectorSlug": "telegram"},
            headers={"Authorization": f"Bearer {carol.api_key}"},
        )
    assert again.status_code == 200
    assert again.json()["connection"]["id"] == world.alice.slack_id
    assert fresh.status_code == 201
    assert fresh.json()["connection"]["id"] not in (world.alice.telegram_id, world.bob.telegram_id)
    assert fresh.json()["connection"]["status"] == "pending"


async def test_a_one_shot_call_by_one_owner_leaves_nothing_for_another(
    tendril: Tendril, world: World, fakes: Fakes
) -> None:
    async with tendril.raw() as http:
        before = (await http.get("/api/v1/connections", headers=world.bob.headers)).json()
        once = await http.post(
            "/api/v1/connect/slack",
            json={
                "action": "post_message",
                "token": SLACK_TOKEN,
                "params": {"channel": "#general", "text": "x"},
            },
            headers={"X-Api-Key": world.alice.owner.api_key},
        )
        after = (await http.get("/api/v1/connections", headers=world.bob.headers)).json()
    assert once.status_code == 200
    assert before == after


# -- agents by id --------------------------------------------------------------------------------
async def test_another_owners_agent_cannot_be_fetched_patched_or_deleted(
    tendril: Tendril, world: World
) -> None:
    path = f"/api/v1/agents/{world.bob.agent_id}"
    async with tendril.raw() as http:
        fetched = await http.get(path, headers=world.alice.headers)
        # Alice tries to widen Bob's agent to her Slack, then to remove it.
        patched = await http.patch(
            path,
            json={"allowedConnectors": ["slack", "telegram"], "name": "hijacked"},
            headers=world.alice.headers,
        )
        deleted = await http.delete(path, headers=world.alice.headers)
        bobs = await http.get(path, headers=world.bob.headers)
    assert_not_found(fetched, "agent")
    assert_not_found(patched, "agent")
    assert_not_found(deleted, "agent")
    assert bobs.status_code == 200
    assert (bobs.json()["name"], bobs.json()["allowedConnectors"]) == ("assistant", ["telegram"])
    assert await tendril.core.identity.authenticate_agent(world.bob.agent_key) is not None


async def test_an_agent_key_belongs_to_its_owner_and_is_no_rest_key(tendril: Tendril, world: World) -> None:
    alices_agent = await tendril.core.identity.authenticate_agent(world.alice.agent_key)
    bobs_agent = await tendril.core.identity.authenticate_agent(world.bob.agent_key)
    assert alices_agent is not None and bobs_agent is not None
    assert str(alices_agent.owner_id) == world.alice.owner.id
    assert str(bobs_agent.owner_id) == world.bob.owner.id
    assert list(alices_agent.allowed_connectors) == ["slack"]
    assert list(bobs_agent.allowed_connectors) == ["telegram"]
    async with tendril.raw() as http:
        response = await http.get(
            f"/api/v1/agents/{world.alice.agent_id}",
            headers={"Authorization": f"Bearer {world.alice.agent_key}"},
        )
    assert response.status_code == 401


# -- keys by id ----------------------------------------------------------------------------------
async def test_another_owners_key_cannot_be_revoked(tendril: Tendril, world: World) -> None:
    async with tendril.raw() as http:
        revoked = await http.delete(f"/api/v1/keys/{world.bob.extra_key_id}", headers=world.alice.headers)
        still_works = await http.get("/api/v1/connections", headers={"X-Api-Key": world.bob.extra_key})
        bobs_keys = await http.get("/api/v1/keys", headers=world.bob.headers)
        own = await http.delete(f"/api/v1/keys/{world.alice.extra_key_id}", headers=world.alice.headers)
        own_gone = await http.get("/api/v1/connections", headers={"X-Api-Key": world.alice.extra_key})
    assert revoked.status_code == 404
    assert revoked.json() == {"error": "API key not found", "code": "NOT_FOUND"}
    assert still_works.status_code == 200
    assert all(k["revokedAt"] is None for k in bobs_keys.json())
    assert own.status_code == 200
    assert own_gone.status_code == 401


async def test_an_owners_keys_only_ever_reach_their_own_data(tendril: Tendril, world: World) -> None:
    # The extra (non-admin) key sees the same owner's data, never the other's.
    async with tendril.raw() as http:
        via_extra = await http.get("/api/v1/connections", headers={"X-Api-Key": world.bob.extra_key})
        agents = await http.get("/api/v1/agents", headers={"X-Api-Key": world.bob.extra_key})
    assert {c["id"] for c in via_extra.json()} == {world.bob.slack_id, world.bob.telegram_id}
    assert [a["id"] for a in agents.json()] == [world.bob.agent_id]
