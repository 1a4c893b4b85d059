"""Agents and workflows over MCP (the SDK client, Streamable HTTP, a live server, both engines):
an agent lists and runs only the workflows it may (public, every connector allowed), follows an
execution through its resource, and reads only the executions it started."""

from __future__ import annotations

import json
import warnings
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError

from server.mcp.workflow_tools import GET_TOOL, LIST_TOOL, RUN_TOOL
from tests.conftest import LiveTendril
from tests.support.mcp import mcp_client

pytestmark = pytest.mark.anyio

SHORT = [
    {"name": "wait", "type": "delay", "config": {"seconds": 1}},
    {"name": "check", "type": "condition", "config": {"if": "input.n > 1"}},
]
USES_HTTP = [
    {"name": "fetch", "type": "http_request", "config": {"method": "GET", "url": "https://example.com/x"}}
]


def structured(result: types.CallToolResult) -> dict[str, Any]:
    assert result.is_error is False, result.content
    assert result.structured_content is not None
    return result.structured_content


def refused(result: types.CallToolResult) -> str:
    assert result.is_error is True, result.content
    return json.dumps((result.structured_content or {}).get("error"))


@pytest.fixture
async def http(live_tendril: LiveTendril) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live_tendril.url, timeout=30) as client:
        client.headers["X-Api-Key"] = live_tendril.admin.api_key
        yield client


async def workflow(http: httpx.AsyncClient, name: str, steps: list[dict[str, Any]], public: bool) -> str:
    made = await http.post(
        "/api/v1/workflows", json={"name": name, "definition": {"steps": steps}, "isPublic": public}
    )
    assert made.status_code == 201, made.text
    return made.json()["id"]


async def agent(http: httpx.AsyncClient, name: str, allowed: list[str]) -> str:
    made = await http.post("/api/v1/agents", json={"name": name, "allowedConnectors": allowed})
    assert made.status_code == 201, made.text
    return made.json()["apiKey"]


@pytest.mark.timeout(90)
async def test_an_agent_runs_the_workflows_it_may_and_follows_its_execution_to_the_end(
    live_tendril: LiveTendril, http: httpx.AsyncClient
) -> None:
    # Before the owner has any workflow, agents are not offered the workflow tools.
    async with mcp_client(live_tendril.url, await agent(http, "early", ["telegram"])) as mcp:
        assert not {LIST_TOOL, RUN_TOOL, GET_TOOL} & {t.name for t in (await mcp.list_tools()).tools}
    runnable = await workflow(http, "short", SHORT, public=True)
    needs_http = await workflow(http, "fetches", USES_HTTP, public=True)
    private = await workflow(http, "private", SHORT, public=False)
    key = await agent(http, "runner", ["slack"])
    other_key = await agent(http, "other", ["slack", "http"])
    ended = anyio.Event()
    heard: list[str] = []

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            heard.append(str(message.params.uri))
            ended.set()

    async with mcp_client(live_tendril.url, key, message_handler=on_message) as mcp:
        names = {t.name for t in (await mcp.list_tools()).tools}
        assert {LIST_TOOL, RUN_TOOL, GET_TOOL} <= names
        listed = structured(await mcp.call_tool(LIST_TOOL, {}))["workflows"]
        assert [w["id"] for w in listed] == [runnable]  # not the one using http, not the private one
        assert listed[0]["steps"] == [
            {"name": "wait", "type": "delay"},
            {"name": "check", "type": "condition"},
        ]
        for hidden in (needs_http, private, "not-an-id"):
            answer = refused(await mcp.call_tool(RUN_TOOL, {"workflow_id": hidden, "input": {"n": 2}}))
            assert "not_found" in answer

        started = structured(await mcp.call_tool(RUN_TOOL, {"workflow_id": runnable, "input": {"n": 2}}))
        uri = started["resource"]
        assert uri == f"tendril://executions/{started['executionId']}" and started["status"] == "pending"
        templates = [t.uri_template for t in (await mcp.list_resource_templates()).resource_templates]
        assert "tendril://executions/{execution}" in templates
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            await mcp.subscribe_resource(uri)
        with anyio.fail_after(30):
            await ended.wait()
        assert heard == [uri]
        shown = json.loads((await mcp.read_resource(uri)).contents[0].text)  # type: ignore[union-attr]
        assert shown["status"] == "completed" and shown["input"] == {"n": 2}
        assert [(s["name"], s["status"]) for s in shown["steps"]] == [
            ("wait", "completed"),
            ("check", "completed"),
        ]
        read = structured(await mcp.call_tool(GET_TOOL, {"execution_id": started["executionId"]}))
        assert read["status"] == "completed" and read["executionId"] == started["executionId"]

        # A repeated idempotency key finds the execution it started.
        first = structured(await mcp.call_tool(RUN_TOOL, {"workflow_id": runnable, "idempotency_key": "k1"}))
        again = structured(await mcp.call_tool(RUN_TOOL, {"workflow_id": runnable, "idempotency_key": "k1"}))
        assert first["executionId"] == again["executionId"]

    # The owner's executions started over REST are not the agent's, nor is one another agent started.
    by_owner = (await http.post(f"/api/v1/workflows/{runnable}/execute", json={"input": {"n": 1}})).json()
    execution = (await http.get(f"/api/v1/executions/{started['executionId']}")).json()
    assert execution["startedBy"] == "agent" and execution["agentId"]
    async with mcp_client(live_tendril.url, key) as mcp:
        assert "not_found" in refused(
            await mcp.call_tool(GET_TOOL, {"execution_id": by_owner["executionId"]})
        )
        with pytest.raises(MCPError, match="unknown resource"):
            await mcp.read_resource(f"tendril://executions/{by_owner['executionId']}")
    async with mcp_client(live_tendril.url, other_key) as other:
        assert {w["id"] for w in structured(await other.call_tool(LIST_TOOL, {}))["workflows"]} == {
            runnable,
            needs_http,
        }
        assert "not_found" in refused(
            await other.call_tool(GET_TOOL, {"execution_id": started["executionId"]})
        )
        with pytest.raises(MCPError, match="unknown resource"):
            await other.read_resource(uri)
        with warnings.catch_warnings(), pytest.raises(MCPError, match="unknown resource"):
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            await other.subscribe_resource(uri)
    with anyio.fail_after(10):  # the audit trail is written in batches, every half second
        while True:
            audited = (await http.get("/api/v1/audit", params={"kind": "tool.call"})).json()
            if RUN_TOOL in json.dumps(audited):
                break
            await anyio.sleep(0.1)
