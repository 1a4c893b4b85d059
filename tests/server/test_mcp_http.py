"""MCP over real Streamable HTTP, with the `mcp` SDK's own client, on SQLite and PostgreSQL."""

from __future__ import annotations

import anyio
import httpx
import pytest
from mcp.shared.exceptions import MCPError

from clients import TendrilClient
from server.mcp.connect_flow import WAIT_TOOL
from server.mcp.job_tools import JOB_TOOLS
from tests.conftest import SLACK_TOKEN, TELEGRAM_TOKEN, Fakes, LiveTendril
from tests.support.catalog import SLACK_TOOLS, TELEGRAM_TOOLS
from tests.support.mcp import mcp_client

pytestmark = pytest.mark.anyio

SECOND_SLACK_TOKEN = "xoxb-3333-4444-SecondWorkspaceToken77"


async def connect(
    client: TendrilClient, slug: str, credentials: dict[str, str], label: str | None = None
) -> str:
    started = await client.create_connection(slug, label=label)
    connection = await client.submit_credentials(started.connection.id, credentials)
    assert connection.status == "active"
    return connection.id


async def test_agent_sees_only_slack_tools_and_posts_through_the_fake(
    live_tendril: LiveTendril, fakes: Fakes
) -> None:
    async with live_tendril.client() as owner:
        await connect(owner, "slack", {"bot_token": SLACK_TOKEN})
        agent = await owner.create_agent("poster", ["slack"])

    async with mcp_client(live_tendril.url, agent.api_key) as mcp:
        listed = await mcp.list_tools()
        assert [tool.name for tool in listed.tools] == [*SLACK_TOOLS, WAIT_TOOL, *JOB_TOOLS]
        post = listed.tools[0]
        assert post.annotations is not None
        assert post.annotations.read_only_hint is False
        assert post.annotations.idempotent_hint is False
        assert post.annotations.destructive_hint is False
        assert post.output_schema is not None
        assert "connection" not in post.input_schema["properties"]  # only one Slack connection

        result = await mcp.call_tool("slack_post_message", {"channel": "#general", "text": "hello from MCP"})

    assert result.is_error is False
    assert result.structured_content is not None
    assert result.structured_content["channel"] == "C01234567"
    assert result.structured_content["status"] == "sent"
    sent = fakes.slack.messages[-1]
    assert sent["text"] == "hello from MCP"
    assert sent["token"] == SLACK_TOKEN


async def test_read_only_tool_is_annotated_and_pages(live_tendril: LiveTendril, fakes: Fakes) -> None:
    async with live_tendril.client() as owner:
        await connect(owner, "slack", {"bot_token": SLACK_TOKEN})
        agent = await owner.create_agent("reader", ["slack"])
    async with mcp_client(live_tendril.url, agent.api_key) as mcp:
        tools = {tool.name: tool for tool in (await mcp.list_tools()).tools}
        annotations = tools["slack_list_channels"].annotations
        assert annotations is not None and annotations.read_only_hint is True
        first = await mcp.call_tool("slack_list_channels", {"limit": 1})
        assert first.structured_content is not None
        cursor = first.structured_content["next_cursor"]
        assert len(first.structured_content["channels"]) == 1 and cursor
        second = await mcp.call_tool("slack_list_channels", {"limit": 1, "cursor": cursor})
    assert second.structured_content is not None
    assert second.structured_content["channels"][0]["id"] != first.structured_content["channels"][0]["id"]


