"""The owner's dashboard pages for agents (create, edit, rotate the key, delete, host configs) and API
keys (create, revoke) over HTTP: keys shown once and never again, CSRF, permissions as the REST
routes', bad input answered on the form with nothing stored."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from clients.rest import TendrilClient
from server.web.pages.host_configs import PLACEHOLDER, host_configs
from tests.conftest import Tendril
from tests.support.browser_http import BrowserLike, csrf_of

pytestmark = pytest.mark.anyio

MCP_URL = "http://127.0.0.1:8080/mcp"  # the test settings' public URL + /mcp
CONFIGS = Path(__file__).resolve().parents[2] / "clients" / "configs"


def shown_key(page: httpx.Response, field: str) -> str:
    found = re.search(rf'id="{field}" readonly value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


def pasted_configs(page: httpx.Response) -> list[dict[str, Any]]:
    return [
        json.loads(html.unescape(text))
        for text in re.findall(r"<pre><code>(.*?)</code></pre>", page.text, re.S)
    ]


async def test_an_agent_is_made_edited_given_a_new_key_and_deleted_from_the_dashboard(
    tendril: Tendril,
) -> None:
    owner = await tendril.new_owner()
    identity = tendril.core.identity
    async with BrowserLike(tendril.transport()) as browser:
        await browser.sign_in(owner.api_key)
        listing = await browser.get("/dashboard/agents")
        assert listing.status_code == 200 and 'value="telegram"' in listing.text and MCP_URL in listing.text
        csrf = csrf_of(listing.text)

        made = await browser.submit(
            "/dashboard/agents", data={"name": "helper", "allowed": ["telegram", "slack"], "csrf": csrf}
        )
        assert made.status_code == 200 and made.headers["cache-control"] == "no-store"
        key = shown_key(made, "agent-key")
        # Reloading the page that showed the key shows it no more and makes no other agent.
        [agent] = await identity.list_agents(await owner_uuid(tendril, owner.api_key))
        assert made.url.path == f"/dashboard/agents/{agent.id}/key"
        reloaded = await browser.follow(made.url.path)
        assert reloaded.url.path == f"/dashboard/agents/{agent.id}" and key not in reloaded.text
        configs = pasted_configs(made)
        assert len(configs) == 4 and all(f"Bearer {key}" in json.dumps(c) for c in configs)
        [agent] = await identity.list_agents(await owner_uuid(tendril, owner.api_key))
        assert (agent.name, agent.allowed_connectors) == ("helper", ("telegram", "slack"))
        assert (await identity.authenticate_agent(key)) is not None

        detail = await browser.get(f"/dashboard/agents/{agent.id}")
        assert detail.status_code == 200 and key not in detail.text
        assert all(f"Bearer {PLACEHOLDER}" in json.dumps(c) for c in pasted_configs(detail))
        assert key not in (await browser.get("/dashboard/agents")).text

        edited = await browser.tendril.post(
            f"/dashboard/agents/{agent.id}", data={"name": "helper-2", "allowed": "github", "csrf": csrf}
        )
        assert (edited.status_code, edited.headers["location"]) == (303, f"/dashboard/agents/{agent.id}")
        changed = await identity.agent(agent.owner_id, agent.id)
        assert (changed.name, changed.allowed_connectors) == ("helper-2", ("github",))

        rotated = await browser.submit(f"/dashboard/agents/{agent.id}/key", data={"csrf": csrf})
        assert rotated.status_code == 200 and rotated.headers["cache-control"] == "no-store"
        new_key = shown_key(rotated, "agent-key")
        reloaded = await browser.follow(rotated.url.path)  # rotates nothing: the new key keeps working
        assert new_key not in reloaded.text and await identity.authenticate_agent(new_key) is not None
        assert new_key != key and f"Bearer {new_key}" in json.dumps(pasted_configs(rotated))
        assert await identity.authenticate_agent(key) is None
        assert (await identity.authenticate_agent(new_key)).id == agent.id  # type: ignore[union-attr]

        confirm = await browser.get(f"/dashboard/agents/{agent.id}/delete")
        assert confirm.status_code == 200 and 'id="confirm-delete"' in confirm.text
        assert await identity.authenticate_agent(new_key) is not None  # asking deletes nothing
        deleted = await browser.tendril.post(f"/dashboard/agents/{agent.id}/delete", data={"csrf": csrf})
        assert (deleted.status_code, deleted.headers["location"]) == (303, "/dashboard/agents")
        assert await identity.authenticate_agent(new_key) is None
        assert (await browser.get(f"/dashboard/agents/{agent.id}")).status_code == 404


async def state(client: TendrilClient) -> tuple[list[Any], list[Any]]:
    """An owner's agents and keys, as far as a form could change them (using a key is not changing it)."""
    keys = [(k.id, k.name, k.permissions, k.rate_limit, k.revoked_at) for k in await client.keys()]
    return [a.model_dump() for a in await client.agents()], keys


