"""Files and GCS objects as MCP resources, through the `mcp` SDK client over Streamable HTTP."""

from __future__ import annotations

import base64
import warnings
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import mcp_types as types
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError

from tests.conftest import LiveTendril
from tests.support.core import prepared_core
from tests.support.gcs import GcsEmulator
from tests.support.mcp import mcp_client

pytestmark = pytest.mark.anyio

CSV = "id,name\n" + "".join(f"{n},row {n}\n" for n in range(20))


class Owner:
    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def file(self, name: str, content: bytes | str, **fields: Any) -> dict[str, Any]:
        created = await self.http.post("/connectors", json={"name": name, **fields})
        assert created.status_code == 201, created.text
        return await self.upload(created.json()["id"], content)

    async def upload(self, ref: str, content: bytes | str) -> dict[str, Any]:
        uploaded = await self.http.post(f"/connectors/{ref}:upload", content=content)
        assert uploaded.status_code == 200, uploaded.text
        return uploaded.json()

    async def bucket(self, url: str) -> dict[str, Any]:
        body = {"name": "Lake", "type": "gcs", "config": {"gcs_url": url}}
        created = await self.http.post("/connectors", json=body)
        assert created.status_code == 201, created.text
        return created.json()

    async def agent(self, name: str, allowed: list[str]) -> str:
        made = await self.http.post("/api/v1/agents", json={"name": name, "allowedConnectors": allowed})
        assert made.status_code == 201, made.text
        body = made.json()
        return body.get("apiKey") or body["agent"]["apiKey"]


