"""Agents consume their webhook jobs over MCP (the SDK client, Streamable HTTP, a live server)."""

from __future__ import annotations

import json
import warnings
from collections.abc import AsyncIterator, Iterator
from typing import Any
from uuid import UUID

import anyio
import httpx
import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError

from server.app import build_app
from server.mcp.job_tools import CLAIM_TOOL, COMPLETE_TOOL, FAIL_TOOL, pending_uri
from server.settings import Settings
from tests.conftest import LiveTendril, serving
from tests.fakes.loopback import run_asgi_on_loopback
from tests.support.core import prepared_core
from tests.support.mcp import mcp_client
from tests.support.webhooks import GitHubSigner

pytestmark = pytest.mark.anyio


class Setup:
    def __init__(self, live: LiveTendril, http: httpx.AsyncClient) -> None:
        self.live, self.http = live, http
        self.signer = GitHubSigner()
        self.path = ""

    async def agent(self, name: str, allowed: list[str]) -> tuple[str, str]:
        made = await self.http.post("/api/v1/agents", json={"name": name, "allowedConnectors": allowed})
        assert made.status_code == 201, made.text
        return made.json()["agent"]["id"], made.json()["apiKey"]

    async def endpoint(self, agents: list[str] | None = None) -> None:
        async with prepared_core(self.live.settings) as core:
            owner = await core.identity.owner_named("admin")
            connection, _ = await core.connections.start(owner.id, core.catalog["github"], label="gh")
        body: dict[str, Any] = {"provider": "github", "secrets": self.signer.secrets}
        if agents is not None:
            body["agents"] = agents
        created = await self.http.post(f"/api/v1/connections/{connection.id}/webhooks", json=body)
        assert created.status_code == 201, created.text
        self.path = f"/api/v1/connectors/webhooks/github/{created.json()['endpoint']['id']}"

    async def deliver(self, event_id: str) -> None:
        delivery = self.signer.deliver(event_id)
        sent = await self.http.post(self.path, content=delivery.body, headers=delivery.headers)
        assert sent.status_code == 200, sent.text


@pytest.fixture
def hook_server(settings: Settings) -> Iterator[LiveTendril]:
    """A live Tendril that may hand out its loopback receiver URLs (development setting)."""
    with serving(settings.model_copy(update={"webhook_allow_insecure_urls": True})) as live:
        yield live


@pytest.fixture
async def setup(hook_server: LiveTendril) -> AsyncIterator[Setup]:
    async with httpx.AsyncClient(base_url=hook_server.url, timeout=30) as http:
        http.headers["X-Api-Key"] = hook_server.admin.api_key
        yield Setup(hook_server, http)


def structured(result: types.CallToolResult) -> dict[str, Any]:
    assert result.is_error is False, result.content
    assert result.structured_content is not None
    return result.structured_content


async def test_an_agent_hears_of_claims_and_completes_its_job_and_nobody_else_sees_it(setup: Setup) -> None:
    worker_id, worker_key = await setup.agent("worker", ["github"])
    _other_id, other_key = await setup.agent("bystander", ["github", "slack"])
    await setup.endpoint(agents=[worker_id])
    arrived = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            arrived.set()

    async with mcp_client(setup.live.url, worker_key, message_handler=on_message) as mcp:
        uri = pending_uri(UUID(worker_id))
        assert uri in [str(r.uri) for r in (await mcp.list_resources()).resources]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            await mcp.subscribe_resource(uri)
        await setup.deliver("delivery-1")
        with anyio.fail_after(10):
            await arrived.wait()
        pending = json.loads((await mcp.read_resource(uri)).contents[0].text)  # type: ignore[union-attr]
        [job] = pending["jobs"]
        assert job["eventKey"] == "github.issues.opened" and job["status"] == "queued"

        claimed = structured(await mcp.call_tool(CLAIM_TOOL, {"limit": 5, "lease_seconds": 60}))
        [mine] = claimed["jobs"]
        assert mine["id"] == job["id"] and mine["payload"]["issue"]["number"] == 7 and mine["attempts"] == 1
        assert structured(await mcp.call_tool(CLAIM_TOOL, {}))["jobs"] == []  # leased
        done = structured(
            await mcp.call_tool(COMPLETE_TOOL, {"job_id": mine["id"], "result": {"replied": True}})
        )
        assert done["status"] == "succeeded"
        again = await mcp.call_tool(COMPLETE_TOOL, {"job_id": mine["id"]})
        assert again.is_error is True  # no longer leased to anyone

    async with mcp_client(setup.live.url, other_key) as other:
        assert structured(await other.call_tool(CLAIM_TOOL, {"limit": 50}))["jobs"] == []
        with pytest.raises(MCPError, match="unknown resource"):
            await other.read_resource(uri)
        refused = await other.call_tool(FAIL_TOOL, {"job_id": job["id"], "error": "not mine"})
        assert refused.is_error is True
    listed = (await setup.http.get("/api/v1/jobs", params={"status": "succeeded"})).json()["jobs"]
    assert [(j["id"], j["result"]) for j in listed] == [(job["id"], {"replied": True})]


