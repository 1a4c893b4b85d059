"""Real headless Chromium on the dashboard: the whole OAuth connect flow, from the dashboard and
back; and the owner's agents (with the host config to paste) and API keys.

Sign in with an API key, open the dashboard, click Connect (a new tab), continue to the
provider's consent page, click Allow, land on the callback page, and watch the dashboard tab
(never reloaded) show the connection active. The provider is the interactive fake GitHub.

Then, as an owner would: create an agent allowed Telegram, take the host config the page prints
(with the key, shown once) and connect an MCP client with it, rotate the key (the old one is
refused), delete the agent after the confirmation page; create a read-only API key and revoke it.

Every URL Tendril hands out (the OAuth redirect URI, the start link) is built from
`public_url`, so Tendril is served by uvicorn on exactly that origin: the loopback socket is
bound first, its port goes into the settings, and uvicorn then serves on that same socket
(nothing can take the port in between). Screenshots land in the test artifacts directory.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from server.app import build_app
from server.core.links import OAUTH_CALLBACK_PATH as CALLBACK_PATH
from server.settings import Settings
from tests.conftest import OAuthFakes, Owner, _bootstrap_owner, oauth_connector
from tests.fakes.loopback import run_asgi_on_loopback
from tests.support.browser import chromium_page_factory, save_screenshot
from tests.support.catalog import TELEGRAM_TOOLS

pytestmark = pytest.mark.anyio

logger = logging.getLogger(__name__)

STARTUP_TIMEOUT = 5.0
UPDATE_TIMEOUT_MS = 5_000  # the dashboard must show "active" within this, without a reload
SHOT = "browser-dashboard-oauth-"  # screenshot name prefix


@dataclass(frozen=True)
class BrowserTendril:
    url: str
    settings: Settings
    owner: Owner


@pytest.fixture
def browser_tendril(settings: Settings, oauth_fakes: OAuthFakes) -> Iterator[BrowserTendril]:
    """Tendril served at exactly its `public_url`, with GitHub OAuth against the interactive fake."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        github = oauth_connector(oauth_fakes.github_url, "github-client", "github-secret-canary-7f3")
        live = settings.model_copy(
            update={"public_url": url, "connectors": {**settings.connectors, "github": github}}
        )
        oauth_fakes.github.register_client(
            "github-client", "github-secret-canary-7f3", [f"{url}{CALLBACK_PATH}"], "client_secret_post"
        )
        oauth_fakes.github.interactive = True  # GET /oauth/authorize renders Allow/Deny
        owner = _bootstrap_owner(live, "browser-owner")  # before the server: migrations run here
        with run_asgi_on_loopback(build_app(live), lifespan="on", sock=sock):
            yield BrowserTendril(url, live, owner)
    finally:
        sock.close()


# Installed in the dashboard tab before Connect is clicked: a reload would drop both.
_WATCH = """() => {
  window.__marker = 1;
  window.__heard = [];
  new BroadcastChannel("tendril-connections").onmessage = (event) => window.__heard.push(event.data);
}"""


