"""GET /: the landing page says what the server is and links sign-in, the dashboard, the API docs
and the MCP URL, for anyone (no sign-in), with the headers every page carries."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from server.web.pages.render import HEADERS
from tests.conftest import Tendril

pytestmark = pytest.mark.anyio


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """The page does not depend on the engine: one is enough here."""
    return f"sqlite+aiosqlite:///{tmp_path / 'tendril.db'}"


async def test_the_landing_page_links_the_way_in_and_the_mcp_url(tendril: Tendril) -> None:
    async with tendril.raw() as http:
        page = await http.get("/")
        head = await http.head("/")
    assert page.status_code == 200 and head.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert {name: page.headers[name] for name in HEADERS} == HEADERS
    assert "set-cookie" not in page.headers
    links = set(re.findall(r'href="([^"]+)"', page.text))
    assert {"/signin", "/dashboard", "/docs", "/api/v1/openapi"} <= links
    mcp_url = f"{tendril.core.settings.public_url}/mcp"
    assert f'<pre id="mcp-url">{mcp_url}</pre>' in page.text
    assert "connector hub" in page.text and "Authorization: Bearer &lt;agent key&gt;" in page.text


async def test_only_get_on_the_root_is_the_page_the_rest_stays_with_the_mcp_edge(tendril: Tendril) -> None:
    async with tendril.raw() as http:
        posted = await http.post("/", json={})
    assert posted.status_code != 200 and "connector hub" not in posted.text
