"""/docs: the OpenAPI document as Swagger UI, served entirely by Tendril (the swagger-ui-py
package's files, no CDN) under a policy that runs scripts from 'self' only.

In headless Chromium the page loads with no console error and asks no other host for anything,
shows one block per operation of the document, and Authorize with the admin's key, then "Try it
out" and "Execute" on listConnections, answers 200 with the admin's connection.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import LiveTendril, Tendril
from tests.support.browser import chromium_page_factory, save_screenshot
from tests.support.browser_http import BrowserLike

pytestmark = pytest.mark.anyio

LABEL = "docs-page-check"


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """The page does not depend on the engine: one is enough here."""
    return f"sqlite+aiosqlite:///{tmp_path / 'tendril.db'}"


def directives(policy: str) -> dict[str, set[str]]:
    parsed = (part.split() for part in policy.split(";") if part.strip())
    return {name: set(values) for name, *values in parsed}


async def test_the_docs_page_and_every_asset_it_names_are_served_by_tendril(tendril: Tendril) -> None:
    async with tendril.raw() as http:
        page = await http.get("/docs")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        policy = directives(page.headers["content-security-policy"])
        assert policy["script-src"] == policy["style-src"] == {"'self'"}
        assert policy["img-src"] == {"'self'", "data:"}
        assert policy["default-src"] == {"'self'"} and policy["frame-ancestors"] == {"'none'"}
        assert "<script>" not in page.text  # no inline script: the policy would refuse it
        urls = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert {"/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css", "/docs/docs.js"} <= set(
            urls
        )
        for url in urls:
            assert url.startswith("/"), url  # nothing from another host
            asset = await http.get(url)
            assert asset.status_code == 200 and asset.content, url
        script = await http.get("/docs/docs.js")
        assert script.headers["content-type"].startswith("text/javascript")
        assert '"/api/v1/openapi"' in script.text
        # The package's other files (an OAuth redirect page with an inline script, editor bundles,
        # source maps) are not served.
        for name in ("oauth2-redirect.html", "swagger-ui-bundle.js.map", "../__init__.py", "index.html"):
            assert (await http.get(f"/docs/assets/{name}")).status_code == 404, name


async def test_the_dashboard_links_to_the_docs(tendril: Tendril) -> None:
    owner = await tendril.new_owner()
    async with BrowserLike(tendril.transport()) as browser:
        await browser.sign_in(owner.api_key)
        dashboard = await browser.get("/dashboard")
    assert dashboard.status_code == 200 and '<a href="/docs">API docs</a>' in dashboard.text


@pytest.mark.timeout(120)
async def test_swagger_ui_shows_every_operation_and_tries_list_connections_with_the_admin_key(
    live_tendril: LiveTendril,
) -> None:
    live, key = live_tendril, live_tendril.admin.api_key
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:
        document = (await http.get("/api/v1/openapi")).json()
        created = await http.post(
            "/api/v1/connections",
            json={"connectorSlug": "telegram", "label": LABEL},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert created.status_code == 201, created.text
    operations = [(method.upper(), path) for path, item in document["paths"].items() for method in item]
    assert ("GET", "/api/v1/connections") in operations

    async with chromium_page_factory() as new_page:
        from playwright.async_api import ConsoleMessage, Request, expect

        page = await new_page(viewport={"width": 1200, "height": 900})
        errors: list[str] = []
        requested: list[Request] = []

        def on_console(message: ConsoleMessage) -> None:
            if message.type == "error":
                errors.append(message.text)

        page.on("console", on_console)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("request", lambda request: requested.append(request))

        await page.goto(f"{live.url}/docs")
        blocks = page.locator(".opblock")
        await expect(blocks).to_have_count(len(operations))
        shown = await blocks.evaluate_all(
            """blocks => blocks.map(b => [
              b.querySelector(".opblock-summary-method").textContent,
              b.querySelector(".opblock-summary-path").dataset.path,
            ])"""
        )
        assert sorted(map(tuple, shown)) == sorted(operations)
        operation = page.locator("#operations-Connections-listConnections")
        await expect(operation.locator(".opblock-summary-method")).to_have_text("GET")
        await expect(operation.locator(".opblock-summary-path")).to_have_attribute(
            "data-path", "/api/v1/connections"
        )

        # Authorize with the admin's key as a bearer token.
        await page.locator(".auth-wrapper .authorize").click()
        dialog = page.locator(".dialog-ux")
        bearer = dialog.locator("form", has_text="bearerAuth")
        await bearer.get_by_label("auth-bearer-value").fill(key)
        await bearer.get_by_role("button", name="Apply credentials").click()
        await expect(bearer.get_by_role("button", name="Remove authorization")).to_be_visible()
        await bearer.get_by_role("button", name="Close").click()

        # Try it out on listConnections.
        await operation.locator(".opblock-summary").click()
        await operation.get_by_role("button", name="Try it out").click()
        await operation.get_by_role("button", name="Execute").click()
        await expect(
            operation.locator(".live-responses-table tr.response .response-col_status")
        ).to_have_text("200")
        await expect(
            operation.locator(".live-responses-table tr.response .response-col_description")
        ).to_contain_text(LABEL)
        await operation.scroll_into_view_if_needed()
        await save_screenshot(page, "docs-page-list-connections", full_page=False)

    assert errors == []
    origins = {urlsplit(request.url).netloc for request in requested if not request.url.startswith("data:")}
    assert origins == {urlsplit(live.url).netloc}
    [call] = [r for r in requested if urlsplit(r.url).path == "/api/v1/connections"]
    assert call.headers["authorization"] == f"Bearer {key}"
