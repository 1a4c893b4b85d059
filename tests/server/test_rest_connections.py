"""REST: the connector catalog and the connection lifecycle.

Create -> submit credentials (verified against the fake Slack/Telegram) -> run actions -> delete,
plus the errors each step can answer with. Every test runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from storage import schema
from tests.conftest import SLACK_TOKEN, TELEGRAM_TOKEN, Fakes, Owner, Tendril
from tests.support.catalog import SLACK_TOOLS
from tests.support.core import stored_rows
from tests.support.rest import assert_error

pytestmark = pytest.mark.anyio

PUBLIC_URL = "http://127.0.0.1:8080"
UNKNOWN_SLACK_TOKEN = "xoxb-9999-8888-NobodyIssuedThisToken"
UNKNOWN_TELEGRAM_TOKEN = "111111111:UnknownTelegramBotTokenAbCdEfGhIjKl"


def auth(owner: Owner) -> dict[str, str]:
    return {"Authorization": f"Bearer {owner.api_key}"}


async def start(http: httpx.AsyncClient, owner: Owner, slug: str, label: str | None = None) -> dict[str, Any]:
    payload: dict[str, Any] = {"connectorSlug": slug}
    if label is not None:
        payload["label"] = label
    response = await http.post("/api/v1/connections", json=payload, headers=auth(owner))
    assert response.status_code in (200, 201), response.text
    return response.json()


async def connect(
    http: httpx.AsyncClient, owner: Owner, slug: str, token: str, label: str | None = None
) -> str:
    started = await start(http, owner, slug, label)
    connection_id = started["connection"]["id"]
    response = await submit(http, owner, connection_id, {"bot_token": token})
    assert response.status_code == 200, response.text
    assert response.json()["connection"]["status"] == "active"
    return connection_id


async def submit(
    http: httpx.AsyncClient, owner: Owner, connection_id: str, credentials: dict[str, Any]
) -> httpx.Response:
    return await http.post(
        f"/api/v1/connections/{connection_id}/credentials", json=credentials, headers=auth(owner)
    )


async def stored_row(tendril: Tendril, connection_id: str) -> Any:
    """The raw database row, deleted or not (the API hides deleted connections)."""
    table = schema.connections
    async with stored_rows(tendril.core.settings) as store, store.engine.connect() as conn:
        query = sa.select(table).where(table.c.id == uuid.UUID(connection_id))
        return (await conn.execute(query)).one()


# -- catalog ---------------------------------------------------------------------------------
async def test_catalog_lists_slack_and_telegram_with_tools_schemas_and_credential_fields(
    tendril: Tendril,
) -> None:
    owner = await tendril.new_owner()
    async with tendril.raw() as http:
        response = await http.get("/api/v1/connectors", headers=auth(owner))
    assert response.status_code == 200
    catalog = {item["slug"]: item for item in response.json()}
    assert {"slack", "telegram"} <= set(catalog)

    slack = catalog["slack"]
    assert slack["name"] == "Slack"
    assert slack["description"]
    assert slack["authType"] == "api_key"
    assert slack["configured"] is True
    assert slack["availability"] == "available"
    assert "availabilityReason" not in slack
    tools = {tool["name"]: tool for tool in slack["tools"]}
    assert set(tools) == set(SLACK_TOOLS)
    post = tools["slack_post_message"]
    assert post["description"]
    assert post["inputSchema"]["type"] == "object"
    assert post["inputSchema"]["required"] == ["text"]  # channel may come from defaultChannel
    assert "defaultChannel" in post["inputSchema"]["properties"]["channel"]["description"]
    assert "message_ts" in post["outputSchema"]["properties"]
    assert post["annotations"]["readOnlyHint"] is False
    assert tools["slack_list_channels"]["annotations"]["readOnlyHint"] is True
    field, app_id = slack["credentialFields"]
    assert field["key"] == "bot_token"
    assert field["label"] == "Bot token"
    assert field["required"] is True
    assert field["pattern"].startswith("^xoxb-")
    assert app_id["key"] == "app_id" and app_id["required"] is False and app_id["secret"] is False

    telegram = catalog["telegram"]
    assert {tool["name"] for tool in telegram["tools"]} == {
        "telegram_send_message",
        "telegram_get_me",
        "telegram_get_updates",
    }
    assert [f["key"] for f in telegram["credentialFields"]] == ["bot_token"]


async def test_catalog_filtered_to_available_only_keeps_available_connectors(tendril: Tendril) -> None:
    owner = await tendril.new_owner()
    client = tendril.client(owner.api_key)
    everything = await client.connectors()
    available = await client.connectors(available=True)
    assert available
    assert all(c.availability == "available" for c in available)
    assert {c.slug for c in available} == {c.slug for c in everything if c.availability == "available"}


async def test_catalog_needs_an_api_key(tendril: Tendril) -> None:
    async with tendril.raw() as http:
        response = await http.get("/api/v1/connectors")
    assert_error(response, 401, "UNAUTHORIZED", "API key")


# -- starting a connection ----------------------------------------------------------------------
async def test_starting_a_connection_answers_201_pending_with_a_credential_submit_url(
    tendril: Tendril,
) -> None:
    owner = await tendril.new_owner()
    async with tendril.raw() as http:
        response = await http.post(
            "/api/v1/connections", json={"connectorSlug": "slack", "label": "Work Slack"}, headers=auth(owner)
        )
    assert response.status_code == 201, response.text
    body = response.json()
    connection = body["connection"]
    assert connection["connectorSlug"] == "slack"
    assert connection["label"] == "Work Slack"
    assert connection["status"] == "pending"
    assert connection["hasCredentials"] is False
    assert connection["deletedAt"] is None
    uuid.UUID(connection["id"])
    assert body["oauthUrl"] is None
    assert body["credentialSubmitUrl"] == f"{PUBLIC_URL}/api/v1/connections/{connection['id']}/credentials"
    assert connection["connectUrl"] == f"{PUBLIC_URL}/connect/{connection['id']}"


async def test_connection_label_defaults_to_the_connector_name_and_is_trimmed(tendril: Tendril) -> None:
    owner = await tendril.new_owner()
    async with tendril.raw() as http:
        default = await start(http, owner, "telegram")
        trimmed = await start(http, owner, "slack", "  Team chat  ")
    assert default["connection"]["label"] == "Telegram"
    assert trimmed["connection"]["label"] == "Team chat"


async def test_starting_again_while_pending_returns_the_same_pending_connection(tendril: Tendril) -> None:
    owner = await tendril.new_owner()
    async with tendril.raw() as http:
        first = await start(http, owner, "slack")
        again = await http.post("/api/v1/connections", json={"connectorSlug": "slack"}, headers=auth(owner))
        listed = await http.get("/api/v1/connections", headers=auth(owner))
    # Not created again, so 200; and no pile of duplicate pending connections.
    assert again.status_code == 200
    assert again.json()["connection"]["id"] == first["connection"]["id"]
    assert len(listed.json()) == 1


async def test_starting_an_already_active_connection_answers_200_with_it_and_a_resubmit_url(
    tendril: Tendril, fakes: Fakes
) -> None:
    owner = await tendril.new_owner()
    async with tendril.raw() as http:
        connection_id = await connect(http, owner, "slack", SLACK_TOKEN)
        response = await http.post(
            "/api/v1/connections", json={"connectorSlug": "slack"}, headers=auth(owner)
        )
    assert response.status_code == 200
    body = response.json()
    assert body["connection"]["id"] == connection_id
    assert body["connection"]["status"] == "active"
    assert body["oauthUrl"] is None
    assert body["credentialSubmitUrl"] == f"{PUBLIC_URL}/api/v1/connections/{connection_id}/credentials"
    assert SLACK_TOKEN not in response.text


async def test_a_different_label_starts_a_second_connection_of_the_same_connector(
    tendril: Tendril, fakes: Fakes
) -> None:
    owner = await tendril.new_owner()
    async with tendril.raw() as http:
        first = await connect(http, owner, "slack", SLACK_TOKEN, label="Acme")
        response = await http.post(
            "/api/v1/connections", json={"connectorSlug": "slack", "label": "Other"}, headers=auth(owner)
        )
    assert response.status_code == 201
    assert response.json()["connection"]["id"] != first


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ({}, "connectorSlug is required"),
        ({"connectorSlug": ""}, "connectorSlug is required"),
        ({"label": "x"}, "connectorSlug is required"),
        ({"connectorSlug": "fax"}, "unknown connector slug: fax"),
        ({"connectorSlug": "SLACK"}, "unknown connector slug: SLACK"),
        ({"connectorSlug": "slack", "label": ""}, "label"),
        ({"connectorSlug": "slack", "label": "   "}, "label"),
        ({"connectorSlug": "slack", "label": "x" * 201}, "at most 200"),
        ({"connectorSlug": "slack", "label": "tab\there"}, "control characters"),
        ({"connectorSlug": "slack", "label": 7}, "'label' must be a string"),
    ],
)
async def test_starting_a_connection_with_a_bad_slug_or_label_is_a_bad_request(
    tendril: Tendril, payload: dict[str, Any], fragment: str
) -> None:
    owner = await tendril.new_owner()
    async with tendril.raw() as http:
        response = await http.post("/api/v1/connections", json=payload, headers=auth(owner))
        listed = await http.get("/api/v1/connections", headers=auth(owner))
    assert_error(response, 400, "BAD_REQUEST", fragment)
    assert listed.json() == []


async def test_a_label_with_a_nul_character_is_refused_on_both_databases(tendril: Tendril) -> None:
    owner = await tendril.new_owner()
    async with tendril.raw() as http:
        response = await http.post(
            "/api/v1/connections", json={"connectorSlug": "slack", "label": "a\u0000b"}, headers=auth(owner)
        )
    assert_error(response, 400, "BAD_REQUEST", "control characters")


# -- listing and fetching ------------------------------------------------------------------------
async def test_connections_are_listed_newest_first_without_any_secret(tendril: Tendril, fakes: Fakes) -> None:
    owner = await tendril.new_owner()
    async with tendril.raw() as http:
        oldest = await connect(http, owner, "slack", SLACK_TOKEN)
        middle = await connect(http, owner, "telegram", TELEGRAM_TOKEN)
        newest = (await start(http, owner, "slack", "Pending one"))["connection"]["id"]
        response = await http.get("/api/v1/connections", headers=auth(owner))
    assert response.status_code == 200
    listed = response.json()
    assert [c["id"] for c in listed] == [newest, middle, oldest]
    assert [c["status"] for c in listed] == ["pending", "active", "active"]
    assert SLACK_TOKEN not in response.text
    assert TELEGRAM_TOKEN not in response.text
    for item in listed:
        assert not {"credentials", "sealedCredentials", "token", "bot_token"} & set(item)


async def test_an_owner_with_no_connections_lists_an_empty_array(tendril: Tendril) -> None:
    owner = await tendril.new_owner()
    assert await tendril.client(owner.api_key).connections() == []


async def test_fetching_one_connection_returns_its_record(tendril: Tendril, fakes: Fakes) -> None:
    owner = await tendril.new_owner()
    async with tendril.raw() as http:
        connection_id = await connect(http, owner, "slack", SLACK_TOKEN, label="Acme")
        response = await http.get(f"/api/v1/connections/{connection_id}", headers=auth(owner))
    assert response.status_code == 200
    record = response.json()
    assert record["id"] == connection_id
    assert record["label"] == "Acme"
    assert record["status"] == "active"
    assert record["hasCredentials"] is True
    assert record["connectUrl"] is None
    assert record["account"]["team"] == "Acme"
    assert record["account"]["teamId"] == "T123"
    assert SLACK_TOKEN not in response.text


async def test_fetching_a_malformed_connection_id_is_a_bad_request(tendril: Tendril) -> None:
    owner = await tendril.new_owner()
    async with tendril.raw() as http:
        response = await http.get("/api/v1/connections/not-a-uuid", headers=auth(owner))
    assert_error(response, 400, "BAD_REQUEST", "malformed connection id")


async def test_fetching_a_connection_that_does_not_exist_is_not_found(tendril: Tendril) -> None:
    owner = await tendril.new_owner()
    async with tendril.raw() as http:
        response = await http.get(f"/api/v1/connections/{uuid.uuid4()}", headers=auth(owner))
    assert_error(response, 404, "NOT_FOUND", "connection not found")


# -- deleting ------------------------------------------------------------------------------------
async def test_deleting_revokes_and_soft_deletes_the_connection_and_drops_its_secret(
    tendril: Tendril, fakes: Fakes
) -> None:
    owner = await tendril.new_owner()
    async with tendril.raw() as http:
        connection_id = await connect(http, owner, "slack", SLACK_TOKEN)
        response = await http.delete(f"/api/v1/connections/{connection_id}", headers=auth(owner))
        fetched = await http.get(f"/api/v1/connections/{connection_id}", headers=auth(owner))
        listed = await http.get("/api/v1/connections", headers=auth(owner))
        action = await http.post(
            f"/api/v1/connections/{connection_id}/actions/post_message",
            json={"parameters": {"channel": "#general", "text": "after delete"}},
            headers=auth(owner),
        )
    assert response.status_code == 200
    assert response.json() == {"deleted": True}
    assert_error(fetched, 404, "NOT_FOUND")
    assert listed.json() == []
    assert_error(action, 404, "NOT_FOUND")
    assert fakes.slack.messages == []
    row = await stored_row(tendril, connection_id)
    assert row.status == "revoked"
    assert row.deleted_at is not None
    assert row.credentials is None


async def test_deleting_twice_answers_not_found_the_second_time(tendril: Tendril) -> None:
    owner = await tendril.new_owner()
    async with tendril.raw() as http:
        connection_id = (await start(http, owner, "telegram"))["connection"]["id"]
        first = await http.delete(f"/api/v1/connections/{connection_id}", headers=auth(owner))
        second = await http.delete(f"/api/v1/connections/{connection_id}", headers=auth(owner))
    assert first.status_code == 200
    assert_error(second, 404, "NOT_FOUND")


async def test_deleting_a_malformed_or_unknown_connection_id_is_400_or_404(tendril: Tendril) -> None:
    owner = await tendril.new_owner()
    async with tendril.raw() as http:
        malformed = await http.delete("/api/v1/connections/1234", headers=auth(owner))
        unknown = await http.delete(f"/api/v1/connections/{uuid.uuid4()}", headers=auth(owner))
    assert_error(malformed, 400, "BAD_REQUEST", "malformed connection id")
    assert_error(unknown, 404, "NOT_FOUND")


async def test_after_deleting_a_connection_starting_again_creates_a_fresh_pending_one(
    tendril: Tendril, fakes: Fakes
) -> None:
    owner = await tendril.new_owner()
    async with tendril.raw() as http:
        old = await connect(http, owner, "slack", SLACK_TOKEN)
        await http.delete(f"/api/v1/connections/{old}", headers=auth(owner))
        response = await http.post(
            "/api/v1/connections", json={"connectorSlug": "slack"}, headers=auth(owner)
        )
    assert response.status_code == 201
    fresh = response.json()["connection"]
    assert fresh["id"] != old
    assert fresh["status"] == "pending"


# -- credentials ---------------------------------------------------------------------------------
async def test_a_valid_slack_token_is_verified_with_auth_test_and_activates_the_connection(
    tendril: Tendril, fakes: Fakes
) -> None:
    owner = await tendril.new_owner()
    async with tendril.raw() as http:
        connection_id = (await start(http, owner, "slack"))["connection"]["id"]
        response = await submit(http, owner, connection_id, {"bot_token": SLACK_TOKEN})
    assert response.status_code == 200, response.text
    connection = response.json()["connection"]
    assert connection["status"] == "active"
    assert connection["hasCredentials"] is True
    assert connection["lastError"] is None
    assert connection["account"]["team"] == "Acme"
    assert ("auth.test", SLACK_TOKEN) in fakes.slack.calls
    assert SLACK_TOKEN not in response.text


async def test_a_valid_telegram_token_is_verified_with_get_me_and_activates_the_connection(
    tendril: Tendril, fakes: Fakes
) -> None:
    owner = await tendril.new_owner()
    client = tendril.client(owner.api_key)
    started = await client.create_connection("telegram")
    # The wrapped form {"credentials": {...}} is accepted as well as the bare field object.
    async with tendril.raw() as http:
        response = await http.post(
            f"/api/v1/connections/{started.connection.id}/credentials",
            json={"credentials": {"bot_token": TELEGRAM_TOKEN}},
            headers=auth(owner),
        )
    assert response.status_code == 200, response.text
    connection = response.json()["connection"]
    assert connection["status"] == "active"
    assert connection["account"]["username"] == "tendril_bot"
    assert ("getMe", TELEGRAM_TOKEN) in fakes.telegram.calls
    assert TELEGRAM_TOKEN not in response.text


@pytest.mark.parametrize(
    ("slug", "payload", "fragments"),
    [
        ("slack", {}, ["credential field 'bot_token' is required"]),
        ("slack", {"bot_token": ""}, ["credential field 'bot_token' is required"]),
        ("slack", {"bot_token": "not-a-slack-token"}, ["'bot_token'", "does not look like a Bot token"]),
        ("slack", {"bot_token": TELEGRAM_TOKEN}, ["does not look like a Bot token"]),
        ("telegram", {"bot_token": SLACK_TOKEN}, ["does not look like a Bot token"]),
        ("slack", {"bot_token": SLACK_TOKEN, "team": "x"}, ["unknown credential field(s): team"]),
        ("slack", {"bot_token": ["xoxb-1"]}, ["'bot_token' must be a string"]),
        ("slack", {"credentials": "xoxb-1-2"}, ["credentials must be a JSON object"]),
    ],
)
async def test_a_credential_that_fails_field_validation_is_refused_and_the_connection_stays_pending(
    tendril: Tendril, fakes: Fakes, slug: str, payload: dict[str, Any], fragments: list[str]
) -> None:
    owner = await tendril.new_owner()
    async with tendril.raw() as http:
        connection_id = (await start(http, owner, slug))["connection"]["id"]
        response = await http.post(
            f"/api/v1/connections/{connection_id}/credentials", json=payload, headers=auth(owner)
        )
        after = await http.get(f"/api/v1/connections/{connection_id}", headers=auth(owner))
    assert_error(response, 400, "BAD_REQUEST", *fragments)
    # A value pasted into the wrong field may be a real secret: it is never echoed.
    assert SLACK_TOKEN not in response.text
    assert TELEGRAM_TOKEN not in response.text
    assert after.json()["status"] == "pending"
    assert after.json()["hasCredentials"] is False
    assert fakes.slack.calls == [] and fakes.telegram.calls == []


@pytest.mark.parametrize(
    ("slug", "token", "fragments"),
    [
        ("slack", UNKNOWN_SLACK_TOKEN, ["Slack rejected the credential", "invalid_auth"]),
        ("telegram", UNKNOWN_TELEGRAM_TOKEN, ["Telegram rejected the credential", "Unauthorized"]),
    ],
)
async def test_a_credential_the_provider_rejects_is_a_400_saying_why_and_stays_pending(
    tendril: Tendril, fakes: Fakes, slug: str, token: str, fragments: list[str]
) -> None:
    owner = await tendril.new_owner()
    async with tendril.raw() as http:
        connection_id = (await start(http, owner, slug))["connection"]["id"]
        response = await http.post(
            f"/api/v1/connections/{connection_id}/credentials", json={"bot_token": token}, headers=auth(owner)
        )
        after = await http.get(f"/api/v1/connections/{connection_id}", headers=auth(owner))
    assert_error(response, 400, "BAD_REQUEST", *fragments)
    assert token not in response.text
    assert after.json()["status"] == "pending"
    assert after.json()["hasCredentials"] is False


async def test_a_revoked_slack_token_is_refused_as_token_revoked(tendril: Tendril, fakes: Fakes) -> None:
    owner = await tendril.new_owner()
    fakes.slack.revoke_token(SLACK_TOKEN)
    async with tendril.raw() as http:
        connection_id = (await start(http, owner, "slack"))["connection"]["id"]
        response = await submit(http, owner, connection_id, {"bot_token": SLACK_TOKEN})
    assert_error(response, 400, "BAD_REQUEST", "token_revoked")


async def test_a_provider_outage_during_verification_is_a_502_and_the_connection_stays_pending(
    tendril: Tendril, fakes: Fakes
) -> None:
    owner = await tendril.new_owner()
    fakes.slack.fail_next("auth.test", status=500)
    async with tendril.raw() as http:
        connection_id = (await start(http, owner, "slack"))["connection"]["id"]
        response = await submit(http, owner, connection_id, {"bot_token": SLACK_TOKEN})
        after = await http.get(f"/api/v1/connections/{connection_id}", headers=auth(owner))
    assert_error(response, 502, "UPSTREAM_ERROR", "could not verify the credential with Slack")
    assert after.json()["status"] == "pending"


async def test_a_provider_rate_limit_during_verification_is_a_429_with_retry_after(
    tendril: Tendril, fakes: Fakes
) -> None:
    owner = await tendril.new_owner()
    fakes.telegram.rate_limit_next("getMe", retry_after=30)
    async with tendril.raw() as http:
        connection_id = (await start(http, owner, "telegram"))["connection"]["id"]
        response = await submit(http, owner, connection_id, {"bot_token": TELEGRAM_TOKEN})
        after = await http.get(f"/api/v1/connections/{connection_id}", headers=auth(owner))
    assert_error(response, 429, "RATE_LIMITED", "retry after 30")
    assert response.headers["Retry-After"] == "30"
    assert after.json()["status"] == "pending"


async def test_resubmitting_credentials_replaces_the_stored_token(tendril: Tendril, fakes: Fakes) -> None:
    owner = await tendril.new_owner()
    second_token = "xoxb-5555-6666-ReplacementTokenZz"
    fakes.slack.add_token(second_token, team_name="Other")
    async with tendril.raw() as http:
        connection_id = await connect(http, owner, "slack", SLACK_TOKEN)
        replaced = await submit(http, owner, connection_id, {"bot_token": second_token})
        posted = await http.post(
            f"/api/v1/connections/{connection_id}/actions/post_message",
            json={"parameters": {"channel": "#general", "text": "with the new token"}},
            headers=auth(owner),
        )
    assert replaced.status_code == 200
    assert replaced.json()["connection"]["account"]["team"] == "Other"
    assert posted.status_code == 200, posted.text
    assert fakes.slack.messages[-1]["token"] == second_token


async def test_submitting_credentials_to_a_deleted_or_unknown_connection_is_not_found(
    tendril: Tendril, fakes: Fakes
) -> None:
    owner = await tendril.new_owner()
    async with tendril.raw() as http:
        connection_id = (await start(http, owner, "slack"))["connection"]["id"]
        await http.delete(f"/api/v1/connections/{connection_id}", headers=auth(owner))
        deleted = await submit(http, owner, connection_id, {"bot_token": SLACK_TOKEN})
        unknown = await http.post(
            f"/api/v1/connections/{uuid.uuid4()}/credentials",
            json={"bot_token": SLACK_TOKEN},
            headers=auth(owner),
        )
    assert_error(deleted, 404, "NOT_FOUND")
    assert_error(unknown, 404, "NOT_FOUND")
    assert fakes.slack.calls == []


# -- actions on a stored connection -----------------------------------------------------------
@pytest.mark.parametrize("action", ["post_message", "slack_post_message"])
async def test_an_action_runs_with_the_stored_slack_token(
    tendril: Tendril, fakes: Fakes, action: str
) -> None:
    owner = await tendril.new_owner()
    async with tendril.raw() as http:
        connection_id = await connect(http, owner, "slack", SLACK_TOKEN)
        response = await http.post(
            f"/api/v1/connections/{connection_id}/actions/{action}",
            json={"parameters": {"channel": "#general", "text": "hello from REST"}},
            headers=auth(owner),
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["connectionId"] == connection_id
    assert body["data"]["channel"] == "C01234567"
    assert body["data"]["status"] == "sent"
    assert body["data"]["message_ts"] == fakes.slack.messages[-1]["ts"]
    assert fakes.slack.messages[-1]["text"] == "hello from REST"
    assert fakes.slack.messages[-1]["token"] == SLACK_TOKEN
    assert SLACK_TOKEN not in response.text


async def test_the_typed_client_runs_telegram_actions_on_a_connection(tendril: Tendril, fakes: Fakes) -> None:
    owner = await tendril.new_owner()
    client = tendril.client(owner.api_key)
    started = await client.create_connection("telegram")
    await client.submit_credentials(started.connection.id, {"bot_token": TELEGRAM_TOKEN})
    me = await client.run_action(started.connection.id, "get_me", {})
    sent = await client.run_action(
        started.connection.id, "telegram_send_message", {"chat_id": 123456789, "text": "hi"}
    )
    assert me["username"] == "tendril_bot"
    assert sent == {"message_id": 1, "chat_id": 123456789, "status": "sent"}
    assert fakes.telegram.messages[-1]["token"] == TELEGRAM_TOKEN


async def test_list_channels_on_a_connection_pages_through_the_fake(tendril: Tendril, fakes: Fakes) -> None:
    owner = await tendril.new_owner()
    client = tendril.client(owner.api_key)
    started = await client.create_connection("slack")
    await client.submit_credentials(started.connection.id, {"bot_token": SLACK_TOKEN})
    first = await client.run_action(started.connection.id, "list_channels", {"limit": 1})
    second = await client.run_action(
        started.connection.id, "list_channels", {"limit": 1, "cursor": first["next_cursor"]}
    )
    assert [c["name"] for c in first["channels"] + second["channels"]] == ["general", "random"]
    assert second["next_cursor"] is None


@pytest.mark.parametrize("action", ["xyz", "send_message", "telegram_get_me", "slack_", "Post_Message"])
async def test_an_unknown_action_is_a_bad_request_naming_it(
    tendril: Tendril, fakes: Fakes, action: str
) -> None:
    owner = await tendril.new_owner()
    async with tendril.raw() as http:
        connection_id = await connect(http, owner, "slack", SLACK_TOKEN)
        response = await http.post(
            f"/api/v1/connections/{connection_id}/actions/{action}",
            json={"parameters": {"channel": "#general", "text": "x"}},
            headers=auth(owner),
        )
    assert_error(response, 400, "BAD_REQUEST", f"unknown action: {action}")
    assert fakes.slack.messages == []


async def test_an_action_on_a_pending_connection_is_a_conflict_pointing_to_the_connect_page(
    tendril: Tendril, fakes: Fakes
) -> None:
    owner = await tendril.new_owner()
    async with tendril.raw() as http:
        connection_id = (await start(http, owner, "slack"))["connection"]["id"]
        response = await http.post(
            f"/api/v1/connections/{connection_id}/actions/post_message",
            json={"parameters": {"channel": "#general", "text": "x"}},
            headers=auth(owner),
        )
    connect_url = f"{PUBLIC_URL}/connect/{connection_id}"
    body = assert_error(response, 409, "NOT_CONNECTED", "is not connected yet", connect_url)
    assert body["details"] == {"connectUrl": connect_url, "connectionId": connection_id}
    assert fakes.slack.calls == []


async def test_invalid_action_parameters_are_a_400_naming_the_field(tendril: Tendril, fakes: Fakes) -> None:
    owner = await tendril.new_owner()
    async with tendril.raw() as http:
        connection_id = await connect(http, owner, "slack", SLACK_TOKEN)
        missing = await http.post(
            f"/api/v1/connections/{connection_id}/actions/post_message",
            json={"parameters": {"channel": "#general"}},
            headers=auth(owner),
        )
        not_object = await http.post(
            f"/api/v1/connections/{connection_id}/actions/post_message",
            json={"parameters": ["#general", "hi"]},
            headers=auth(owner),
        )
    body = assert_error(missing, 400, "INVALID_INPUT", "'text'")
    assert body["details"]["field"] == "text"
    assert_error(not_object, 400, "BAD_REQUEST", "'parameters' must be a JSON object")
    assert fakes.slack.messages == []


async def test_a_provider_rate_limit_on_an_action_is_a_429_with_retry_after(
    tendril: Tendril, fakes: Fakes
) -> None:
    owner = await tendril.new_owner()
    async with tendril.raw() as http:
        connection_id = await connect(http, owner, "slack", SLACK_TOKEN)
        fakes.slack.rate_limit_next("chat.postMessage", retry_after=7)
        response = await http.post(
            f"/api/v1/connections/{connection_id}/actions/post_message",
            json={"parameters": {"channel": "#general", "text": "x"}},
            headers=auth(owner),
        )
    body = assert_error(response, 429, "RATE_LIMITED", "rate limit")
    assert response.headers["Retry-After"] == "7"
    assert body["details"]["retryAfter"] == 7
    assert fakes.slack.messages == []  # a send is never silently repeated


async def test_a_long_rate_limit_on_a_read_action_is_reported_instead_of_waited_out(
    tendril: Tendril, fakes: Fakes
) -> None:
    owner = await tendril.new_owner()
    async with tendril.raw() as http:
        connection_id = await connect(http, owner, "telegram", TELEGRAM_TOKEN)
        fakes.telegram.rate_limit_next("getMe", retry_after=60)
        response = await http.post(
            f"/api/v1/connections/{connection_id}/actions/get_me", json={}, headers=auth(owner)
        )
    assert_error(response, 429, "RATE_LIMITED")
    assert response.headers["Retry-After"] == "60"


async def test_a_token_revoked_at_the_provider_moves_the_connection_to_needs_reauth(
    tendril: Tendril, fakes: Fakes
) -> None:
    owner = await tendril.new_owner()
    async with tendril.raw() as http:
        connection_id = await connect(http, owner, "slack", SLACK_TOKEN)
        fakes.slack.revoke_token(SLACK_TOKEN)
        response = await http.post(
            f"/api/v1/connections/{connection_id}/actions/post_message",
            json={"parameters": {"channel": "#general", "text": "x"}},
            headers=auth(owner),
        )
        after = await http.get(f"/api/v1/connections/{connection_id}", headers=auth(owner))
    assert_error(response, 409, "NOT_CONNECTED", "needs to be connected again")
    assert after.json()["status"] == "needs_reauth"
    assert after.json()["connectUrl"] == f"{PUBLIC_URL}/connect/{connection_id}"
    assert SLACK_TOKEN not in response.text + after.text


async def test_provider_errors_on_an_action_keep_their_meaning(tendril: Tendril, fakes: Fakes) -> None:
    owner = await tendril.new_owner()
    async with tendril.raw() as http:
        connection_id = await connect(http, owner, "slack", SLACK_TOKEN)
        no_channel = await http.post(
            f"/api/v1/connections/{connection_id}/actions/post_message",
            json={"parameters": {"channel": "#nowhere", "text": "x"}},
            headers=auth(owner),
        )
        fakes.slack.fail_next("chat.postMessage", status=503)
        outage = await http.post(
            f"/api/v1/connections/{connection_id}/actions/post_message",
            json={"parameters": {"channel": "#general", "text": "x"}},
            headers=auth(owner),
        )
    assert_error(no_channel, 404, "NOT_FOUND", "channel_not_found")
    assert_error(outage, 502, "UPSTREAM_ERROR", "Slack")


async def test_an_action_on_a_malformed_or_unknown_connection_id_is_400_or_404(tendril: Tendril) -> None:
    owner = await tendril.new_owner()
    async with tendril.raw() as http:
        malformed = await http.post(
            "/api/v1/connections/xyz/actions/post_message", json={"parameters": {}}, headers=auth(owner)
        )
        unknown = await http.post(
            f"/api/v1/connections/{uuid.uuid4()}/actions/post_message",
            json={"parameters": {}},
            headers=auth(owner),
        )
    assert_error(malformed, 400, "BAD_REQUEST", "malformed connection id")
    assert_error(unknown, 404, "NOT_FOUND", "connection not found")


# -- health --------------------------------------------------------------------------------------
async def test_healthz_answers_ok_without_a_key(tendril: Tendril) -> None:
    async with tendril.raw() as http:
        response = await http.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
