"""The isolation matrix over MCP: every method the server answers (read from its handler table),
driven by Bob's agent (another owner, allowed every connector) and by an agent of Alice's allowed
only Slack, at Alice's connection, file, jobs and agent. Neither may see or touch any of them.
A method the matrix has no driver for fails it until one is written."""

from __future__ import annotations

import json
import warnings
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import anyio
import httpx
import mcp_types as types
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError

from server.app import build_mcp
from server.mcp.caller import caller_from_http
from server.mcp.workflow_tools import GET_TOOL, LIST_TOOL, RUN_TOOL, execution_uri
from server.settings import Settings
from tests.conftest import TELEGRAM_TOKEN, Fakes, LiveTendril, serving
from tests.support.core import prepared_core
from tests.support.mcp import mcp_client
from tests.support.webhooks import GitHubSigner

pytestmark = pytest.mark.anyio

SENTINEL = "AliceSentinel"


@dataclass
class McpWorld:
    live: LiveTendril
    alice_key: str
    bob_agent: str  # Bob's agent key: another owner, every connector allowed
    narrow_agent: str  # an agent of Alice's allowed only slack
    ids: dict[str, str]

    def leaked(self, text: str) -> list[str]:
        return [v for v in (SENTINEL, TELEGRAM_TOKEN, *self.ids.values()) if v in text]


@pytest.fixture
def live(settings: Settings) -> Iterator[LiveTendril]:
    with serving(settings.model_copy(update={"webhook_allow_insecure_urls": True})) as served:
        yield served


@pytest.fixture
async def world(live: LiveTendril, fakes: Fakes) -> McpWorld:
    async with httpx.AsyncClient(base_url=live.url, timeout=30) as http:
        http.headers["X-Api-Key"] = live.admin.api_key
        made = (
            await http.post(
                "/api/v1/connections", json={"connectorSlug": "telegram", "label": f"{SENTINEL} TG"}
            )
        ).json()
        connection = made["connection"]["id"]
        await http.post(f"/api/v1/connections/{connection}/credentials", json={"bot_token": TELEGRAM_TOKEN})
        file = (
            await http.post("/connectors", json={"name": f"{SENTINEL} File", "type": "local_file"})
        ).json()
        await http.post(f"/connectors/{file['id']}:upload", content=f"{SENTINEL} content\n".encode())
        agent = (
            await http.post(
                "/api/v1/agents",
                json={"name": "alice-agent", "allowedConnectors": ["telegram", "github", "local_file"]},
            )
        ).json()
        narrow = (
            await http.post("/api/v1/agents", json={"name": "narrow", "allowedConnectors": ["slack"]})
        ).json()
        github = (await http.post("/api/v1/connections", json={"connectorSlug": "github"})).json()
        signer = GitHubSigner()
        hooked = (
            await http.post(
                f"/api/v1/connections/{github['connection']['id']}/webhooks",
                json={"provider": "github", "secrets": signer.secrets},
            )
        ).json()
        delivery = signer.deliver(f"{SENTINEL}-event")
        receiver = (
            "/api/v1/connectors/webhooks/" + hooked["endpoint"]["url"].split("/connectors/webhooks/")[1]
        )
        assert (await http.post(receiver, content=delivery.body, headers=delivery.headers)).status_code == 200
        [job] = (await http.get("/api/v1/jobs")).json()["jobs"]
        # A public workflow of Alice's that only her telegram agent may run, and an execution it started.
        step = {
            "connectionId": connection,
            "action": "send_message",
            "parameters": {"chat_id": 1, "text": "hi"},
        }
        workflow = (
            await http.post(
                "/api/v1/workflows",
                json={
                    "name": f"{SENTINEL} workflow",
                    "definition": {"steps": [{"name": "notify", "type": "action", "config": step}]},
                    "isPublic": True,
                },
            )
        ).json()
    async with mcp_client(live.url, agent["apiKey"]) as alices:
        started = (await alices.call_tool(RUN_TOOL, {"workflow_id": workflow["id"]})).structured_content
        assert started is not None, "Alice's agent could not run her workflow"
    async with prepared_core(live.settings) as core:
        bob = await core.identity.create_owner("bob-mcp")
        made_agent = await core.identity.create_agent(
            bob.id, name="bob-agent", allowed_connectors=["telegram", "github", "local_file", "gcs", "slack"]
        )
    ids = {
        "connection": connection,
        "file": file["connection_id"],
        "agent": agent["agent"]["id"],
        "job": job["id"],
        "workflow": workflow["id"],
        "execution": started["executionId"],
    }
    return McpWorld(live, live.admin.api_key, made_agent.plaintext_key, narrow["apiKey"], ids)


