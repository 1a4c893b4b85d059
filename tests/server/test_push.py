"""Push delivery to an agent's URL: signed as the Integration Layer documents, retried through 500s."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from server.settings import Settings
from tests.conftest import LiveTendril, serving
from tests.fakes.loopback import run_asgi_on_loopback
from tests.support.core import prepared_core
from tests.support.webhooks import GitHubSigner

pytestmark = pytest.mark.anyio
SECRET = "push-secret-Canary-0123456789abcdef"


@dataclass
class AgentReceiver:
    """The agent's side: checks every signature, fails the first `failures` deliveries with 500."""

    failures: int = 0
    accepted: list[dict[str, Any]] = field(default_factory=list)
    refused_signatures: int = 0
    attempts: int = 0

    async def endpoint(self, request: Request) -> Response:
        body = await request.body()
        expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(request.headers.get("x-webhook-signature", ""), expected):
            self.refused_signatures += 1
            return JSONResponse({"error": "bad signature"}, status_code=401)
        self.attempts += 1
        if self.attempts <= self.failures:
            return JSONResponse({"error": "try later"}, status_code=500)
        self.accepted.append({"headers": dict(request.headers), "body": json.loads(body)})
        return JSONResponse({"ok": True})


@pytest.fixture
def receiver() -> Iterator[tuple[AgentReceiver, str]]:
    agent_side = AgentReceiver(failures=2)
    with run_asgi_on_loopback(
        Starlette(routes=[Route("/hook", agent_side.endpoint, methods=["POST"])])
    ) as url:
        yield agent_side, f"{url}/hook"


@pytest.fixture
def pushing(settings: Settings) -> Iterator[LiveTendril]:
    options = {
        "webhook_allow_insecure_urls": True,
        "push_allowed_hosts": "127.0.0.1",  # the agent's receiver is on loopback
        "push_poll_seconds": 0.2,
        "job_max_attempts": 4,
        "job_retry_base_seconds": 0.1,
    }
    with serving(settings.model_copy(update=options)) as live:
        yield live


@pytest.fixture
async def http(pushing: LiveTendril) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=pushing.url, timeout=30) as client:
        client.headers["X-Api-Key"] = pushing.admin.api_key
        yield client


async def github_endpoint(live: LiveTendril, http: httpx.AsyncClient, signer: GitHubSigner) -> str:
    async with prepared_core(live.settings) as core:
        owner = await core.identity.owner_named("admin")
        connection, _ = await core.connections.start(owner.id, core.catalog["github"], label="gh")
    created = await http.post(
        f"/api/v1/connections/{connection.id}/webhooks",
        json={"provider": "github", "secrets": signer.secrets},
    )
    assert created.status_code == 201, created.text
    return f"/api/v1/connectors/webhooks/github/{created.json()['endpoint']['id']}"


async def wait_for_status(http: httpx.AsyncClient, status: str, seconds: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        jobs = (await http.get("/api/v1/jobs", params={"status": status})).json()["jobs"]
        if jobs:
            return jobs[0]
        await anyio.sleep(0.1)
    raise AssertionError(f"no {status} job after {seconds}s: {(await http.get('/api/v1/jobs')).json()}")


async def test_jobs_are_pushed_signed_and_retried_through_500s(
    pushing: LiveTendril, http: httpx.AsyncClient, receiver: tuple[AgentReceiver, str]
) -> None:
    agent_side, url = receiver
    made = await http.post("/api/v1/agents", json={"name": "pushed", "allowedConnectors": ["github"]})
    agent_id = made.json()["agent"]["id"]
    setting = await http.put(f"/api/v1/agents/{agent_id}/delivery", json={"url": url, "secret": SECRET})
    assert setting.status_code == 200 and "deliverySecret" not in setting.json()
    signer = GitHubSigner()
    path = await github_endpoint(pushing, http, signer)
    delivery = signer.deliver("push-1")
    assert (await http.post(path, content=delivery.body, headers=delivery.headers)).status_code == 200

    done = await wait_for_status(http, "succeeded")
    assert done["attempts"] == 3 and done["result"] == {"pushed": 200}
    [pushed] = agent_side.accepted
    assert agent_side.refused_signatures == 0 and agent_side.attempts == 3
    assert pushed["headers"]["x-webhook-event"] == "github.issues.opened"
    assert pushed["headers"]["x-webhook-delivery"] == done["id"]
    assert pushed["body"]["event"] == "github.issues.opened" and pushed["body"]["timestamp"].endswith("Z")
    assert pushed["body"]["data"]["payload"]["issue"]["number"] == 7


async def test_a_receiver_that_never_accepts_leaves_a_dead_letter(
    pushing: LiveTendril, http: httpx.AsyncClient, receiver: tuple[AgentReceiver, str]
) -> None:
    agent_side, url = receiver
    agent_side.failures = 100
    made = await http.post("/api/v1/agents", json={"name": "down", "allowedConnectors": ["github"]})
    agent_id = made.json()["agent"]["id"]
    generated = await http.put(f"/api/v1/agents/{agent_id}/delivery", json={"url": url})
    assert len(generated.json()["deliverySecret"]) >= 32  # shown once; this receiver checks another
    await http.put(f"/api/v1/agents/{agent_id}/delivery", json={"url": url, "secret": SECRET})
    signer = GitHubSigner()
    path = await github_endpoint(pushing, http, signer)
    delivery = signer.deliver("push-2")
    await http.post(path, content=delivery.body, headers=delivery.headers)
    dead = await wait_for_status(http, "dead", seconds=40)
    assert dead["attempts"] == 4 and "answered 500" in dead["lastError"]
    assert agent_side.accepted == []


@pytest.fixture
def unguarded(settings: Settings) -> Iterator[LiveTendril]:
    """No TENDRIL_PUSH_ALLOWED_HOSTS: loopback delivery URLs must be refused."""
    with serving(
        settings.model_copy(update={"webhook_allow_insecure_urls": True, "push_poll_seconds": 0.2})
    ) as live:
        yield live


async def test_delivery_urls_to_internal_addresses_are_never_called(
    unguarded: LiveTendril, receiver: tuple[AgentReceiver, str]
) -> None:
    agent_side, url = receiver
    async with httpx.AsyncClient(
        base_url=unguarded.url, headers={"X-Api-Key": unguarded.admin.api_key}
    ) as http:
        made = await http.post("/api/v1/agents", json={"name": "ssrf", "allowedConnectors": ["github"]})
        await http.put(
            f"/api/v1/agents/{made.json()['agent']['id']}/delivery", json={"url": url, "secret": SECRET}
        )
        signer = GitHubSigner()
        path = await github_endpoint(unguarded, http, signer)
        delivery = signer.deliver("push-3")
        await http.post(path, content=delivery.body, headers=delivery.headers)
        dead = await wait_for_status(http, "dead")
    assert "loopback" in dead["lastError"] and agent_side.attempts == 0
