"""The owner's workflows and executions on the dashboard, over HTTP on both engines: the list with
its filters and cursor pages, one execution with its steps (outputs escaped, masked and cut when
long), and Cancel (CSRF, the `execute` permission) for one still running. Other owners and
sessions without a permission are the isolation matrix's (tests/security/)."""

from __future__ import annotations

import html
import json
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any
from uuid import UUID

import anyio
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from server.settings import ConnectorSettings, Settings
from server.web.pages import executions as pages
from tests.conftest import Owner, Tendril, running_tendril
from tests.fakes.loopback import run_asgi_on_loopback
from tests.support.browser_http import BrowserLike, csrf_of

pytestmark = pytest.mark.anyio

SECRET = "xoxb-4444-5555-CanaryEchoedSecret7q"  # a Slack token shape: masked wherever it shows


@pytest.fixture(scope="module")
def echo_url() -> Iterator[str]:
    """A loopback receiver answering each request with its JSON body (what http_request steps call)."""

    async def echo(request: Request) -> JSONResponse:
        body = await request.body()
        return JSONResponse({"echo": json.loads(body) if body else None})

    with run_asgi_on_loopback(Starlette(routes=[Route("/{path:path}", echo, methods=["POST"])])) as url:
        yield url


@pytest.fixture
async def hub(settings: Settings) -> AsyncIterator[Tendril]:
    connectors = {**settings.connectors, "http": ConnectorSettings(allowed_hosts="127.0.0.1")}
    async with running_tendril(settings.model_copy(update={"connectors": connectors})) as tendril:
        yield tendril


async def make_workflow(hub: Tendril, owner: Owner, name: str, steps: list[dict[str, Any]]) -> UUID:
    record = await hub.core.workflows.create(UUID(owner.id), name=name, definition={"steps": steps})
    return record.id


async def run(hub: Tendril, owner: Owner, workflow: UUID, data: dict[str, Any]) -> UUID:
    view = await hub.core.executions.start(UUID(owner.id), workflow, data, started_by="api")
    with anyio.fail_after(20):
        await hub.core.executions.engine.wait(view.id)
    return view.id


def listed(page: str) -> list[str]:
    return re.findall(r'data-execution="([^"]+)"', page)


