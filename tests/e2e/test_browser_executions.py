"""Real headless Chromium on the executions pages: the owner opens the list, opens a finished
execution with its steps, then a running one (a long `delay` step) and cancels it with the form,
and sees it cancelled (the API agrees). Tendril is served on loopback (tests/conftest.py's
live_tendril; SQLite, as every e2e test)."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest

from tests.conftest import LiveTendril
from tests.support.browser import chromium_page_factory, save_screenshot

pytestmark = pytest.mark.anyio

SHOT = "browser-executions-"


async def _workflow(api: httpx.AsyncClient, name: str, steps: list[dict[str, Any]]) -> str:
    made = await api.post("/api/v1/workflows", json={"name": name, "definition": {"steps": steps}})
    assert made.status_code == 201, made.text
    return made.json()["id"]


async def _execute(api: httpx.AsyncClient, workflow_id: str) -> str:
    started = await api.post(f"/api/v1/workflows/{workflow_id}/execute", json={"input": {"who": "Ada"}})
    assert started.status_code == 202, started.text
    return started.json()["executionId"]


async def _until(api: httpx.AsyncClient, execution_id: str, status: str) -> None:
    with anyio.fail_after(20):
        while True:
            if (await api.get(f"/api/v1/executions/{execution_id}")).json()["status"] == status:
                return
            await anyio.sleep(0.05)


@pytest.mark.timeout(120)
async def test_the_owner_follows_an_execution_and_cancels_a_running_one(live_tendril: LiveTendril) -> None:
    live, key = live_tendril, live_tendril.admin.api_key
    async with httpx.AsyncClient(base_url=live.url, headers={"X-Api-Key": key}, timeout=10) as api:
        quick = await _workflow(
            api,
            "quick",
            [
                {"name": "pause", "type": "delay", "config": {"seconds": 0}},
                {"name": "check", "type": "condition", "config": {"if": "input.who == 'Ada'"}},
            ],
        )
        slow = await _workflow(
            api,
            "slow",
            [
                {"name": "wait", "type": "delay", "config": {"seconds": 600}},
                {"name": "after", "type": "http_request", "config": {"url": "https://after.example/x"}},
            ],
        )
        done = await _execute(api, quick)
        await _until(api, done, "completed")
        running = await _execute(api, slow)
        await _until(api, running, "running")

        async with chromium_page_factory() as factory:
            from playwright.async_api import expect  # after the factory, which skips if it is missing

            context = await factory.new_context(viewport={"width": 1000, "height": 900})
            tab = await context.new_page()
            await tab.goto(f"{live.url}/signin?next=/dashboard")
            await tab.fill("#api_key", key)
            async with tab.expect_navigation():
                await tab.click("button[type=submit]")

            await tab.click("text=Executions")
            await expect(tab.locator("h1")).to_have_text("Executions")
            await expect(tab.locator("#executions tr[data-execution]")).to_have_count(2)
            await save_screenshot(tab, f"{SHOT}list")

            # The finished one, with its steps.
            await tab.locator(f'[data-execution="{done}"] a').click()
            await expect(tab.locator("h1")).to_have_text("Execution of quick")
            await expect(tab.locator("#execution-status")).to_have_text("completed")
            await expect(tab.locator('[data-step="pause"] .status')).to_have_text("completed")
            await expect(tab.locator('[data-step="check"] .status')).to_have_text("completed")
            await expect(tab.locator("#cancel-execution")).to_have_count(0)
            await save_screenshot(tab, f"{SHOT}completed")

            # The running one: Cancel, and it shows cancelled.
            await tab.click("text=All executions")
            await tab.locator(f'[data-execution="{running}"] a').click()
            await expect(tab.locator("h1")).to_have_text("Execution of slow")
            await expect(tab.locator("#execution-status")).to_have_text("running")
            await expect(tab.locator('[data-step="wait"] .status')).to_have_text("running")
            async with tab.expect_navigation():
                await tab.click("#cancel-execution button")
            await expect(tab.locator("#execution-status")).to_have_text("cancelled")
            await expect(tab.locator('[data-step="after"] .status')).to_have_text("cancelled")
            await expect(tab.locator("#cancel-execution")).to_have_count(0)
            await save_screenshot(tab, f"{SHOT}cancelled")

        assert (await api.get(f"/api/v1/executions/{running}")).json()["status"] == "cancelled"
