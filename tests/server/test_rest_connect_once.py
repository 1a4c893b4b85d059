"""REST: the one-shot `POST /api/v1/connect/{connector}` (a credential used once, never stored).

Request {action, token, params}; response {status: "ok", connector, result}; errors `action required`,
`token required`, `unknown action: xyz`, `connector_error: ...`. The token is used once, never stored.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import SLACK_TOKEN, TELEGRAM_TOKEN, Fakes, Owner, Tendril
from tests.support.core import stored_rows
from tests.support.rest import assert_error

pytestmark = pytest.mark.anyio

UNKNOWN_SLACK_TOKEN = "xoxb-9999-8888-NobodyIssuedThisToken"


def key_header(owner: Owner) -> dict[str, str]:
    return {"X-Api-Key": owner.api_key}


async def connect_once(tendril: Tendril, owner: Owner, slug: str, payload: Any) -> httpx.Response:
    async with tendril.raw() as http:
        return await http.post(f"/api/v1/connect/{slug}", json=payload, headers=key_header(owner))


async def test_slack_post_message_answers_in_the_guide_shape(tendril: Tendril, fakes: Fakes) -> None:
    owner = await tendril.new_owner()
    response = await connect_once(
        tendril,
        owner,
        "slack",
        {"action": "post_message", "token": SLACK_TOKEN, "params": {"channel": "#general", "text": "Hello"}},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok"
    assert body["connector"] == "slack"
    assert body["result"]["channel"] == "C01234567"
    assert body["result"]["status"] == "sent"
    assert body["result"]["message_ts"] == fakes.slack.messages[-1]["ts"]
    assert fakes.slack.messages[-1]["token"] == SLACK_TOKEN
    assert fakes.slack.messages[-1]["text"] == "Hello"
    assert SLACK_TOKEN not in response.text


async def test_telegram_send_message_answers_in_the_guide_shape(tendril: Tendril, fakes: Fakes) -> None:
    owner = await tendril.new_owner()
    response = await connect_once(
        tendril,
        owner,
        "telegram",
        {
            "action": "send_message",
            "token": TELEGRAM_TOKEN,
            "params": {"chat_id": "123456789", "text": "Hello from Levqor!"},
        },
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "status": "ok",
        "connector": "telegram",
        "result": {"message_id": 1, "chat_id": 123456789, "status": "sent"},
    }
    assert fakes.telegram.messages[-1]["token"] == TELEGRAM_TOKEN
    assert TELEGRAM_TOKEN not in response.text


async def test_an_action_without_params_runs_with_its_defaults(tendril: Tendril, fakes: Fakes) -> None:
    owner = await tendril.new_owner()
    response = await connect_once(tendril, owner, "telegram", {"action": "get_me", "token": TELEGRAM_TOKEN})
    assert response.status_code == 200, response.text
    assert response.json()["result"]["username"] == "tendril_bot"


async def test_the_action_may_be_given_by_its_tool_name(tendril: Tendril, fakes: Fakes) -> None:
    owner = await tendril.new_owner()
    response = await connect_once(
        tendril,
        owner,
        "slack",
        {"action": "slack_list_channels", "token": SLACK_TOKEN, "params": {"limit": 1}},
    )
    assert response.status_code == 200, response.text
    assert [c["name"] for c in response.json()["result"]["channels"]] == ["general"]


async def test_a_credentials_object_is_accepted_instead_of_a_token(tendril: Tendril, fakes: Fakes) -> None:
    owner = await tendril.new_owner()
    response = await connect_once(
        tendril, owner, "telegram", {"action": "get_me", "credentials": {"bot_token": TELEGRAM_TOKEN}}
    )
    assert response.status_code == 200, response.text
    assert response.json()["connector"] == "telegram"


async def test_the_typed_client_and_a_bearer_key_work_too(tendril: Tendril, fakes: Fakes) -> None:
    owner = await tendril.new_owner()
    result = await tendril.client(owner.api_key).connect_once(
        "slack", "post_message", token=SLACK_TOKEN, params={"channel": "C07654321", "text": "typed"}
    )
    assert result["result"]["channel"] == "C07654321"


async def test_the_token_is_used_once_and_never_stored(tendril: Tendril, fakes: Fakes) -> None:
    owner = await tendril.new_owner()
    await connect_once(
        tendril,
        owner,
        "slack",
        {"action": "post_message", "token": SLACK_TOKEN, "params": {"channel": "#general", "text": "x"}},
    )
    client = tendril.client(owner.api_key)
    assert await client.connections() == []
    async with stored_rows(tendril.core.settings) as store:
        assert await store.all_sealed_credentials() == []


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"token": SLACK_TOKEN}, "action required"),
        ({"action": "", "token": SLACK_TOKEN}, "action required"),
        ({"action": None, "token": SLACK_TOKEN}, "action required"),
        ({}, "action required"),
        ({"action": "post_message"}, "token required"),
        ({"action": "post_message", "token": ""}, "token required"),
        ({"action": "post_message", "token": None}, "token required"),
        ({"action": "xyz", "token": SLACK_TOKEN}, "unknown action: xyz"),
        ({"action": "send_message", "token": SLACK_TOKEN}, "unknown action: send_message"),
        ({"action": 5, "token": SLACK_TOKEN}, "action must be a string"),
        ({"action": ["post_message"], "token": SLACK_TOKEN}, "action must be a string"),
    ],
)
async def test_missing_or_unknown_action_and_missing_token_use_the_guide_messages(
    tendril: Tendril, fakes: Fakes, payload: dict[str, Any], message: str
) -> None:
    owner = await tendril.new_owner()
    response = await connect_once(tendril, owner, "slack", payload)
    assert_error(response, 400, "BAD_REQUEST", message)
    assert fakes.slack.calls == []


@pytest.mark.parametrize(
    "token", ["not-a-slack-token", 12345, ["xoxb-1"], TELEGRAM_TOKEN], ids=["format", "int", "list", "wrong"]
)
async def test_a_token_of_the_wrong_shape_is_refused_before_calling_the_provider(
    tendril: Tendril, fakes: Fakes, token: Any
) -> None:
    owner = await tendril.new_owner()
    response = await connect_once(tendril, owner, "slack", {"action": "post_message", "token": token})
    assert_error(response, 400, "BAD_REQUEST", "credential field 'bot_token'")
    assert TELEGRAM_TOKEN not in response.text
    assert fakes.slack.calls == []


async def test_an_unknown_connector_is_not_found(tendril: Tendril) -> None:
    owner = await tendril.new_owner()
    response = await connect_once(tendril, owner, "fax", {"action": "list_labels", "token": "ya29.x"})
    assert_error(response, 404, "NOT_FOUND", "unknown connector: fax")


async def test_a_token_the_provider_rejects_is_a_connector_error(tendril: Tendril, fakes: Fakes) -> None:
    owner = await tendril.new_owner()
    response = await connect_once(
        tendril,
        owner,
        "slack",
        {
            "action": "post_message",
            "token": UNKNOWN_SLACK_TOKEN,
            "params": {"channel": "#general", "text": "x"},
        },
    )
    body = assert_error(response, 400, "INVALID_CREDENTIALS", "invalid_auth")
    assert body["error"].startswith("connector_error: ")
    assert UNKNOWN_SLACK_TOKEN not in response.text


async def test_invalid_params_are_a_connector_error_naming_the_field(tendril: Tendril, fakes: Fakes) -> None:
    owner = await tendril.new_owner()
    missing = await connect_once(
        tendril,
        owner,
        "slack",
        {"action": "post_message", "token": SLACK_TOKEN, "params": {"channel": "#general"}},
    )
    not_object = await connect_once(
        tendril, owner, "slack", {"action": "post_message", "token": SLACK_TOKEN, "params": "#general hi"}
    )
    body = assert_error(missing, 400, "INVALID_INPUT", "'text'")
    assert body["error"].startswith("connector_error: ")
    assert_error(not_object, 400, "INVALID_INPUT", "connector_error: ", "params must be a JSON object")
    assert fakes.slack.messages == []


async def test_a_provider_failure_is_a_connector_error(tendril: Tendril, fakes: Fakes) -> None:
    owner = await tendril.new_owner()
    fakes.telegram.fail_next("sendMessage", status=500)
    response = await connect_once(
        tendril,
        owner,
        "telegram",
        {"action": "send_message", "token": TELEGRAM_TOKEN, "params": {"chat_id": 123456789, "text": "x"}},
    )
    body = assert_error(response, 502, "UPSTREAM_ERROR", "Telegram")
    assert body["error"].startswith("connector_error: ")


async def test_a_provider_rate_limit_is_a_429_with_retry_after(tendril: Tendril, fakes: Fakes) -> None:
    owner = await tendril.new_owner()
    fakes.slack.rate_limit_next("chat.postMessage", retry_after=12)
    response = await connect_once(
        tendril,
        owner,
        "slack",
        {"action": "post_message", "token": SLACK_TOKEN, "params": {"channel": "#general", "text": "x"}},
    )
    body = assert_error(response, 429, "RATE_LIMITED", "connector_error: ")
    assert response.headers["Retry-After"] == "12"
    assert body["details"]["retryAfter"] == 12


async def test_connect_once_needs_an_api_key_with_execute_permission(tendril: Tendril, fakes: Fakes) -> None:
    reader = await tendril.new_owner(permissions=["read", "write"])
    executor = await tendril.new_owner(permissions=["execute"])
    payload = {"action": "get_me", "token": TELEGRAM_TOKEN}
    async with tendril.raw() as http:
        anonymous = await http.post("/api/v1/connect/telegram", json=payload)
        forged = await http.post(
            "/api/v1/connect/telegram", json=payload, headers={"X-Api-Key": "tdl_forged_key_123"}
        )
        denied = await http.post("/api/v1/connect/telegram", json=payload, headers=key_header(reader))
        allowed = await http.post("/api/v1/connect/telegram", json=payload, headers=key_header(executor))
    assert_error(anonymous, 401, "UNAUTHORIZED", "X-Api-Key")
    assert_error(forged, 401, "UNAUTHORIZED")
    assert_error(denied, 403, "FORBIDDEN", "'execute'")
    assert allowed.status_code == 200
    assert [method for method, _ in fakes.telegram.calls] == ["getMe"]
