"""The MCP Inspector CLI, a client we did not write, against a real `tendril serve` process."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from clients import TendrilClient
from connectors import load_catalog
from server.mcp.job_tools import JOB_TOOLS
from tests.conftest import SLACK_TOKEN
from tests.e2e.conftest import LiveProcess, NodeRunner, NodeTools, describe
from tests.support.catalog import SLACK_TOOLS


def inspect(
    run_node: NodeRunner, clis: NodeTools, live: LiveProcess, *args: str, exit_code: int = 0
) -> dict[str, Any]:
    """Run one Inspector method as the agent; returns its JSON envelope after checking the exit code."""
    argv = [
        *clis.inspector,
        live.mcp_url,
        "--header",
        f"Authorization: Bearer {live.agent_key}",
        "--format",
        "json",
        *args,
    ]
    result = run_node(argv)
    assert result.returncode == exit_code, describe(result) + live.tendril.output()
    return json.loads(result.stdout)


def test_tools_list_shows_exactly_the_slack_tools_with_portable_schemas(
    run_node: NodeRunner, node_clis: NodeTools, live_process: LiveProcess
) -> None:
    envelope = inspect(run_node, node_clis, live_process, "--method", "tools/list", "--strict")
    names = sorted(tool["name"] for tool in envelope["result"]["tools"])
    # Slack sends webhooks, so a Slack agent also gets the tools that work through its jobs.
    assert names == sorted([*SLACK_TOOLS, *JOB_TOOLS, "tendril_wait_for_connection"])
    # --strict puts every finding, warnings included, into the envelope; errors would exit 6.
    assert "schemaFindings" not in envelope, envelope["schemaFindings"]


def test_tools_call_posts_through_the_fake_slack_with_the_stored_token(
    run_node: NodeRunner, node_clis: NodeTools, live_process: LiveProcess
) -> None:
    slack = live_process.fakes.slack
    before = len(slack.messages)
    envelope = inspect(
        run_node,
        node_clis,
        live_process,
        "--method",
        "tools/call",
        "--tool-name",
        "slack_post_message",
        "--tool-arg",
        "channel=#general",
        "--tool-arg",
        "text=hi",
    )
    result = envelope["result"]
    assert result["isError"] is False
    assert result["structuredContent"]["status"] == "sent"
    assert result["structuredContent"]["channel"] == "C01234567"
    [sent] = slack.messages[before:]
    assert (sent["channel"], sent["text"], sent["token"]) == ("C01234567", "hi", SLACK_TOKEN)


def test_a_provider_error_reaches_the_inspector_as_a_readable_error_result(
    run_node: NodeRunner, node_clis: NodeTools, live_process: LiveProcess
) -> None:
    envelope = inspect(
        run_node,
        node_clis,
        live_process,
        "--method",
        "tools/call",
        "--tool-name",
        "slack_post_message",
        "--tool-arg",
        "channel=#nowhere",
        "--tool-arg",
        "text=hi",
        exit_code=5,  # the Inspector's exit code for a tool that answered isError
    )
    result = envelope["result"]
    assert result["isError"] is True
    assert result["content"][0]["text"] == "Slack says channel_not_found"
    assert result["structuredContent"]["error"]["code"] == "not_found"


def test_no_secret_reaches_the_process_output(live_process: LiveProcess) -> None:
    """Runs last in the module, after the tools were listed and called."""
    output = live_process.tendril.output()
    for secret in (SLACK_TOKEN, live_process.admin.api_key, live_process.agent_key):
        assert secret not in output


def test_the_whole_catalog_lists_with_portable_schemas(
    run_node: NodeRunner, node_clis: NodeTools, live_process: LiveProcess
) -> None:
    """Inspector --strict over every connector's tools, as an agent allowed them all."""
    catalog = load_catalog()

    async def everything_agent() -> str:
        async with TendrilClient(live_process.tendril.url, api_key=live_process.admin.api_key) as client:
            return (await client.create_agent("catalog-agent", list(catalog))).api_key

    key = asyncio.run(everything_agent())
    argv = [*node_clis.inspector, live_process.mcp_url, "--header", f"Authorization: Bearer {key}"]
    result = run_node([*argv, "--format", "json", "--method", "tools/list", "--strict"])
    assert result.returncode == 0, describe(result)
    envelope = json.loads(result.stdout)
    names = {tool["name"] for tool in envelope["result"]["tools"]}
    expected = {a.tool_name for c in catalog.values() for a in c.actions.values()}
    assert expected <= names and len(expected) >= len(SLACK_TOOLS)
    assert "schemaFindings" not in envelope, envelope["schemaFindings"]