Driver = Callable[[Client, McpWorld, str], Awaitable[list[str]]]


async def _texts(*calls: Awaitable[Any]) -> list[str]:
    """Each call's answer (or the error it raised) as text, for the leak check."""
    texts = []
    for call in calls:
        try:
            answer = await call
            texts.append(
                answer.model_dump_json()
                if hasattr(answer, "model_dump_json")
                else json.dumps(answer, default=str)
            )
        except MCPError as error:
            texts.append(error.error.model_dump_json())
    return texts


def _file(world: McpWorld) -> str:
    return f"tendril://files/{world.ids['file']}"


def _execution(world: McpWorld) -> str:
    return execution_uri(UUID(world.ids["execution"]))


def _jobs(world: McpWorld) -> str:
    return f"tendril://jobs/{world.ids['agent']}/pending"


async def ping(mcp: Client, world: McpWorld, key: str) -> list[str]:
    return await _texts(mcp.send_ping())


async def list_tools(mcp: Client, world: McpWorld, key: str) -> list[str]:
    return await _texts(mcp.list_tools())


async def call_tool(mcp: Client, world: McpWorld, key: str) -> list[str]:
    calls = [
        mcp.call_tool("telegram_get_me", {}),  # Bob: his own (pending) connection; narrow: no such tool
        mcp.call_tool(
            "tendril_wait_for_connection", {"connection_id": world.ids["connection"], "timeout_seconds": 1}
        ),
        mcp.call_tool("tendril_claim_jobs", {"limit": 50}),
        mcp.call_tool("tendril_complete_job", {"job_id": world.ids["job"]}),
        mcp.call_tool("tendril_fail_job", {"job_id": world.ids["job"], "error": "x", "retry": False}),
        mcp.call_tool(LIST_TOOL, {}),
        mcp.call_tool(RUN_TOOL, {"workflow_id": world.ids["workflow"], "input": {"by": "intruder"}}),
        mcp.call_tool(GET_TOOL, {"execution_id": world.ids["execution"]}),
    ]
    texts = await _texts(*calls)
    assert not any('"status":"running"' in t or '"status":"dead"' in t for t in texts), texts
    # An id the caller sent may be echoed back ("job X is not one you hold"); nothing else of Alice's.
    given = (world.ids["job"], world.ids["connection"], world.ids["workflow"], world.ids["execution"])
    return [_without(text, given) for text in texts]


def _without(text: str, values: tuple[str, ...]) -> str:
    for value in values:
        text = text.replace(value, "<given>")
    return text


async def list_resources(mcp: Client, world: McpWorld, key: str) -> list[str]:
    return await _texts(mcp.list_resources())


async def list_templates(mcp: Client, world: McpWorld, key: str) -> list[str]:
    return await _texts(mcp.list_resource_templates())


async def read_resource(mcp: Client, world: McpWorld, key: str) -> list[str]:
    for uri in (_file(world), _jobs(world), _execution(world)):
        with pytest.raises(MCPError, match="unknown resource"):
            await mcp.read_resource(uri)
    return []


async def subscribe(mcp: Client, world: McpWorld, key: str) -> list[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MCPDeprecationWarning)
        for uri in (_file(world), _jobs(world), _execution(world)):
            with pytest.raises(MCPError, match="unknown resource"):
                await mcp.subscribe_resource(uri)
    return []


async def unsubscribe(mcp: Client, world: McpWorld, key: str) -> list[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MCPDeprecationWarning)
        return await _texts(mcp.unsubscribe_resource(_file(world)))


