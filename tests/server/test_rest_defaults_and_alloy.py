"""Connection defaults (integration-layer seed) and Alloy-style action calls (alloy seed)."""

from __future__ import annotations

import pytest

from tests.conftest import SLACK_TOKEN, TELEGRAM_TOKEN, Fakes, Tendril
from tests.support.rest import assert_error

pytestmark = pytest.mark.anyio


async def test_a_connection_default_fills_an_omitted_channel(tendril: Tendril, fakes: Fakes) -> None:
    owner = await tendril.new_owner()
    client = tendril.client(owner.api_key)
    started = await client.request(
        "POST",
        "/api/v1/connections",
        json={"connectorSlug": "slack", "config": {"defaultChannel": "#random"}},
    )
    connection_id = started["connection"]["id"]
    assert started["connection"]["config"] == {"defaultChannel": "#random"}
    await client.submit_credentials(connection_id, {"bot_token": SLACK_TOKEN})
    await client.run_action(connection_id, "post_message", {"text": "to the default"})
    await client.run_action(connection_id, "post_message", {"text": "explicit", "channel": "#general"})
    assert [(m["channel"], m["text"]) for m in fakes.slack.messages] == [
        ("C07654321", "to the default"),
        ("C01234567", "explicit"),
    ]


async def test_without_a_default_the_omitted_parameter_is_named(tendril: Tendril, fakes: Fakes) -> None:
    owner = await tendril.new_owner()
    client = tendril.client(owner.api_key)
    started = await client.create_connection("telegram")
    await client.submit_credentials(started.connection.id, {"bot_token": TELEGRAM_TOKEN})
    async with tendril.raw() as http:
        headers = {"X-Api-Key": owner.api_key}
        path = f"/api/v1/connections/{started.connection.id}"
        missing = await http.post(
            f"{path}/actions/send_message", json={"parameters": {"text": "hi"}}, headers=headers
        )
        body = assert_error(missing, 400, "INVALID_INPUT", "'chat_id' is required", "defaultChatId")
        assert body["details"]["field"] == "chat_id"
        patched = await http.patch(path, json={"config": {"defaultChatId": 123456789}}, headers=headers)
        assert patched.status_code == 200 and patched.json()["config"] == {"defaultChatId": 123456789}
        sent = await http.post(
            f"{path}/actions/send_message", json={"parameters": {"text": "hi"}}, headers=headers
        )
        assert sent.status_code == 200, sent.text
        wrong = await http.patch(path, json={"config": {"defaultChannel": "#x"}}, headers=headers)
        assert_error(wrong, 400, "BAD_REQUEST", "unknown config key(s) defaultChannel", "defaultChatId")
    assert fakes.telegram.messages[-1]["chat_id"] == 123456789


async def test_alloy_style_calls_run_actions_and_answer_in_alloys_shapes(
    tendril: Tendril, fakes: Fakes
) -> None:
    owner, stranger = await tendril.new_owner(), await tendril.new_owner()
    client = tendril.client(owner.api_key)
    started = await client.create_connection("slack")
    await client.submit_credentials(started.connection.id, {"bot_token": SLACK_TOKEN})
    theirs = await tendril.client(stranger.api_key).create_connection("slack")
    async with tendril.raw() as http:
        headers = {"Authorization": f"Bearer {owner.api_key}"}
        body = {"credentialId": started.connection.id, "parameters": {"channel": "#general", "text": "alloy"}}
        ok = await http.post("/api/v1/connectors/slack/actions/post_message", json=body, headers=headers)
        assert ok.status_code == 200, ok.text
        assert ok.json() == {
            "data": {"message_ts": "1699276800.000100", "channel": "C01234567", "status": "sent"},
            "has_more": False,
            "next_cursor": None,
        }
        for credential in ("not-a-uuid", theirs.connection.id, "6f1c3c55-2f4e-4d8e-9a61-0c7cf0d7c1a1"):
            missing = await http.post(
                "/api/v1/connectors/slack/actions/post_message",
                json={"credentialId": credential, "parameters": {}},
                headers=headers,
            )
            assert missing.status_code == 400
            assert missing.json() == {"error": {"code": "INVALID_INPUT", "message": "Credential not found"}}
        unknown = await http.post(
            "/api/v1/connectors/slack/actions/delete-workspace", json=body, headers=headers
        )
        assert unknown.json()["error"]["message"] == "unknown action: delete-workspace"
    assert [m["text"] for m in fakes.slack.messages] == ["alloy"]