async def owner_uuid(tendril: Tendril, api_key: str) -> Any:
    return (await tendril.core.identity.authenticate_owner(api_key)).owner_id


async def test_an_api_key_is_shown_once_and_revoked_from_the_dashboard(tendril: Tendril) -> None:
    owner = await tendril.new_owner()
    async with BrowserLike(tendril.transport()) as browser:
        await browser.sign_in(owner.api_key)
        listing = await browser.get("/dashboard/keys")
        assert listing.status_code == 200 and "(this session)" in listing.text
        made = await browser.submit(
            "/dashboard/keys",
            data={
                "name": "reporting",
                "permissions": "read",
                "rate_limit": "50",
                "csrf": csrf_of(listing.text),
            },
        )
        assert made.status_code == 200 and made.headers["cache-control"] == "no-store"
        key = shown_key(made, "api-key")
        reloaded = await browser.follow(made.url.path)
        assert reloaded.url.path == "/dashboard/keys" and key not in reloaded.text
        assert [k.name for k in await tendril.client(owner.api_key).keys()].count("reporting") == 1
        principal = await tendril.core.identity.authenticate_owner(key)
        assert (principal.permissions, principal.rate_limit) == (("read",), 50)

        listing = await browser.get("/dashboard/keys")
        assert key not in listing.text and f'data-key="{principal.key_id}"' in listing.text
        revoked = await browser.tendril.post(
            f"/dashboard/keys/{principal.key_id}/revoke", data={"csrf": csrf_of(listing.text)}
        )
        assert (revoked.status_code, revoked.headers["location"]) == (303, "/dashboard/keys")
    async with tendril.raw() as http:
        assert (await http.get("/api/v1/agents", headers={"X-Api-Key": key})).status_code == 401
        keys = (await http.get("/api/v1/keys", headers={"X-Api-Key": owner.api_key})).json()
    assert [k["revokedAt"] is not None for k in keys if k["name"] == "reporting"] == [True]


# (page, form, what the answer says, status)
BAD_FORMS: list[tuple[str, dict[str, Any], str, int]] = [
    ("/dashboard/agents", {"name": ""}, "agent name must be", 400),
    ("/dashboard/agents", {"name": "x" * 101}, "agent name must be", 400),
    (
        "/dashboard/agents",
        {"name": "bot", "allowed": ["slack", "slak"]},
        "unknown connector slug(s): slak",
        400,
    ),
    ("/dashboard/agents", {"name": "taken"}, "taken", 409),
    ("/dashboard/keys", {"name": "k"}, "permissions must name at least one", 400),
    ("/dashboard/keys", {"name": "k", "permissions": "root"}, "unknown permission", 400),
    ("/dashboard/keys", {"name": "k", "permissions": "read", "rate_limit": "lots"}, "whole number", 400),
    ("/dashboard/keys", {"name": "k", "permissions": "read", "rate_limit": "0"}, "whole number", 400),
    ("/dashboard/keys", {"name": "<b>", "permissions": "read"}, "key name must be", 400),
]


async def test_bad_input_is_answered_on_the_form_and_nothing_is_stored(tendril: Tendril) -> None:
    owner = await tendril.new_owner()
    client = tendril.client(owner.api_key)
    await client.create_agent("taken", [])
    before = await state(client)
    async with BrowserLike(tendril.transport()) as browser:
        await browser.sign_in(owner.api_key)
        csrf = csrf_of((await browser.get("/dashboard")).text)
        for path, form, says, status in BAD_FORMS:
            answer = await browser.tendril.post(path, data={**form, "csrf": csrf})
            assert answer.status_code == status, (path, form)
            assert 'class="error"' in answer.text and html.escape(says, quote=False) in answer.text, form
            assert f'value="{html.escape(form["name"])}"' in answer.text  # what was typed is kept
    assert await state(client) == before


async def test_a_bad_edit_keeps_the_agent_as_it_was(tendril: Tendril) -> None:
    owner = await tendril.new_owner()
    client = tendril.client(owner.api_key)
    agent = (await client.create_agent("steady", ["telegram"])).agent
    async with BrowserLike(tendril.transport()) as browser:
        await browser.sign_in(owner.api_key)
        page = await browser.get(f"/dashboard/agents/{agent.id}")
        answer = await browser.tendril.post(
            f"/dashboard/agents/{agent.id}", data={"name": "", "allowed": "slack", "csrf": csrf_of(page.text)}
        )
    assert answer.status_code == 400 and "agent name must be" in answer.text
    assert (await client.agent(agent.id)).model_dump() == agent.model_dump()