@pytest.mark.timeout(120)
async def test_the_owner_lists_filters_and_pages_executions(
    hub: Tendril, echo_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner = await hub.new_owner()
    post = [{"name": "post", "type": "http_request", "config": {"method": "POST", "url": f"{echo_url}/a"}}]
    first = await make_workflow(hub, owner, "first <flow>", post)
    second = await make_workflow(hub, owner, "second", post)
    ran = [await run(hub, owner, first, {}) for _ in range(3)]
    other = await run(hub, owner, second, {})
    monkeypatch.setattr(pages, "PAGE_SIZE", 2)
    async with BrowserLike(hub.transport()) as browser:
        await browser.sign_in(owner.api_key)
        dashboard = await browser.get("/dashboard")
        assert 'href="/dashboard/executions"' in dashboard.text
        assert 'href="/dashboard/workflows"' in dashboard.text

        workflows = await browser.get("/dashboard/workflows")
        assert workflows.status_code == 200 and "first &lt;flow&gt;" in workflows.text
        assert f'href="/dashboard/executions?workflow={first}"' in workflows.text

        newest = await browser.get("/dashboard/executions")
        assert newest.status_code == 200 and newest.headers["cache-control"] == "no-store"
        assert listed(newest.text) == [str(other), str(ran[2])]
        assert "first &lt;flow&gt;" in newest.text and "status-completed" in newest.text
        older = re.search(r'href="([^"]+)" id="older"', newest.text)
        assert older
        rest = await browser.get(html.unescape(older.group(1)))
        assert listed(rest.text) == [str(ran[1]), str(ran[0])]
        assert 'id="older"' not in rest.text and 'id="newest"' in rest.text

        of_first = await browser.get(f"/dashboard/executions?workflow={first}&status=completed")
        assert listed(of_first.text) == [str(ran[2]), str(ran[1])]
        assert f'value="{first}" selected' in of_first.text
        rest = await browser.get(html.unescape(re.findall(r'href="([^"]+)" id="older"', of_first.text)[0]))
        assert listed(rest.text) == [str(ran[0])]
        assert listed((await browser.get("/dashboard/executions?status=failed")).text) == []

        for bad in ("?status=lost", "?workflow=nope", "?cursor=%%%"):
            refused = await browser.get(f"/dashboard/executions{bad}")
            assert refused.status_code == 400, bad


@pytest.mark.timeout(120)
async def test_an_execution_page_shows_its_steps_escaped_masked_and_cut(hub: Tendril, echo_url: str) -> None:
    owner = await hub.new_owner()
    workflow = await make_workflow(
        hub,
        owner,
        "echoes",
        [
            {
                "name": "echo",
                "type": "http_request",
                "config": {"method": "POST", "url": f"{echo_url}/echo", "body": "{{ input }}"},
            },
            {"name": "check", "type": "condition", "config": {"if": "input.go"}},
            {"name": "never", "type": "http_request", "config": {"method": "POST", "url": f"{echo_url}/n"}},
        ],
    )
    data = {
        "go": False,
        "note": "<script>alert('x')</script>",
        "token": SECRET,
        "key": owner.api_key,
        "long": "y" * (pages.SHOWN_MAX + 500),
    }
    execution = await run(hub, owner, workflow, data)
    async with BrowserLike(hub.transport()) as browser:
        await browser.sign_in(owner.api_key)
        shown = await browser.get(f"/dashboard/executions/{execution}")
        assert shown.status_code == 200, shown.text
        text = shown.text
        assert "<h1>Execution of echoes</h1>" in text
        assert 'id="execution-status" class="status-completed"' in text
        steps = re.findall(r'<tr data-step="([^"]+)">.*?class="status status-(\w+)', text, re.S)
        assert steps == [("echo", "completed"), ("check", "completed"), ("never", "skipped")]
        assert "<script>alert" not in text and "&lt;script&gt;alert" in text
        assert SECRET not in text and owner.api_key not in text and "xoxb-****" in text
        assert "y" * (pages.SHOWN_MAX + 1) not in text and "more characters" in text
        assert 'id="cancel-execution"' not in text  # finished: nothing to cancel

        assert (await browser.get(f"/dashboard/executions/{UUID(int=1)}")).status_code == 404
        assert (await browser.get("/dashboard/executions/not-an-id")).status_code == 400


@pytest.mark.timeout(120)
async def test_the_owner_cancels_a_running_execution_with_the_form(hub: Tendril, echo_url: str) -> None:
    owner = await hub.new_owner()
    reader = await hub.core.identity.create_api_key(UUID(owner.id), name="reader", permissions=["read"])
    workflow = await make_workflow(
        hub,
        owner,
        "slow",
        [
            {"name": "wait", "type": "delay", "config": {"seconds": 600}},
            {"name": "after", "type": "http_request", "config": {"method": "POST", "url": f"{echo_url}/x"}},
        ],
    )
    view = await hub.core.executions.start(UUID(owner.id), workflow, {}, started_by="api")
    path = f"/dashboard/executions/{view.id}"
    async with BrowserLike(hub.transport()) as browser:
        await browser.sign_in(owner.api_key)
        with anyio.fail_after(20):  # as a person reloads the page until the delay is under way
            while True:
                page = (await browser.get(path)).text
                if re.search(r'data-step="wait">.*?class="status status-running"', page, re.S):
                    break
                await anyio.sleep(0.05)
        assert 'id="cancel-execution"' in page
        csrf = csrf_of(page)

        forged = await browser.tendril.post(f"{path}/cancel", data={"csrf": "forged"})
        assert forged.status_code == 403
        cross_site = await browser.tendril.post(
            f"{path}/cancel", data={"csrf": csrf}, headers={"Origin": "https://evil.example"}
        )
        assert cross_site.status_code == 403
        assert (await hub.core.executions.get(UUID(owner.id), view.id)).status == "running"

        async with BrowserLike(hub.transport()) as read_only:
            await read_only.sign_in(reader.plaintext)
            seen = await read_only.get(path)
            assert seen.status_code == 200 and 'id="cancel-execution"' not in seen.text
            own_csrf = csrf_of((await read_only.get("/dashboard")).text)
            refused = await read_only.tendril.post(f"{path}/cancel", data={"csrf": own_csrf})
            assert refused.status_code == 403

        cancelled = await browser.submit(f"{path}/cancel", data={"csrf": csrf})
        assert cancelled.status_code == 200 and cancelled.url.path == path
        assert 'id="execution-status" class="status-cancelled"' in cancelled.text
        assert 'id="cancel-execution"' not in cancelled.text
        listing = await browser.get("/dashboard/executions?status=cancelled")
        assert listed(listing.text) == [str(view.id)]
