"""GCS object names are data: names holding `%`, spaces or `%2e%2e` are listed and read as they
are, over MCP and REST; only a decoded path that would leave the folder is refused."""

from __future__ import annotations

import httpx
import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError

from tests.conftest import LiveTendril
from tests.support.gcs import GcsEmulator
from tests.support.mcp import mcp_client

pytestmark = pytest.mark.anyio

OBJECTS = {
    "docs/report%20final.txt": b"the final report\n",
    "docs/report final.txt": b"the other report\n",
    "sub/%2e%2e/t.txt": b"not a traversal, a name\n",
    "plain.txt": b"plain\n",
}


async def test_names_with_percent_escapes_are_listed_and_read_faithfully(
    live_tendril: LiveTendril, gcs: GcsEmulator
) -> None:
    fs = gcs.filesystem()
    for name, content in OBJECTS.items():
        fs.pipe(f"tendril-test/names/{name}", content)
    fs.pipe("tendril-test/outside.txt", b"outside the folder\n")
    async with httpx.AsyncClient(base_url=live_tendril.url, timeout=30) as http:
        http.headers["X-Api-Key"] = live_tendril.admin.api_key
        body = {"name": "Names", "type": "gcs", "config": {"gcs_url": "gs://tendril-test/names"}}
        bucket = (await http.post("/connectors", json=body)).json()
        agent = await http.post("/api/v1/agents", json={"name": "names", "allowedConnectors": ["gcs"]})
        for name, content in OBJECTS.items():  # REST: the `path` query value is the name
            read = await http.get(f"/connectors/{bucket['id']}/content", params={"path": name})
            assert read.status_code == 200, (name, read.text)
            assert read.json()["content"] == content.decode()
        refused = await http.get(f"/connectors/{bucket['id']}/content", params={"path": "../outside.txt"})
        assert refused.status_code == 400 and "path refused" in refused.json()["error"]

    async with mcp_client(live_tendril.url, agent.json()["apiKey"]) as mcp:
        listed = {r.name.split("/", 1)[1]: str(r.uri) for r in (await mcp.list_resources()).resources}
        assert set(listed) == set(OBJECTS)
        for name, uri in listed.items():
            [contents] = (await mcp.read_resource(uri)).contents
            assert isinstance(contents, types.TextResourceContents)
            assert contents.text == OBJECTS[name].decode(), name
        base = f"tendril://gcs/{bucket['connection_id']}"
        with pytest.raises(MCPError, match="path refused"):
            await mcp.read_resource(f"{base}/%2e%2e/outside.txt")  # decoded, it leaves the folder