async def test_agent_and_key_forms_without_the_session_csrf_token_are_refused(tendril: Tendril) -> None:
    owner = await tendril.new_owner()
    client = tendril.client(owner.api_key)
    agent = (await client.create_agent("guarded", ["telegram"])).agent
    key = (await client.create_key("guarded", ["read"])).key
    before = await state(client)
    forms = [
        ("/dashboard/agents", {"name": "forged"}),
        (f"/dashboard/agents/{agent.id}", {"name": "forged"}),
        (f"/dashboard/agents/{agent.id}/key", {}),
        (f"/dashboard/agents/{agent.id}/delete", {}),
        ("/dashboard/keys", {"name": "forged", "permissions": "admin"}),
        (f"/dashboard/keys/{key.id}/revoke", {}),
    ]
    async with BrowserLike(tendril.transport()) as browser:
        await browser.sign_in(owner.api_key)
        csrf = csrf_of((await browser.get("/dashboard")).text)
        for path, form in forms:
            forged = await browser.tendril.post(path, data=form)
            wrong = await browser.tendril.post(path, data={**form, "csrf": csrf[::-1]})
            cross_site = await browser.tendril.post(
                path, data={**form, "csrf": csrf}, headers={"Origin": "https://evil.example"}
            )
            assert forged.status_code == wrong.status_code == cross_site.status_code == 403, path
    assert await state(client) == before


async def test_a_read_only_session_sees_agents_but_changes_nothing(tendril: Tendril) -> None:
    owner = await tendril.new_owner()
    client = tendril.client(owner.api_key)
    agent = (await client.create_agent("watched", ["telegram"])).agent
    reader = (await client.create_key("reader", ["read"])).api_key
    before = await state(client)
    async with BrowserLike(tendril.transport()) as browser:
        await browser.sign_in(reader)
        dashboard = await browser.get("/dashboard")
        assert "/dashboard/agents" in dashboard.text and "/dashboard/keys" not in dashboard.text
        listing = await browser.get("/dashboard/agents")
        assert (
            listing.status_code == 200 and "watched" in listing.text and 'id="new-agent"' not in listing.text
        )
        detail = await browser.get(f"/dashboard/agents/{agent.id}")
        assert detail.status_code == 200 and 'id="rotate-key"' not in detail.text
        csrf = csrf_of(dashboard.text)
        for path in (
            "/dashboard/agents",
            f"/dashboard/agents/{agent.id}",
            f"/dashboard/agents/{agent.id}/key",
            f"/dashboard/agents/{agent.id}/delete",
            "/dashboard/keys",
        ):
            refused = await browser.tendril.post(
                path, data={"name": "nope", "permissions": "admin", "csrf": csrf}
            )
            assert refused.status_code == 403 and "lacks the" in refused.text, path
        assert (await browser.get("/dashboard/keys")).status_code == 403
        assert (await browser.get(f"/dashboard/agents/{agent.id}/delete")).status_code == 403
    assert await state(client) == before


async def test_another_owners_agent_page_looks_like_a_missing_one(tendril: Tendril) -> None:
    owner, stranger = await tendril.new_owner(), await tendril.new_owner()
    agent = (await tendril.client(owner.api_key).create_agent("private-bot", ["telegram"])).agent
    async with BrowserLike(tendril.transport()) as browser:
        await browser.sign_in(stranger.api_key)
        foreign = await browser.get(f"/dashboard/agents/{agent.id}")
        missing = await browser.get("/dashboard/agents/6f1c3c55-2f4e-4d8e-9a61-0c7cf0d7c1a1")
        listing = await browser.get("/dashboard/agents")
    assert foreign.status_code == missing.status_code == 404 and foreign.text == missing.text
    assert "private-bot" not in listing.text


# What each shipped file (clients/configs/<host>/) takes from the environment or a prompt; the
# dashboard writes the key there instead, and is otherwise the same.
SHIPPED = {
    "Claude Code": ("claude-code/mcp.http.json", ["mcpServers", "tendril", "headers", "Authorization"]),
    "Cursor": ("cursor/mcp.http.json", ["mcpServers", "tendril", "headers", "Authorization"]),
    "VS Code": ("vscode/mcp.http.json", ["servers", "tendril", "headers", "Authorization"]),
    "Claude Desktop": (
        "claude-desktop/claude_desktop_config.http.json",
        ["mcpServers", "tendril", "env", "AUTH_HEADER"],
    ),
}


def test_the_host_configs_have_the_shapes_tendril_ships() -> None:
    made = {config.host: json.loads(config.text) for config in host_configs(MCP_URL, None)}
    assert set(made) == set(SHIPPED)
    for host, (file, key_path) in SHIPPED.items():
        shipped = json.loads((CONFIGS / file).read_text())
        shipped.pop("inputs", None)  # VS Code's prompt for the key
        where = shipped
        for step in key_path[:-1]:
            where = where[step]
        where[key_path[-1]] = f"Bearer {PLACEHOLDER}"
        assert made[host] == shipped, host
    https = {c.host: json.loads(c.text) for c in host_configs("https://tendril.example/mcp", "k")}
    assert "--allow-http" not in https["Claude Desktop"]["mcpServers"]["tendril"]["args"]