async def test_dashboard_tab_shows_the_oauth_connection_active_without_a_reload(
    browser_tendril: BrowserTendril, oauth_fakes: OAuthFakes
) -> None:
    live, key = browser_tendril, browser_tendril.owner.api_key
    async with httpx.AsyncClient(
        base_url=live.url, headers={"Authorization": f"Bearer {key}"}, timeout=10
    ) as api:
        created = await api.post("/api/v1/connections", json={"connectorSlug": "github"})
        assert created.status_code == 201, created.text
        connection = created.json()["connection"]
        connection_id = connection["id"]
        assert (connection["status"], connection["authMethod"]) == ("pending", "oauth")

        async with chromium_page_factory() as factory:
            from playwright.async_api import expect  # after the factory, which skips if it is missing

            context = await factory.new_context(viewport={"width": 1000, "height": 700})
            dashboard = await context.new_page()

            # Sign in with the API key; the form brings us to the dashboard.
            await dashboard.goto(f"{live.url}/signin?next=/dashboard")
            await expect(dashboard.locator("h1")).to_have_text("Sign in")
            await dashboard.fill("#api_key", key)
            await save_screenshot(dashboard, f"{SHOT}signin")
            async with dashboard.expect_navigation():
                await dashboard.click("button[type=submit]")
            assert dashboard.url == f"{live.url}/dashboard"
            await expect(dashboard.locator("h1")).to_have_text("Connections")

            status = dashboard.locator(f'[data-status="{connection_id}"]')
            connect = dashboard.locator(f'[data-connect="{connection_id}"]')
            await expect(status).to_have_text("pending")
            await expect(connect).to_have_text("Connect")
            main_frame_navigations: list[str] = []
            dashboard.on(
                "framenavigated",
                lambda frame: (
                    main_frame_navigations.append(frame.url) if frame == dashboard.main_frame else None
                ),
            )
            await dashboard.evaluate(_WATCH)
            await save_screenshot(dashboard, f"{SHOT}dashboard-before")

            # Connect opens a new tab on the connect page.
            async with context.expect_page() as new_tab:
                await connect.click()
            tab = await new_tab.value
            await tab.wait_for_load_state("load")
            assert tab.url == f"{live.url}/connect/{connection_id}"
            assert await tab.evaluate("window.opener !== null")  # rel="opener"

            # Continue goes through Tendril's start URL to the provider's consent page.
            await expect(tab.locator("#continue")).to_have_text("Continue to GitHub")
            await tab.click("#continue")
            await tab.wait_for_url(lambda u: u.startswith(f"{oauth_fakes.github_url}/oauth/authorize?"))
            await expect(tab.locator("#allow")).to_have_text("Allow")
            await save_screenshot(tab, f"{SHOT}consent")
            [authorize] = oauth_fakes.github.authorize_requests
            assert authorize["redirect_uri"] == f"{live.url}{CALLBACK_PATH}"
            assert authorize["code_challenge_method"] == "S256"

            # Allow sends the tab back to Tendril's callback, which exchanges the code.
            await tab.click("#allow")
            await tab.wait_for_url(lambda u: u.startswith(f"{live.url}{CALLBACK_PATH}?"))
            await expect(tab.locator("h1")).to_have_text("GitHub is connected")
            await save_screenshot(tab, f"{SHOT}callback")

            # The dashboard tab, untouched, catches up on its own.
            await expect(status).to_have_text("active", timeout=UPDATE_TIMEOUT_MS)
            await expect(status).to_have_class("status-active")
            await expect(connect).to_have_count(0)
            assert await dashboard.evaluate("window.__marker") == 1, "the dashboard was reloaded"
            assert main_frame_navigations == [], main_frame_navigations
            heard = await dashboard.evaluate("window.__heard")
            assert {"connectionId": connection_id, "status": "active"} in heard, heard
            await save_screenshot(dashboard, f"{SHOT}dashboard-after")
            assert len(context.pages) == 2

        fetched = await api.get(f"/api/v1/connections/{connection_id}")
        assert fetched.status_code == 200, fetched.text
        body = fetched.json()
        assert (body["status"], body["authMethod"], body["hasCredentials"]) == ("active", "oauth", True)
        [exchange] = oauth_fakes.github.token_requests
        assert (exchange["grant_type"], exchange["result"]) == ("authorization_code", "ok")


# -- agents, their MCP host config, and API keys -----------------------------------------------------
OWNER_SHOT = "browser-dashboard-owner-"


async def _initialize(url: str, authorization: str) -> httpx.Response:
    """An MCP initialize request, as a host sends it first."""
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "e2e", "version": "1"},
        },
    }
    headers = {"Authorization": authorization, "Accept": "application/json, text/event-stream"}
    async with httpx.AsyncClient(timeout=10) as http:
        return await http.post(url, json=body, headers=headers)


async def _tools_from_pasted_config(config: dict[str, Any]) -> list[str]:
    """The tools a host sees with the config exactly as the page printed it (Claude Code's shape)."""
    server = config["mcpServers"]["tendril"]
    async with httpx2.AsyncClient(headers=server["headers"], timeout=10) as http:
        transport = streamable_http_client(server["url"], http_client=http)
        async with Client(transport, cache=None) as client:
            return [tool.name for tool in (await client.list_tools()).tools]


