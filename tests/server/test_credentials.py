"""Credentials as objects and connector instances made from them, as integration-layer APIs
document them.

The seed's requests are sent as written, with only the host, the key and the credential id changed:
a credential is checked against the provider's fields, verified with the (fake) provider, sealed, and
never shown back; a connector instance is a connection on it, active at once, with the seed's config as
its defaults; rotating the credential updates every connection it backs. Both engines.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from storage import schema
from tests.conftest import SLACK_TOKEN, TELEGRAM_TOKEN, Fakes, LiveTendril, Owner, Tendril
from tests.support.core import stored_rows
from tests.support.mcp import mcp_client
from tests.support.rest import assert_error

pytestmark = pytest.mark.anyio

SEED_TOKEN = "xoxb-xxxxxxxxxxxxx"
SEED_CREDENTIAL = {
    "name": "Slack Bot Token",
    "description": "Production Slack bot",
    "type": "oauth",
    "provider": "slack",
    "data": {"bot_token": SEED_TOKEN, "app_id": "A01234567"},
    "metadata": {"scopes": ["chat:write", "channels:read"]},
}
ROTATED_TOKEN = "xoxb-2222-3333-RotatedCanarySecret7q"


def seed_instance(credential_id: str) -> dict[str, Any]:
    return {
        "name": "Production Slack",
        "type": "slack",
        "credentialId": credential_id,
        "config": {"defaultChannel": "#general"},
    }


def auth(owner: Owner) -> dict[str, str]:
    return {"Authorization": f"Bearer {owner.api_key}"}


@pytest.fixture
def seed_token(fakes: Fakes) -> str:
    fakes.slack.add_token(SEED_TOKEN, team_name="Seed Workspace")
    return SEED_TOKEN


async def make_credential(http: httpx.AsyncClient, owner: Owner, body: dict[str, Any]) -> dict[str, Any]:
    answer = await http.post("/api/v1/credentials", json=body, headers=auth(owner))
    assert answer.status_code == 201, answer.text
    return answer.json()


async def test_the_seed_s_credential_is_stored_verified_and_never_shown(
    tendril: Tendril, fakes: Fakes, seed_token: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    owner = await tendril.new_owner()
    async with tendril.raw() as http:
        created = await make_credential(http, owner, SEED_CREDENTIAL)
        listed = await http.get("/api/v1/credentials", headers=auth(owner))
        fetched = await http.get(f"/api/v1/credentials/{created['id']}", headers=auth(owner))
    assert created["id"].startswith("cred_") and len(created["id"]) == 37
    assert {k: created[k] for k in ("name", "description", "type", "provider", "metadata")} == {
        k: SEED_CREDENTIAL[k] for k in ("name", "description", "type", "provider", "metadata")
    }
    assert created["fields"] == ["bot_token", "app_id"]
    assert created["account"]["team"] == "Seed Workspace"  # what the provider said when verifying
    assert created["connectionIds"] == []
    assert ("auth.test", seed_token) in fakes.slack.calls
    assert listed.status_code == 200 and listed.json() == [created]
    assert fetched.status_code == 200 and fetched.json() == created
    for text in (listed.text, fetched.text, caplog.text):
        assert seed_token not in text
    async with stored_rows(tendril.core.settings) as store, store.engine.connect() as db:
        [row] = (await db.execute(sa.select(schema.credentials))).mappings().all()
    assert seed_token not in str(dict(row)) and "A01234567" not in str(dict(row))


async def test_bad_credentials_are_refused_before_anything_is_stored(tendril: Tendril, fakes: Fakes) -> None:
    owner = await tendril.new_owner()
    cases = [
        ({**SEED_CREDENTIAL, "provider": "nope"}, "provider", "unknown provider"),
        ({**SEED_CREDENTIAL, "data": {"bot_token": "not-a-slack-token"}}, "bot_token", "does not look like"),
        ({**SEED_CREDENTIAL, "data": {"bot_token": SLACK_TOKEN, "extra": "x"}}, None, "unknown credential"),
        ({**SEED_CREDENTIAL, "data": {}}, "bot_token", "required"),
        ({**SEED_CREDENTIAL, "type": "password"}, "type", "type must be one of"),
        ({**SEED_CREDENTIAL, "name": " "}, "name", "name must be"),
        ({**SEED_CREDENTIAL, "data": "xoxb-1"}, "data", "data must be a JSON object"),
        ({**SEED_CREDENTIAL, "data": {"bot_token": "xoxb-9-NobodyIssuedThis"}}, None, "Slack rejected"),
        ({"provider": "local_file", "name": "f", "data": {}}, "provider", "takes no credential"),
        ({"provider": "gmail", "name": "g", "data": {"token": "x"}}, "data", "access_token"),
    ]
    async with tendril.raw() as http:
        for body, field, words in cases:
            answer = await http.post("/api/v1/credentials", json=body, headers=auth(owner))
            error = assert_error(answer, 400, "BAD_REQUEST", words)
            assert error.get("field") == field, (body, error)
            assert "xoxb-9-NobodyIssuedThis" not in answer.text
        assert (await http.get("/api/v1/credentials", headers=auth(owner))).json() == []


async def test_the_seed_s_connector_instance_is_an_active_connection_with_its_defaults(
    live_tendril: LiveTendril, fakes: Fakes, seed_token: str
) -> None:
    owner = live_tendril.admin
    async with httpx.AsyncClient(base_url=live_tendril.url) as http:
        credential = await make_credential(http, owner, SEED_CREDENTIAL)
        made = await http.post(
            "/api/v1/connectors", json=seed_instance(credential["id"]), headers=auth(owner)
        )
        assert made.status_code == 201, made.text
        instance = made.json()
        assert {k: instance[k] for k in ("name", "type", "credentialId", "config", "status")} == {
            "name": "Production Slack",
            "type": "slack",
            "credentialId": credential["id"],
            "config": {"defaultChannel": "#general"},
            "status": "active",
        }
        [connection] = (await http.get("/api/v1/connections", headers=auth(owner))).json()
        assert connection["id"] == instance["id"] and connection["credentialId"] == credential["id"]
        assert connection["status"] == "active" and connection["label"] == "Production Slack"
        assert seed_token not in made.text
        backing = (await http.get(f"/api/v1/credentials/{credential['id']}", headers=auth(owner))).json()
        assert backing["connectionIds"] == [instance["id"]]
        agent = await http.post(
            "/api/v1/agents", json={"name": "seed-agent", "allowedConnectors": ["slack"]}, headers=auth(owner)
        )
        agent_key = agent.json()["apiKey"]

    async with mcp_client(live_tendril.url, agent_key) as mcp:
        tools = {tool.name for tool in (await mcp.list_tools()).tools}
        assert "slack_post_message" in tools
        result = await mcp.call_tool("slack_post_message", {"text": "from a connector instance"})
    assert result.is_error is False, result
    message = fakes.slack.messages[-1]
    assert message["channel"] in ("#general", "C01234567") and message["token"] == seed_token


async def test_rotating_a_credential_updates_every_connection_it_backs(
    tendril: Tendril, fakes: Fakes
) -> None:
    fakes.slack.add_token(ROTATED_TOKEN)
    owner = await tendril.new_owner()
    body = {"name": "Slack", "provider": "slack", "data": {"bot_token": SLACK_TOKEN}}
    async with tendril.raw() as http:
        credential = await make_credential(http, owner, body)
        ids = []
        for name in ("First", "Second"):
            made = await http.post(
                "/api/v1/connectors",
                json={"name": name, "type": "slack", "credentialId": credential["id"]},
                headers=auth(owner),
            )
            assert made.status_code == 201, made.text
            ids.append(made.json()["id"])

        refused = await http.patch(
            f"/api/v1/credentials/{credential['id']}",
            json={"data": {"bot_token": "xoxb-9-NobodyIssuedThis"}},
            headers=auth(owner),
        )
        assert_error(refused, 400, "BAD_REQUEST", "Slack rejected")

        rotated = await http.patch(
            f"/api/v1/credentials/{credential['id']}",
            json={"data": {"bot_token": ROTATED_TOKEN}, "name": "Slack (rotated)"},
            headers=auth(owner),
        )
        assert rotated.status_code == 200, rotated.text
        assert rotated.json()["name"] == "Slack (rotated)"
        assert sorted(rotated.json()["connectionIds"]) == sorted(ids)
        assert ROTATED_TOKEN not in rotated.text
        for connection_id in ids:
            ran = await http.post(
                f"/api/v1/connections/{connection_id}/actions/post_message",
                json={"parameters": {"channel": "#general", "text": "after rotation"}},
                headers=auth(owner),
            )
            assert ran.status_code == 200, ran.text
            assert fakes.slack.messages[-1]["token"] == ROTATED_TOKEN

        unknown = await http.patch(
            f"/api/v1/credentials/{credential['id']}", json={"secret": "x"}, headers=auth(owner)
        )
        assert_error(unknown, 400, "BAD_REQUEST", "unknown field(s): secret")

        # Revoking one connection leaves the shared token alone: the other still works.
        assert (await http.delete(f"/api/v1/connections/{ids[0]}", headers=auth(owner))).is_success
        assert ROTATED_TOKEN not in fakes.slack.revoked
        ran = await http.post(
            f"/api/v1/connections/{ids[1]}/actions/post_message",
            json={"parameters": {"channel": "#general", "text": "still here"}},
            headers=auth(owner),
        )
        assert ran.status_code == 200, ran.text


async def test_a_credential_backing_connections_cannot_be_deleted_until_they_are_revoked(
    tendril: Tendril,
) -> None:
    owner = await tendril.new_owner()
    body = {"name": "Telegram", "provider": "telegram", "data": {"bot_token": TELEGRAM_TOKEN}}
    async with tendril.raw() as http:
        credential = await make_credential(http, owner, body)
        path = f"/api/v1/credentials/{credential['id']}"
        made = await http.post(
            "/api/v1/connectors",
            json={"name": "Bot", "type": "telegram", "credentialId": credential["id"]},
            headers=auth(owner),
        )
        connection_id = made.json()["id"]
        assert_error(await http.delete(path, headers=auth(owner)), 409, "CONFLICT", "revoke them first")

        assert (await http.delete(f"/api/v1/connections/{connection_id}", headers=auth(owner))).is_success
        assert (await http.get(path, headers=auth(owner))).json()["connectionIds"] == []
        deleted = await http.delete(path, headers=auth(owner))
        assert deleted.status_code == 200 and deleted.json() == {"deleted": True}
        assert_error(await http.get(path, headers=auth(owner)), 404, "NOT_FOUND")
        assert_error(await http.delete(path, headers=auth(owner)), 404, "NOT_FOUND")
        malformed = await http.get("/api/v1/credentials/cred_123", headers=auth(owner))
        assert_error(malformed, 400, "BAD_REQUEST", "malformed credential id")


async def test_connector_instances_refuse_what_does_not_fit(tendril: Tendril) -> None:
    owner = await tendril.new_owner()
    stranger = await tendril.new_owner()
    body = {"name": "Telegram", "provider": "telegram", "data": {"bot_token": TELEGRAM_TOKEN}}
    async with tendril.raw() as http:
        credential = await make_credential(http, owner, body)
        ref = credential["id"]

        async def make(payload: dict[str, Any], who: Owner = owner) -> httpx.Response:
            return await http.post("/api/v1/connectors", json=payload, headers=auth(who))

        first = await make({"name": "Bot", "type": "telegram", "credentialId": ref})
        assert first.status_code == 201, first.text
        assert_error(await make({"name": "Bot", "type": "telegram", "credentialId": ref}), 409, "CONFLICT")
        assert_error(
            await make({"name": "Other", "type": "slack", "credentialId": ref}),
            400,
            "BAD_REQUEST",
            "is for telegram",
        )
        assert_error(
            await make({"name": "X", "type": "nope", "credentialId": ref}),
            400,
            "BAD_REQUEST",
            "unknown connector type",
        )
        assert_error(
            await make({"name": "X", "type": "telegram", "credentialId": "cred_1"}), 400, "BAD_REQUEST"
        )
        assert_error(await make({"name": "X", "type": "telegram"}), 400, "BAD_REQUEST", "credentialId")
        # Another owner cannot build on this credential, nor learn it exists.
        assert_error(
            await make({"name": "X", "type": "telegram", "credentialId": ref}, stranger), 404, "NOT_FOUND"
        )
        assert (await http.get("/api/v1/credentials", headers=auth(stranger))).json() == []
