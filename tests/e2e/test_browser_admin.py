"""/admin/connector-events in real headless Chromium: an owner signs in and sees their endpoints,
delivery counts, event keys and job states (never another owner's), retries a dead letter and deletes
an endpoint."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from uuid import UUID

import httpx
import pytest

from server.app import build_app
from server.core.identity import AgentPrincipal
from server.settings import Settings
from tests.conftest import Owner, _bootstrap_owner
from tests.fakes.loopback import run_asgi_on_loopback
from tests.support.browser import chromium_page_factory, save_screenshot
from tests.support.core import prepared_core
from tests.support.webhooks import GitHubSigner

pytestmark = pytest.mark.anyio
SHOT = "browser-admin-"


@dataclass
class AdminWorld:
    url: str
    owner: Owner
    stranger: Owner
    settings: Settings


async def _endpoint_for(settings: Settings, owner: Owner, signer: GitHubSigner) -> tuple[str, str]:
    async with prepared_core(settings) as core:
        owner_id = UUID(owner.id)
        agent = await core.identity.create_agent(owner_id, name="triager", allowed_connectors=["github"])
        connection, _ = await core.connections.start(owner_id, core.catalog["github"], label="gh")
        endpoint, _ = await core.webhooks.setup(
            owner_id, connection.id, provider="github", secrets=signer.secrets
        )
        return f"/api/v1/connectors/webhooks/github/{endpoint.id}", str(agent.record.id)


@pytest.fixture
def admin_world(settings: Settings) -> Iterator[AdminWorld]:
    """Served at exactly its public_url, so the forms' Origin check sees its own origin."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        live = settings.model_copy(update={"public_url": url, "webhook_allow_insecure_urls": True})
        owner = _bootstrap_owner(live, "events-owner")
        stranger = _bootstrap_owner(live, "other-owner")
        with run_asgi_on_loopback(build_app(live), lifespan="on", sock=sock):
            yield AdminWorld(url, owner, stranger, live)
    finally:
        sock.close()


async def test_the_owner_sees_their_events_and_retries_a_dead_letter(admin_world: AdminWorld) -> None:
    world = admin_world
    mine, theirs = GitHubSigner(), GitHubSigner()
    mine_path, agent_id = await _endpoint_for(world.settings, world.owner, mine)
    their_path, _ = await _endpoint_for(world.settings, world.stranger, theirs)
    async with httpx.AsyncClient(base_url=world.url, timeout=10) as http:
        for n in range(3):
            delivery = mine.deliver(f"mine-{n}")
            assert (
                await http.post(mine_path, content=delivery.body, headers=delivery.headers)
            ).status_code == 200
        duplicate = mine.deliver("mine-0")
        await http.post(mine_path, content=duplicate.body, headers=duplicate.headers)
        other = theirs.deliver("theirs-0")
        await http.post(their_path, content=other.body, headers=other.headers)
    async with prepared_core(world.settings) as core:  # the agent gives up on one job: a dead letter
        agent = AgentPrincipal(UUID(agent_id), UUID(world.owner.id), frozenset({"github"}))
        [job] = await core.jobs.claim(agent, limit=1, lease_seconds=60)
        await core.jobs.fail(agent, job.id, error="could not triage", retry=False)

    async with chromium_page_factory() as factory:
        from playwright.async_api import expect

        context = await factory.new_context(viewport={"width": 1200, "height": 900})
        tab = await context.new_page()
        await tab.goto(f"{world.url}/admin/connector-events")
        await expect(tab.locator("h1")).to_have_text("Sign in")  # sent to sign in, and brought back
        await tab.fill("#api_key", world.owner.api_key)
        async with tab.expect_navigation():
            await tab.click("button[type=submit]")
        assert tab.url == f"{world.url}/admin/connector-events"
        await expect(tab.locator("h1")).to_have_text("Connector events")
        await save_screenshot(tab, f"{SHOT}events")

        endpoints = tab.locator("#endpoints tr[data-endpoint]")
        await expect(endpoints).to_have_count(1)  # the other owner's endpoint is not here
        await expect(endpoints.locator(".deliveries")).to_have_text("3")
        await expect(tab.locator('[data-count="queued"]')).to_have_text("2")
        await expect(tab.locator('[data-count="dead"]')).to_have_text("1")
        await expect(tab.locator("#jobs tr[data-job]")).to_have_count(3)
        await expect(tab.locator("#jobs")).to_contain_text("github.issues.opened")
        assert "theirs" not in await tab.content()

        dead = tab.locator(f'#dead-letters tr[data-dead="{job.id}"]')
        await expect(dead).to_contain_text("could not triage")
        async with tab.expect_navigation():
            await dead.locator("button").click()
        await expect(tab.locator("#dead-letters tr[data-dead]")).to_have_count(0)
        await expect(tab.locator('[data-count="queued"]')).to_have_text("3")
        await save_screenshot(tab, f"{SHOT}after-retry")

        # Deleting the endpoint (its secret was pasted from GitHub's console: nothing to remove there).
        async with tab.expect_navigation():
            await endpoints.locator("button").click()
        await expect(tab.locator("h1")).to_have_text("Endpoint deleted")
        await expect(tab.locator("#at-provider")).to_contain_text("created in GitHub's console")
        await save_screenshot(tab, f"{SHOT}deleted")
        async with tab.expect_navigation():
            await tab.click("text=Back to connector events")
        await expect(tab.locator("#endpoints tr[data-endpoint]")).to_have_count(0)
        await expect(tab.locator("#jobs tr[data-job]")).to_have_count(3)  # its jobs stay
    async with httpx.AsyncClient(base_url=world.url, timeout=10) as http:
        late = mine.deliver("mine-9")
        assert (await http.post(mine_path, content=late.body, headers=late.headers)).status_code == 404
        still = theirs.deliver("theirs-1")
        assert (await http.post(their_path, content=still.body, headers=still.headers)).status_code == 200
    await asyncio.sleep(0)
