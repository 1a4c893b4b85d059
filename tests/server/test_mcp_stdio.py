"""`tendril mcp`: the same tools over stdio, for hosts that launch servers as subprocesses."""

from __future__ import annotations

import sys

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.shared.exceptions import MCPError

from server.mcp.connect_flow import WAIT_TOOL
from server.mcp.job_tools import JOB_TOOLS
from server.settings import Settings
from tests.conftest import SLACK_TOKEN, Fakes, Tendril, child_env
from tests.support.catalog import SLACK_TOOLS

pytestmark = pytest.mark.anyio


def stdio_server(settings: Settings, agent_key: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "server.cli", "mcp"],
        env=child_env(settings, TENDRIL_AGENT_KEY=agent_key),
    )


async def test_stdio_agent_lists_and_calls_slack_with_the_stored_token(
    tendril: Tendril, settings: Settings, fakes: Fakes
) -> None:
    owner = await tendril.new_owner()
    client = tendril.client(owner.api_key)
    started = await client.create_connection("slack")
    await client.submit_credentials(started.connection.id, {"bot_token": SLACK_TOKEN})
    agent = await client.create_agent("desktop", ["slack"])

    async with Client(stdio_server(settings, agent.api_key), mode="legacy", cache=None) as mcp:
        names = [tool.name for tool in (await mcp.list_tools()).tools]
        result = await mcp.call_tool("slack_post_message", {"channel": "#general", "text": "over stdio"})
        with pytest.raises(MCPError, match="Unknown tool"):
            await mcp.call_tool("telegram_get_me", {})

    assert names == [*SLACK_TOOLS, WAIT_TOOL, *JOB_TOOLS]
    assert result.is_error is False
    assert result.structured_content is not None and result.structured_content["status"] == "sent"
    assert fakes.slack.messages[-1]["text"] == "over stdio"
    assert fakes.slack.messages[-1]["token"] == SLACK_TOKEN


async def test_stdio_refuses_an_invalid_agent_key(tendril: Tendril, settings: Settings) -> None:
    with anyio.fail_after(60):
        completed = await anyio.run_process(
            [sys.executable, "-m", "server.cli", "mcp"],
            env=child_env(settings, TENDRIL_AGENT_KEY="tdl_agent_not-a-real-key"),
            check=False,
        )
    assert completed.returncode == 2
    assert b"not a valid agent key" in completed.stderr
    assert completed.stdout == b""  # stdout is reserved for the protocol