async def test_a_failed_job_is_retried_and_an_agent_that_no_longer_allows_the_provider_stops_seeing_it(
    setup: Setup,
) -> None:
    agent_id, key = await setup.agent("flaky", ["github"])
    await setup.endpoint()
    await setup.deliver("delivery-2")
    async with mcp_client(setup.live.url, key) as mcp:
        [job] = structured(await mcp.call_tool(CLAIM_TOOL, {}))["jobs"]
        failed = structured(
            await mcp.call_tool(FAIL_TOOL, {"job_id": job["id"], "error": "API down", "retry": True})
        )
        assert failed["status"] == "failed"
        dead = await setup.http.get("/api/v1/jobs", params={"status": "failed", "agent": agent_id})
        assert [j["lastError"] for j in dead.json()["jobs"]] == ["API down"]
    changed = await setup.http.patch(f"/api/v1/agents/{agent_id}", json={"allowedConnectors": ["slack"]})
    assert changed.status_code == 200, changed.text
    async with mcp_client(setup.live.url, key) as mcp:
        names = {t.name for t in (await mcp.list_tools()).tools}
        assert CLAIM_TOOL in names  # slack is a webhook provider too
        assert structured(await mcp.call_tool(CLAIM_TOOL, {"limit": 50}))["jobs"] == []


async def test_a_dead_job_is_retried_from_the_api(setup: Setup) -> None:
    _agent_id, key = await setup.agent("giver-up", ["github"])
    await setup.endpoint()
    await setup.deliver("delivery-3")
    async with mcp_client(setup.live.url, key) as mcp:
        [job] = structured(await mcp.call_tool(CLAIM_TOOL, {}))["jobs"]
        dead = structured(
            await mcp.call_tool(FAIL_TOOL, {"job_id": job["id"], "error": "bad data", "retry": False})
        )
        assert dead["status"] == "dead"
        retried = await setup.http.post(f"/api/v1/jobs/{job['id']}/retry")
        assert retried.status_code == 200 and retried.json()["job"]["status"] == "queued"
        assert (await setup.http.post(f"/api/v1/jobs/{job['id']}/retry")).status_code == 409
        [again] = structured(await mcp.call_tool(CLAIM_TOOL, {}))["jobs"]
        assert again["id"] == job["id"]


async def test_a_subscriber_on_one_replica_hears_of_a_delivery_another_replica_took(setup: Setup) -> None:
    """Two replicas on one PostgreSQL database: the delivery lands on the first, the agent's MCP
    session lives on the second, and a NOTIFY carries the news across (storage.notices)."""
    if not setup.live.settings.resolved_database_url.startswith("postgresql"):
        pytest.skip("replicas share PostgreSQL; SQLite serves one process")
    worker_id, worker_key = await setup.agent("replica-worker", ["github"])
    await setup.endpoint(agents=[worker_id])
    arrived = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            arrived.set()

    with run_asgi_on_loopback(build_app(setup.live.settings), lifespan="on") as second_replica:
        async with mcp_client(second_replica, worker_key, message_handler=on_message) as mcp:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MCPDeprecationWarning)
                await mcp.subscribe_resource(pending_uri(UUID(worker_id)))
            await setup.deliver("delivery-on-the-first-replica")
            with anyio.fail_after(10):
                await arrived.wait()
            [job] = structured(await mcp.call_tool(CLAIM_TOOL, {}))["jobs"]
            assert job["eventKey"] == "github.issues.opened"