async def complete(mcp: Client, world: McpWorld, key: str) -> list[str]:
    ref = types.ResourceTemplateReference(uri="tendril://files/{connection}{?offset,limit}")
    answer = await mcp.complete(ref, {"name": "connection", "value": ""})
    assert answer.completion.values == []
    return [answer.model_dump_json()]


async def set_level(mcp: Client, world: McpWorld, key: str) -> list[str]:
    with warnings.catch_warnings():  # 2025 clients still send it; 2026-07-28 deprecates it
        warnings.simplefilter("ignore", MCPDeprecationWarning)
        return await _texts(mcp.set_logging_level("debug"))


async def discover(mcp: Client, world: McpWorld, key: str) -> list[str]:
    return [json.dumps(mcp.server_info.model_dump(mode="json")) if mcp.server_info else ""]


async def listen(mcp: Client, world: McpWorld, key: str) -> list[str]:
    """2026-07-28: listening to Alice's file hears nothing of her re-upload."""
    alice = httpx.AsyncClient(base_url=world.live.url, headers={"X-Api-Key": world.alice_key})
    modern_client = mcp_client(world.live.url, key, mode="2026-07-28")
    async with (
        alice,
        modern_client as modern,
        modern.listen(resource_subscriptions=[_file(world)]) as subscription,
    ):
        ref = f"conn_{world.ids['file'].replace('-', '')}"
        uploaded = await alice.post(f"/connectors/{ref}:upload", content=f"{SENTINEL} v2\n".encode())
        assert uploaded.status_code == 200
        with anyio.move_on_after(1.5) as waited:
            event = await anext(aiter(subscription))
            pytest.fail(f"heard of Alice's file: {event}")
        assert waited.cancelled_caught
    return []


DRIVERS: dict[str, Driver] = {
    "ping": ping,
    "server/discover": discover,
    "tools/list": list_tools,
    "tools/call": call_tool,
    "resources/list": list_resources,
    "resources/templates/list": list_templates,
    "resources/read": read_resource,
    "resources/subscribe": subscribe,
    "resources/unsubscribe": unsubscribe,
    "subscriptions/listen": listen,
    "completion/complete": complete,
    "logging/setLevel": set_level,
}


async def test_every_mcp_method_keeps_alice_s_things_from_another_owner_and_a_narrow_agent(
    world: McpWorld,
) -> None:
    async with prepared_core(world.live.settings) as core:
        methods = set(build_mcp(core, caller_from_http).server._request_handlers)
    assert methods - set(DRIVERS) == set(), "write a driver for each new MCP method"
    problems = []
    for who, key in (("Bob's agent", world.bob_agent), ("the narrow agent", world.narrow_agent)):
        async with mcp_client(world.live.url, key) as mcp:
            for method in sorted(methods):
                with warnings.catch_warnings():  # methods a newer protocol retires are still answered
                    warnings.simplefilter("ignore", MCPDeprecationWarning)
                    texts = await DRIVERS[method](mcp, world, key)
                for text in texts:
                    if leaked := world.leaked(text):
                        problems.append(f"{method} as {who}: saw {leaked}")
        if who == "the narrow agent":
            async with mcp_client(world.live.url, key) as mcp:
                names = {tool.name for tool in (await mcp.list_tools()).tools}
                # Slack's actions, waiting for a connection, and Slack's events as jobs: nothing else.
                assert all(n.startswith(("slack_", "tendril_")) for n in names), names
    assert problems == []
    async with httpx.AsyncClient(base_url=world.live.url, headers={"X-Api-Key": world.alice_key}) as http:
        [job] = (await http.get("/api/v1/jobs")).json()["jobs"]
        connection = (await http.get(f"/api/v1/connections/{world.ids['connection']}")).json()
    assert (job["status"], job["attempts"]) == ("queued", 0)  # nobody claimed, completed or failed it
    assert connection["status"] == "active"
    async with httpx.AsyncClient(base_url=world.live.url, headers={"X-Api-Key": world.alice_key}) as http:
        executions = (await http.get("/api/v1/executions")).json()["executions"]
    assert [e["id"] for e in executions] == [world.ids["execution"]]  # nobody ran her workflow
