"""Smaller controls: a failed GET changes nothing, pages are not sniffed, the data directory is
private, and /mcp's 401 for a request without credentials carries no error code."""

from __future__ import annotations

import stat
from pathlib import Path

import httpx
import pytest

from server.settings import Settings
from tests.conftest import LiveTendril, Tendril
from tests.e2e.tendril_process import tendril_serve
from tests.support.browser_http import BrowserLike

pytestmark = pytest.mark.anyio


async def test_an_oauth_start_that_fails_leaves_no_pending_connection_behind(tendril: Tendril) -> None:
    owner = await tendril.new_owner()
    async with BrowserLike(tendril.transport()) as browser:
        await browser.sign_in(owner.api_key)
        refused = await browser.get("/api/v1/connections/oauth/start?connector=github")
    assert refused.status_code == 400 and "no OAuth client configured" in refused.text
    assert await tendril.client(owner.api_key).connections() == []


async def test_pages_tell_browsers_not_to_sniff_content_types(tendril: Tendril) -> None:
    owner = await tendril.new_owner()
    async with BrowserLike(tendril.transport()) as browser:
        responses = [await browser.get("/signin")]
        await browser.sign_in(owner.api_key)
        responses += [
            await browser.get(path) for path in ("/dashboard", "/admin/connector-events", "/connect/x")
        ]
    assert all(r.headers["x-content-type-options"] == "nosniff" for r in responses)


async def test_the_data_directory_and_everything_in_it_are_the_users_only(
    settings: Settings, tmp_path: Path
) -> None:
    sqlite = settings.model_copy(update={"database_url": None})  # the embedded database, in the data dir
    with tendril_serve(sqlite, tmp_path) as served:
        admin_key = served.stdout.split("keep it:")[1].split()[0]
        async with httpx.AsyncClient(base_url=served.url, headers={"X-Api-Key": admin_key}) as http:
            made = (await http.post("/connectors", json={"name": "notes", "type": "local_file"})).json()
            assert (
                await http.post(f"/connectors/{made['id']}:upload", content=b"private\n")
            ).status_code == 200
    data_dir = settings.data_dir
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    entries = list(data_dir.rglob("*"))
    assert any(p.name == "tendril.db" for p in entries) and any(
        p.parent.name != data_dir.name for p in entries
    )
    for path in entries:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), f"{path.relative_to(data_dir)} is {oct(mode)}"


async def test_mcp_without_credentials_gets_a_401_without_an_error_code(live_tendril: LiveTendril) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    headers = {"Accept": "application/json, text/event-stream"}
    async with httpx.AsyncClient(base_url=live_tendril.url) as http:
        anonymous = await http.post("/mcp", json=body, headers=headers)
        forged = await http.post(
            "/mcp", json=body, headers={**headers, "Authorization": "Bearer tdl_agent_nope"}
        )
    assert anonymous.status_code == forged.status_code == 401
    bare = anonymous.headers["www-authenticate"]
    assert bare.startswith("Bearer ") and "error=" not in bare and "resource_metadata=" in bare
    assert 'error="invalid_token"' in forged.headers["www-authenticate"]  # a wrong key is still named so