async def test_unauthenticated_request_gets_401_with_protected_resource_metadata(
    live_tendril: LiveTendril,
) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    headers = {"Accept": "application/json, text/event-stream"}
    async with httpx.AsyncClient(base_url=live_tendril.url) as http:
        anonymous = await http.post("/mcp", json=body, headers=headers)
        forged = await http.post(
            "/mcp", json=body, headers={**headers, "Authorization": "Bearer tdl_agent_nope"}
        )
        owner_key = await http.post(
            "/mcp", json=body, headers={**headers, "Authorization": f"Bearer {live_tendril.admin.api_key}"}
        )
        assert anonymous.status_code == forged.status_code == owner_key.status_code == 401
        challenge = anonymous.headers["www-authenticate"]
        assert challenge.startswith("Bearer ")
        metadata_url = challenge.split('resource_metadata="')[1].split('"')[0]
        assert metadata_url.endswith("/.well-known/oauth-protected-resource/mcp")
        metadata = await http.get("/.well-known/oauth-protected-resource/mcp")
    assert metadata.status_code == 200
    assert metadata.json()["resource"].endswith("/mcp")
    assert metadata.json()["authorization_servers"]


async def test_missing_connection_answers_with_a_connect_url_then_works_once_connected(
    live_tendril: LiveTendril, fakes: Fakes
) -> None:
    async with live_tendril.client() as owner:
        agent = await owner.create_agent("telegrammer", ["telegram"])
        async with mcp_client(live_tendril.url, agent.api_key) as mcp:
            blocked = await mcp.call_tool("telegram_get_me", {})
            assert blocked.is_error is True
            assert blocked.structured_content is not None
            error = blocked.structured_content["error"]
            assert error["code"] == "not_connected"
            assert error["connectUrl"] in blocked.content[0].text  # type: ignore[union-attr]

            # The pending connection the agent's call prepared is the one the owner completes.
            pending = await owner.connections()
            assert [(c.id, c.status) for c in pending] == [(error["connectionId"], "pending")]
            await owner.submit_credentials(error["connectionId"], {"bot_token": TELEGRAM_TOKEN})

            again = await mcp.call_tool("telegram_get_me", {})
    assert again.is_error is False
    assert again.structured_content is not None
    assert again.structured_content["username"] == "tendril_bot"


async def test_several_connections_add_a_connection_argument(live_tendril: LiveTendril, fakes: Fakes) -> None:
    fakes.slack.add_token(SECOND_SLACK_TOKEN, team="T999", team_name="Home")
    async with live_tendril.client() as owner:
        await connect(owner, "slack", {"bot_token": SLACK_TOKEN}, label="Work")
        await connect(owner, "slack", {"bot_token": SECOND_SLACK_TOKEN}, label="Home")
        agent = await owner.create_agent("two-slacks", ["slack"])
    async with mcp_client(live_tendril.url, agent.api_key) as mcp:
        tools = [t for t in (await mcp.list_tools()).tools if t.name not in (WAIT_TOOL, *JOB_TOOLS)]
        assert len(tools) == len(SLACK_TOOLS)  # never one tool per connection
        for tool in tools:
            assert tool.input_schema["properties"]["connection"]["enum"] == ["Work", "Home"]
        await mcp.call_tool(
            "slack_post_message", {"channel": "C01234567", "text": "home", "connection": "Home"}
        )
        await mcp.call_tool("slack_post_message", {"channel": "C01234567", "text": "default"})
        wrong = await mcp.call_tool(
            "slack_post_message", {"channel": "C1", "text": "x", "connection": "Nope"}
        )
    assert [(m["text"], m["token"]) for m in fakes.slack.messages] == [
        ("home", SECOND_SLACK_TOKEN),
        ("default", SLACK_TOKEN),
    ]
    assert wrong.is_error is True
    assert wrong.structured_content is not None
    assert wrong.structured_content["error"]["field"] == "connection"


