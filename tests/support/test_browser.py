"""Real headless Chromium: a page opens a new tab, which reports back over BroadcastChannel.

This is the mechanism the OAuth pages use: the connect page opens the provider's consent
page in a new tab (``window.open(url, "_blank")``, not a sized popup), the callback page
posts "done" on ``BroadcastChannel("tendril")``, and the connect page updates itself
without a reload.
"""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from tests.fakes.loopback import run_asgi_on_loopback
from tests.support.browser import chromium_page_factory, save_screenshot

pytestmark = pytest.mark.anyio

PAGE_A = """<!doctype html>
<html><head><meta charset="utf-8"><title>Page A</title></head>
<body style="font: 24px sans-serif; padding: 2em">
  <h1>Page A</h1>
  <button id="open" style="font-size: 24px">Open page B</button>
  <p>Status: <span id="status">waiting</span></p>
  <script>
    const channel = new BroadcastChannel("tendril");
    channel.onmessage = (event) => {
      if (event.data === "done") document.getElementById("status").textContent = "done";
    };
    document.getElementById("open").addEventListener("click", () => {
      window.open("/b", "_blank");
    });
  </script>
</body></html>
"""

PAGE_B = """<!doctype html>
<html><head><meta charset="utf-8"><title>Page B</title></head>
<body style="font: 24px sans-serif; padding: 2em">
  <h1>Page B</h1>
  <p id="sent">posting "done"...</p>
  <script>
    window.addEventListener("load", () => {
      new BroadcastChannel("tendril").postMessage("done");
      document.getElementById("sent").textContent = 'posted "done" on BroadcastChannel("tendril")';
    });
  </script>
</body></html>
"""


def make_app(hits: dict[str, int]) -> Starlette:
    """Serves /a and /b, counting requests; anything else (the favicon) is a 404."""

    def route(path: str, html: str) -> Route:
        async def endpoint(request: Request) -> HTMLResponse:
            hits[path] = hits.get(path, 0) + 1
            return HTMLResponse(html)

        return Route(path, endpoint)

    return Starlette(routes=[route("/a", PAGE_A), route("/b", PAGE_B)])


async def test_new_tab_reports_back_over_broadcast_channel() -> None:
    hits: dict[str, int] = {}
    with run_asgi_on_loopback(make_app(hits)) as url:
        async with chromium_page_factory() as factory:
            from playwright.async_api import expect  # after the factory, which skips if it is missing

            context = await factory.new_context(viewport={"width": 800, "height": 400})
            page_a = await context.new_page()
            await page_a.goto(f"{url}/a")
            await expect(page_a.locator("#status")).to_have_text("waiting")
            # A reload would drop this marker.
            await page_a.evaluate("window.__notReloaded = true")

            async with context.expect_page() as new_page_info:
                await page_a.click("#open")
            page_b = await new_page_info.value
            await page_b.wait_for_load_state("load")

            assert page_b.url == f"{url}/b"
            assert await page_b.evaluate("window.opener !== null")  # a tab opened by A, no noopener
            await expect(page_a.locator("#status")).to_have_text("done")
            assert await page_a.evaluate("window.__notReloaded === true")
            assert hits == {"/a": 1, "/b": 1}
            assert len(context.pages) == 2

            await save_screenshot(page_a, "browser-page-a")
            await save_screenshot(page_b, "browser-page-b")