async def subscribe_2025(mcp: Client, uri: str) -> None:
    """resources/subscribe is the 2025-11-25 way; the SDK warns that 2026-07-28 replaced it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MCPDeprecationWarning)
        await mcp.subscribe_resource(uri)


@pytest.fixture
async def owner(live_tendril: LiveTendril) -> AsyncIterator[Owner]:
    async with httpx.AsyncClient(base_url=live_tendril.url, timeout=30) as http:
        http.headers["X-Api-Key"] = live_tendril.admin.api_key
        yield Owner(http)


async def test_files_and_bucket_objects_are_listed_read_and_chunked(
    live_tendril: LiveTendril, owner: Owner, gcs: GcsEmulator
) -> None:
    fs = gcs.filesystem()
    fs.pipe("tendril-test/mcp/report.csv", b"a,b\n1,2\n3,4\n")
    fs.pipe("tendril-test/mcp/blob.bin", bytes(range(200, 256)))
    fs.pipe("tendril-test/outside.txt", b"not yours\n")
    data = await owner.file("Customers", CSV, filename="customers.csv", file_type="csv")
    picture = await owner.file("Logo", bytes(range(256)), filename="logo.png", file_type="binary")
    lake = await owner.bucket("gs://tendril-test/mcp")
    key = await owner.agent("reader", ["local_file", "gcs"])

    async with mcp_client(live_tendril.url, key) as mcp:
        listed = {str(r.uri): r for r in (await mcp.list_resources()).resources}
        file_uri = f"tendril://files/{data['connection_id']}"
        gcs_base = f"tendril://gcs/{lake['connection_id']}"
        assert set(listed) == {
            file_uri,
            f"tendril://files/{picture['connection_id']}",
            f"{gcs_base}/report.csv",
            f"{gcs_base}/blob.bin",
        }
        assert (listed[file_uri].mime_type, listed[file_uri].size) == ("text/csv", len(CSV))

        whole = (await mcp.read_resource(file_uri)).contents[0]
        assert isinstance(whole, types.TextResourceContents) and whole.text == CSV
        assert whole.mime_type == "text/csv"
        chunk = (await mcp.read_resource(f"{file_uri}?offset=3&limit=2")).contents[0]
        assert isinstance(chunk, types.TextResourceContents)
        assert chunk.text == "".join(CSV.splitlines(keepends=True)[3:5])
        blob = (await mcp.read_resource(f"tendril://files/{picture['connection_id']}")).contents[0]
        assert isinstance(blob, types.BlobResourceContents) and blob.mime_type == "image/png"
        assert base64.b64decode(blob.blob) == bytes(range(256))
        obj = (await mcp.read_resource(f"{gcs_base}/report.csv?offset=1&limit=1")).contents[0]
        assert isinstance(obj, types.TextResourceContents) and obj.text == "1,2\n"

        templates = (await mcp.list_resource_templates()).resource_templates
        assert {t.uri_template for t in templates} == {
            "tendril://files/{connection}{?offset,limit}",
            "tendril://gcs/{connection}/{+path}{?offset,limit}",
        }
        gcs_template = types.ResourceTemplateReference(
            uri="tendril://gcs/{connection}/{+path}{?offset,limit}"
        )
        connections = await mcp.complete(gcs_template, {"name": "connection", "value": ""})
        assert connections.completion.values == [lake["connection_id"]]
        paths = await mcp.complete(
            gcs_template, {"name": "path", "value": "rep"}, {"connection": lake["connection_id"]}
        )
        assert paths.completion.values == ["report.csv"]

        for escape in ("../outside.txt", "%2e%2e/outside.txt", "sub/../../outside.txt"):
            with pytest.raises(MCPError, match="path refused"):
                await mcp.read_resource(f"{gcs_base}/{escape}")


async def test_bucket_listings_page_with_cursors(
    live_tendril: LiveTendril, owner: Owner, gcs: GcsEmulator
) -> None:
    fs = gcs.filesystem()
    for n in range(130):
        fs.pipe(f"tendril-test/paged/f{n:03}.txt", b"x\n")
    await owner.bucket("gs://tendril-test/paged")
    key = await owner.agent("pager", ["gcs"])
    async with mcp_client(live_tendril.url, key) as mcp:
        first = await mcp.list_resources()
        assert len(first.resources) == 100 and first.next_cursor
        second = await mcp.list_resources(cursor=first.next_cursor)
        assert second.next_cursor is None
    names = [str(r.uri).rsplit("/", 1)[1] for r in [*first.resources, *second.resources]]
    assert names == [f"f{n:03}.txt" for n in range(130)]


async def test_no_file_connector_allowed_or_another_owner_means_no_resources(
    live_tendril: LiveTendril, owner: Owner
) -> None:
    data = await owner.file("Customers", CSV, filename="customers.csv")
    uri = f"tendril://files/{data['connection_id']}"
    slack_only = await owner.agent("slack-only", ["slack"])
    async with mcp_client(live_tendril.url, slack_only) as mcp:
        listed = [str(r.uri) for r in (await mcp.list_resources()).resources]
        assert listed == [r for r in listed if r.startswith("tendril://jobs/")]  # its jobs, no files
        assert (await mcp.list_resource_templates()).resource_templates == []
        with pytest.raises(MCPError, match="unknown resource"):
            await mcp.read_resource(uri)

    # A second owner, made the way `tendril owners create` does.
    async with prepared_core(live_tendril.settings) as core:
        stranger = await core.identity.create_owner("stranger")
        other_key = (
            await core.identity.create_api_key(stranger.id, name="k", permissions=["admin"])
        ).plaintext
    async with httpx.AsyncClient(base_url=live_tendril.url, headers={"X-Api-Key": other_key}) as other_http:
        other = Owner(other_http)
        await other.file("Theirs", "mine\n")
        other_agent = await other.agent("other-reader", ["local_file"])
    async with mcp_client(live_tendril.url, other_agent) as mcp:
        uris = [str(r.uri) for r in (await mcp.list_resources()).resources]
        assert uri not in uris and len(uris) == 1
        with pytest.raises(MCPError, match="unknown resource"):
            await mcp.read_resource(uri)
        with pytest.raises(MCPError, match="unknown resource"):
            await subscribe_2025(mcp, uri)


async def test_a_subscribed_2025_client_hears_about_a_reupload(
    live_tendril: LiveTendril, owner: Owner
) -> None:
    data = await owner.file("Watched", "v1\n", filename="watched.txt")
    uri = f"tendril://files/{data['connection_id']}"
    key = await owner.agent("watcher", ["local_file"])
    updated = anyio.Event()
    seen: list[str] = []

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            seen.append(str(message.params.uri))
            updated.set()

    async with mcp_client(live_tendril.url, key, message_handler=on_message) as mcp:
        await subscribe_2025(mcp, uri)
        await owner.upload(data["id"], "v2\n")
        with anyio.fail_after(10):
            await updated.wait()
        assert seen == [uri]
        text = (await mcp.read_resource(uri)).contents[0]
        assert isinstance(text, types.TextResourceContents) and text.text == "v2\n"


async def test_a_listening_2026_client_hears_about_a_reupload(
    live_tendril: LiveTendril, owner: Owner
) -> None:
    data = await owner.file("Watched", "v1\n", filename="watched.txt")
    uri = f"tendril://files/{data['connection_id']}"
    key = await owner.agent("listener", ["local_file"])
    async with mcp_client(live_tendril.url, key, mode="2026-07-28") as mcp:
        async with mcp.listen(resource_subscriptions=[uri]) as subscription:
            await owner.upload(data["id"], "v2\n")
            with anyio.fail_after(10):
                event = await anext(aiter(subscription))
        assert getattr(event, "uri", None) == uri
        text = (await mcp.read_resource(uri)).contents[0]
        assert isinstance(text, types.TextResourceContents) and text.text == "v2\n"


async def test_odd_read_positions_are_invalid_params_and_far_ones_read_nothing(
    live_tendril: LiveTendril, owner: Owner, gcs: GcsEmulator
) -> None:
    gcs.filesystem().pipe("tendril-test/odd-mcp/report.csv", b"a,b\n1,2\n")
    data = await owner.file("Numbers", CSV, filename="numbers.csv", file_type="csv")
    lake = await owner.bucket("gs://tendril-test/odd-mcp")
    key = await owner.agent("odd-reader", ["local_file", "gcs"])
    uris = [f"tendril://files/{data['connection_id']}", f"tendril://gcs/{lake['connection_id']}/report.csv"]
    async with mcp_client(live_tendril.url, key) as mcp:
        for uri in uris:
            for value in ("%C2%B2", "%C2%B9", "-1", str(2**63)):
                with pytest.raises(MCPError) as refused:
                    await mcp.read_resource(f"{uri}?offset={value}")
                assert refused.value.error.code == types.INVALID_PARAMS
                assert "offset must be a whole number" in refused.value.error.message
            far = await mcp.read_resource(f"{uri}?offset={2**63 - 1}&limit=5")
            [contents] = far.contents
            assert isinstance(contents, types.TextResourceContents) and contents.text == ""