async def test_agents_never_cross_owners_or_allow_lists(live_tendril: LiveTendril, fakes: Fakes) -> None:
    async with live_tendril.client() as admin:
        await connect(admin, "slack", {"bot_token": SLACK_TOKEN}, label="Admin Slack")
        await connect(admin, "telegram", {"bot_token": TELEGRAM_TOKEN})
        slack_only = await admin.create_agent("slack-only", ["slack"])
        other_key = (await admin.create_key("unused")).api_key
        assert other_key  # a second key of the same owner, unrelated to agents
    # A second owner with an agent allowed everything, but no connections of its own.
    from tests.conftest import _bootstrap_owner

    stranger = await anyio.to_thread.run_sync(_bootstrap_owner, live_tendril.settings, "stranger")
    async with live_tendril.client(stranger.api_key) as other:
        greedy = await other.create_agent("greedy", ["slack", "telegram"])

    async with mcp_client(live_tendril.url, slack_only.api_key) as mcp:
        assert {t.name for t in (await mcp.list_tools()).tools} == {*SLACK_TOOLS, WAIT_TOOL, *JOB_TOOLS}
        with pytest.raises(MCPError, match="Unknown tool: telegram_get_me"):
            await mcp.call_tool("telegram_get_me", {})
        with pytest.raises(MCPError, match="Unknown tool: nonexistent_tool"):
            await mcp.call_tool("nonexistent_tool", {})

    async with mcp_client(live_tendril.url, greedy.api_key) as mcp:
        # The stranger's agent may use Slack, but only its owner's connections: there are none.
        blocked = await mcp.call_tool("slack_post_message", {"channel": "#general", "text": "steal"})
        assert blocked.is_error is True
        assert blocked.structured_content is not None
        assert blocked.structured_content["error"]["code"] == "not_connected"
        named = await mcp.call_tool(
            "slack_post_message", {"channel": "#general", "text": "steal", "connection": "Admin Slack"}
        )
        assert named.is_error is True
    assert fakes.slack.messages == []


async def test_revoked_agent_key_is_refused(live_tendril: LiveTendril) -> None:
    async with live_tendril.client() as owner:
        agent = await owner.create_agent("short-lived", ["slack"])
        async with mcp_client(live_tendril.url, agent.api_key) as mcp:
            assert len((await mcp.list_tools()).tools) == len(SLACK_TOOLS) + 1 + len(
                JOB_TOOLS
            )  # with the wait and job tools
        await owner.delete_agent(agent.agent.id)
    async with httpx.AsyncClient(base_url=live_tendril.url) as http:
        response = await http.post(
            "/mcp",
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            headers={
                "Authorization": f"Bearer {agent.api_key}",
                "Accept": "application/json, text/event-stream",
            },
        )
    assert response.status_code == 401


async def test_allow_list_changes_apply_to_the_next_request(live_tendril: LiveTendril) -> None:
    async with live_tendril.client() as owner:
        agent = await owner.create_agent("growing", ["slack"])
        async with mcp_client(live_tendril.url, agent.api_key) as mcp:
            assert len((await mcp.list_tools()).tools) == len(SLACK_TOOLS) + 1 + len(
                JOB_TOOLS
            )  # with the wait and job tools
            await owner.update_agent(agent.agent.id, allowed_connectors=["telegram"])
            names = [t.name for t in (await mcp.list_tools()).tools]
    assert names == [*TELEGRAM_TOOLS, WAIT_TOOL, *JOB_TOOLS]


async def test_provider_errors_become_actionable_tool_errors(live_tendril: LiveTendril, fakes: Fakes) -> None:
    async with live_tendril.client() as owner:
        connection_id = await connect(owner, "slack", {"bot_token": SLACK_TOKEN})
        agent = await owner.create_agent("unlucky", ["slack"])
        async with mcp_client(live_tendril.url, agent.api_key) as mcp:
            missing = await mcp.call_tool("slack_post_message", {"channel": "#nowhere", "text": "x"})
            fakes.slack.rate_limit_next("chat.postMessage", retry_after=30)
            limited = await mcp.call_tool("slack_post_message", {"channel": "#general", "text": "x"})
            # A read is retried after a short Retry-After and succeeds without the agent noticing.
            fakes.slack.rate_limit_next("conversations.list", retry_after=0)
            retried = await mcp.call_tool("slack_list_channels", {})
            invalid = await mcp.call_tool("slack_post_message", {"channel": "#general"})
            fakes.slack.revoke_token(SLACK_TOKEN)
            revoked = await mcp.call_tool("slack_post_message", {"channel": "#general", "text": "x"})
        connection = await owner.connection(connection_id)

    def error_of(result: object) -> dict[str, object]:
        structured = getattr(result, "structured_content", None)
        assert getattr(result, "is_error", False) is True and structured is not None
        return structured["error"]

    assert error_of(missing)["code"] == "not_found"
    assert error_of(limited) == {
        "code": "rate_limited",
        "message": "Slack rate limit reached; retry after 30s",
        "retryAfter": 30.0,
    }
    assert retried.is_error is False
    assert error_of(invalid)["code"] == "invalid_input"
    assert error_of(invalid)["field"] == "text"
    assert error_of(revoked)["code"] == "not_connected"
    assert connection.status == "needs_reauth"
    assert error_of(revoked)["connectUrl"] == connection.connect_url