@pytest.mark.timeout(120)
async def test_the_owner_makes_an_agent_pastes_its_config_rotates_and_deletes_it_and_manages_keys(
    browser_tendril: BrowserTendril,
) -> None:
    live, key = browser_tendril, browser_tendril.owner.api_key
    async with chromium_page_factory() as factory:
        from playwright.async_api import expect  # after the factory, which skips if it is missing

        context = await factory.new_context(viewport={"width": 1000, "height": 900})
        tab = await context.new_page()
        await tab.goto(f"{live.url}/signin?next=/dashboard")
        await tab.fill("#api_key", key)
        async with tab.expect_navigation():
            await tab.click("button[type=submit]")

        # Create an agent allowed Telegram; its key and a ready config are shown once.
        await tab.click("text=Agents and MCP")
        await expect(tab.locator("h1")).to_have_text("Agents")
        await tab.fill("#name", "browser-agent")
        await tab.check("input[name=allowed][value=telegram]")
        await save_screenshot(tab, f"{OWNER_SHOT}new-agent")
        async with tab.expect_navigation():
            await tab.click("#new-agent button[type=submit]")
        await expect(tab.locator("h1")).to_have_text("Agent browser-agent created")
        first_key = await tab.input_value("#agent-key")
        assert first_key.startswith("tdl_agent_")
        config = json.loads(await tab.locator('[data-host="Claude Code"] pre').inner_text())
        assert config["mcpServers"]["tendril"]["url"] == f"{live.url}/mcp"
        assert config["mcpServers"]["tendril"]["headers"] == {"Authorization": f"Bearer {first_key}"}
        await save_screenshot(tab, f"{OWNER_SHOT}agent-key")
        tools = await _tools_from_pasted_config(config)
        assert [t for t in tools if not t.startswith("tendril_")] == TELEGRAM_TOOLS  # only what it may use

        # Its own page shows a placeholder, never the key; rotating gives a new one and retires the old.
        await tab.click("text=Back to the agent")
        await expect(tab.locator("h1")).to_have_text("Agent browser-agent")
        assert first_key not in await tab.content()
        await expect(tab.locator('[data-host="Claude Code"] pre')).to_contain_text("Bearer <agent key>")
        async with tab.expect_navigation():
            await tab.click("#rotate-key button")
        await expect(tab.locator("h1")).to_have_text("New key for agent browser-agent")
        second_key = await tab.input_value("#agent-key")
        assert second_key != first_key
        assert (await _initialize(f"{live.url}/mcp", f"Bearer {first_key}")).status_code == 401
        assert (await _initialize(f"{live.url}/mcp", f"Bearer {second_key}")).status_code == 200

        # Delete, after the confirmation page.
        await tab.click("text=Back to the agent")
        await tab.click("#delete-agent")
        await expect(tab.locator("h1")).to_have_text("Delete agent browser-agent?")
        await save_screenshot(tab, f"{OWNER_SHOT}confirm-delete")
        async with tab.expect_navigation():
            await tab.click("#confirm-delete button[type=submit]")
        await expect(tab.locator("h1")).to_have_text("Agents")
        await expect(tab.locator("#agents")).not_to_contain_text("browser-agent")
        assert (await _initialize(f"{live.url}/mcp", f"Bearer {second_key}")).status_code == 401

        # An API key with only read: shown once, works for reading, refused once revoked.
        await tab.goto(f"{live.url}/dashboard")
        await tab.click("text=API keys")
        await expect(tab.locator("h1")).to_have_text("API keys")
        await tab.fill("#name", "browser-reader")
        for permission in ("write", "execute"):
            await tab.uncheck(f"input[name=permissions][value={permission}]")
        async with tab.expect_navigation():
            await tab.click("#new-key button[type=submit]")
        await expect(tab.locator("h1")).to_have_text("API key browser-reader created")
        reader = await tab.input_value("#api-key")
        async with httpx.AsyncClient(base_url=live.url, headers={"X-Api-Key": reader}, timeout=10) as api:
            assert (await api.get("/api/v1/agents")).status_code == 200
            assert (await api.post("/api/v1/agents", json={"name": "nope"})).status_code == 403
            await tab.click("text=All API keys")
            assert reader not in await tab.content()
            row = tab.locator("#keys tr", has_text="browser-reader")
            async with tab.expect_navigation():
                await row.locator("button", has_text="Revoke").click()
            await expect(row.locator(".revoked")).not_to_have_text("no")
            await save_screenshot(tab, f"{OWNER_SHOT}keys")
            assert (await api.get("/api/v1/agents")).status_code == 401