async def test_unexpected_failures_are_masked_with_a_logged_reference(
    live_tendril: LiveTendril, fakes: Fakes, caplog: pytest.LogCaptureFixture
) -> None:
    async with live_tendril.client() as owner:
        await connect(owner, "telegram", {"bot_token": TELEGRAM_TOKEN})
        agent = await owner.create_agent("broken", ["telegram"])
    fakes.telegram.break_next("sendMessage", {"ok": True, "result": {"chat": {}}})  # no message_id
    async with mcp_client(live_tendril.url, agent.api_key) as mcp:
        result = await mcp.call_tool("telegram_send_message", {"chat_id": 123456789, "text": "x"})
    assert result.is_error is True
    assert result.structured_content is not None
    reference = result.structured_content["error"]["reference"]
    text = result.content[0].text  # type: ignore[union-attr]
    assert f"ref={reference}" in text and "KeyError" not in text and "Traceback" not in text
    assert any(reference in record.getMessage() and record.exc_info for record in caplog.records)


async def test_protocol_2026_07_28_lists_and_calls(live_tendril: LiveTendril, fakes: Fakes) -> None:
    async with live_tendril.client() as owner:
        await connect(owner, "telegram", {"bot_token": TELEGRAM_TOKEN})
        agent = await owner.create_agent("modern", ["telegram"])
    async with mcp_client(live_tendril.url, agent.api_key, mode="2026-07-28") as mcp:
        assert mcp.protocol_version == "2026-07-28"
        names = [t.name for t in (await mcp.list_tools()).tools]
        sent = await mcp.call_tool("telegram_send_message", {"chat_id": 123456789, "text": "modern hello"})
    assert names == [*TELEGRAM_TOOLS, WAIT_TOOL, *JOB_TOOLS]
    assert sent.structured_content == {"message_id": 1, "chat_id": 123456789, "status": "sent"}


async def test_protocol_2025_11_25_is_negotiated_by_the_sdk_client(live_tendril: LiveTendril) -> None:
    async with live_tendril.client() as owner:
        agent = await owner.create_agent("current", ["telegram"])
    async with mcp_client(live_tendril.url, agent.api_key) as mcp:
        assert mcp.protocol_version == "2025-11-25"
        assert mcp.server_capabilities.tools is not None


async def test_protocol_2025_06_18_over_the_raw_wire(live_tendril: LiveTendril) -> None:
    async with live_tendril.client() as owner:
        agent = await owner.create_agent("older-host", ["slack"])
    headers = {"Authorization": f"Bearer {agent.api_key}", "Accept": "application/json, text/event-stream"}
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "vscode-like", "version": "1.0"},
        },
    }
    async with httpx.AsyncClient(base_url=live_tendril.url, headers=headers, timeout=10) as http:
        response = await http.post("/mcp", json=initialize)
        assert response.status_code == 200
        assert '"protocolVersion":"2025-06-18"' in response.text.replace(" ", "")
        session = {"Mcp-Session-Id": response.headers["mcp-session-id"], "MCP-Protocol-Version": "2025-06-18"}
        await http.post(
            "/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=session
        )
        listed = await http.post(
            "/mcp", json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, headers=session
        )
    assert listed.status_code == 200
    assert "slack_post_message" in listed.text and "slack_list_channels" in listed.text
