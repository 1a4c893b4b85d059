"""The files API that file-connector users know, request for request, with only an API key added."""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from server.settings import Settings
from tests.conftest import Tendril, running_tendril
from tests.support.gcs import GcsEmulator
from tests.support.rest import assert_error

pytestmark = pytest.mark.anyio

CSV = "name,age,city,country\n" + "".join(f"Person{n},{20 + n % 50},City{n},USA\n" for n in range(149))


@pytest.fixture
async def api(tendril: Tendril) -> AsyncIterator[httpx.AsyncClient]:
    owner = await tendril.new_owner()
    await tendril.core.files.grants.grant(uuid.UUID(owner.id), "gs://tendril-test")
    async with tendril.raw() as client:
        client.headers["Authorization"] = f"Bearer {owner.api_key}"
        yield client


async def create_local(api: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body = {"name": "Test Data", "type": "local_file", "filename": "test.csv", "file_type": "csv", **fields}
    response = await api.post("/connectors", json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def upload(api: httpx.AsyncClient, ref: str, content: bytes | str) -> httpx.Response:
    return await api.post(
        f"/connectors/{ref}:upload", content=content, headers={"Content-Type": "text/plain"}
    )


async def test_the_local_file_curl_walkthrough(api: httpx.AsyncClient) -> None:
    created = await create_local(api)
    assert re.fullmatch(r"conn_[0-9a-f]{32}", created["id"])
    assert created["type"] == "local_file" and created["status"] == "pending_upload"
    assert created["config"] == {"filename": "test.csv", "file_type": "csv", "encoding": "utf-8"}
    assert created["created_at"].endswith("Z")
    ref = created["id"]

    early = await api.get(f"/connectors/{ref}/content")
    assert_error(early, 409, "CONFLICT", "Connector is not active (status: pending_upload)")

    uploaded = await upload(api, ref, CSV)
    assert uploaded.status_code == 200, uploaded.text
    active = uploaded.json()
    assert active["status"] == "active"
    assert active["metadata"]["file_size"] == len(CSV.encode())
    assert active["metadata"]["mime_type"] == "text/csv"
    assert active["metadata"]["total_lines"] == 150
    assert active["config"]["file_path"].startswith(f"/uploads/{ref}/")

    page = (await api.get(f"/connectors/{ref}/content", params={"offset": 10, "limit": 20})).json()
    lines = CSV.splitlines(keepends=True)
    assert page["content"] == "".join(lines[10:30])
    assert page["chunk_info"] == {"offset": 10, "limit": 20, "total_lines": 150}
    assert (page["connector_id"], page["encoding"], page["content_type"]) == (ref, "utf-8", "text/csv")
    assert page["total_size"] == len(CSV.encode())
    whole = (await api.get(f"/connectors/{ref}/content")).json()
    assert whole["content"] == CSV
    first = (await api.get(f"/connectors/{ref}/content", params={"limit": 10})).json()
    assert first["content"] == "".join(lines[:10])

    listed = (await api.get("/connectors")).json()["connectors"]
    assert [c["id"] for c in listed] == [ref] and listed[0]["metadata"]["file_size"] == len(CSV)
    assert (await api.get(f"/connectors/{ref}")).json() == listed[0]

    assert (await api.delete(f"/connectors/{ref}")).status_code == 204
    assert_error(await api.get(f"/connectors/{ref}"), 404, "NOT_FOUND", "Connector not found")
    assert (await api.get("/connectors")).json() == {"connectors": []}


async def test_the_javascript_example_leaves_out_the_type(api: httpx.AsyncClient) -> None:
    created = await api.post(
        "/connectors", json={"name": "Sales Data", "filename": "sales-2024.csv", "file_type": "csv"}
    )
    assert created.status_code == 201 and created.json()["type"] == "local_file"
    ref = created.json()["id"]
    assert (await upload(api, ref, CSV)).status_code == 200
    chunk = (await api.get(f"/connectors/{ref}/content?offset=0&limit=100")).json()
    assert chunk["chunk_info"]["limit"] == 100 and chunk["content"].count("\n") == 100


async def test_the_seeds_error_cases(api: httpx.AsyncClient, tendril: Tendril) -> None:
    assert_error(
        await api.post("/connectors", json={"type": "local_file"}),
        400,
        "BAD_REQUEST",
        "Missing required field: name",
    )
    assert_error(await api.get("/connectors/not-an-id"), 400, "BAD_REQUEST", "Invalid connector ID format")
    assert_error(await api.get("/connectors/conn_123"), 404, "NOT_FOUND", "Connector not found")
    assert_error(await api.get("/connectors/conn_123/content"), 404, "NOT_FOUND", "Connector not found")
    bad_type = await api.post("/connectors", json={"name": "x", "type": "ftp"})
    assert_error(bad_type, 400, "BAD_REQUEST", "ftp")
    bad_encoding = await api.post("/connectors", json={"name": "x", "encoding": "klingon-8"})
    assert_error(bad_encoding, 400, "BAD_REQUEST", "Unsupported encoding: klingon-8")
    anonymous = await tendril.raw().get("/connectors")
    assert anonymous.status_code == 401


async def test_bad_encoding_and_size_refusals_keep_the_previous_content(
    settings: Settings,
) -> None:
    async with running_tendril(settings.model_copy(update={"max_upload_bytes": 4096})) as tendril:
        owner = await tendril.new_owner()
        async with tendril.raw() as api:
            api.headers["X-Api-Key"] = owner.api_key
            ref = (await create_local(api))["id"]
            assert (await upload(api, ref, "a,b\n1,2\n")).status_code == 200
            broken = await upload(api, ref, b"a,b\n1,2\n3,\xff\n")
            assert_error(broken, 400, "BAD_REQUEST", "not valid utf-8", "offset 10", "line 3")
            too_big = await upload(api, ref, b"x" * 5000)
            assert_error(too_big, 413, "PAYLOAD_TOO_LARGE", "4096")

            async def endless() -> AsyncIterator[bytes]:  # no Content-Length: stopped while streaming
                for _ in range(10):
                    yield b"y" * 1000

            streamed = await api.post(f"/connectors/{ref}:upload", content=endless())
            assert_error(streamed, 413, "PAYLOAD_TOO_LARGE")
            kept = (await api.get(f"/connectors/{ref}/content")).json()
            assert kept["content"] == "a,b\n1,2\n" and kept["total_size"] == 8
            assert (await upload(api, ref, "c\n")).json()["metadata"]["file_size"] == 2  # replaced
            assert (await api.get(f"/connectors/{ref}/content")).json()["content"] == "c\n"


async def test_byte_ranges_and_binary_files(api: httpx.AsyncClient) -> None:
    text = (await create_local(api, filename="notes.txt", file_type="text"))["id"]
    await upload(api, text, "héllo wörld\n")
    ranged = (await api.get(f"/connectors/{text}/content", params={"bytes_start": 0, "bytes_end": 6})).json()
    assert ranged["content"] == "héllo" and ranged["chunk_info"]["bytes_end"] == 6
    cut = (await api.get(f"/connectors/{text}/content", params={"bytes_start": 0, "bytes_end": 2})).json()
    assert cut["encoding"] == "base64" and base64.b64decode(cut["content"]) == "hé".encode()[:2]
    mixed = await api.get(f"/connectors/{text}/content", params={"offset": 1, "bytes_start": 0})
    assert_error(mixed, 400, "BAD_REQUEST", "not both")

    blob = (await create_local(api, filename="image.png", file_type="binary"))["id"]
    payload = bytes(range(256)) * 4
    uploaded = await api.post(f"/connectors/{blob}:upload", content=payload)
    assert uploaded.json()["metadata"]["mime_type"] == "image/png"
    read = (await api.get(f"/connectors/{blob}/content")).json()
    assert read["encoding"] == "base64" and base64.b64decode(read["content"]) == payload


async def test_another_owners_files_are_invisible(api: httpx.AsyncClient, tendril: Tendril) -> None:
    ref = (await create_local(api))["id"]
    await upload(api, ref, CSV)
    stranger = await tendril.new_owner()
    async with tendril.raw() as other:
        other.headers["X-Api-Key"] = stranger.api_key
        assert (await other.get("/connectors")).json() == {"connectors": []}
        for method, path in (
            ("GET", ref),
            ("GET", f"{ref}/content"),
            ("DELETE", ref),
            ("POST", f"{ref}:upload"),
        ):
            assert_error(await other.request(method, f"/connectors/{path}"), 404, "NOT_FOUND")
    assert (await api.get(f"/connectors/{ref}/content")).status_code == 200


async def test_the_gcs_examples(api: httpx.AsyncClient, gcs: GcsEmulator) -> None:
    fs = gcs.filesystem()
    fs.pipe("tendril-test/data/report.csv", b"a,b\n1,2\n3,4\n")
    fs.pipe("tendril-test/data/deep/more.txt", b"inside\n")
    fs.pipe("tendril-test/secret.txt", b"outside the subroot\n")
    body = {"name": "Analytics Bucket", "type": "gcs", "config": {"gcs_url": "gs://tendril-test/data"}}
    created = await api.post("/connectors", json=body)
    assert created.status_code == 201, created.text
    bucket = created.json()
    assert bucket["status"] == "active"
    assert bucket["config"] == {"gcs_url": "gs://tendril-test/data", "local_mount_point_path": None}
    ref = bucket["id"]
    assert [c["id"] for c in (await api.get("/connectors")).json()["connectors"]] == [ref]

    read = (
        await api.get(f"/connectors/{ref}/content", params={"path": "report.csv", "offset": 1, "limit": 1})
    ).json()
    assert read["content"] == "1,2\n" and read["total_size"] == 12
    nested = (await api.get(f"/connectors/{ref}/content", params={"path": "deep/more.txt"})).json()
    assert nested["content"] == "inside\n"
    for escape in ("../secret.txt", "/secret.txt", "gs://tendril-test/secret.txt", "deep/../../secret.txt"):
        refused = await api.get(f"/connectors/{ref}/content", params={"path": escape})
        assert_error(refused, 400, "BAD_REQUEST", "path refused")
    for literal in ("%2e%2e/secret.txt", "%252e%252e/secret.txt"):  # names, not traversal: no such object
        missing_literal = await api.get(f"/connectors/{ref}/content", params={"path": literal})
        assert_error(missing_literal, 404, "NOT_FOUND", "No such object")
    missing = await api.get(f"/connectors/{ref}/content", params={"path": "nope.csv"})
    assert_error(missing, 404, "NOT_FOUND", "No such object")

    refused_upload = await upload(api, ref, "x")
    assert_error(
        refused_upload,
        400,
        "BAD_REQUEST",
        "Content upload not supported for GCS connectors. "
        "Files are accessed directly via the mounted file system.",
    )
    bad_url = await api.post(
        "/connectors", json={"name": "x", "type": "gcs", "config": {"gcs_url": "gs://../x"}}
    )
    assert_error(bad_url, 400, "BAD_REQUEST", "bucket")
    no_url = await api.post("/connectors", json={"name": "x", "type": "gcs", "config": {}})
    assert_error(no_url, 400, "BAD_REQUEST", "Missing required field: config.gcs_url")
    assert (await api.delete(f"/connectors/{ref}")).status_code == 204
    assert fs.cat("tendril-test/data/report.csv") == b"a,b\n1,2\n3,4\n"  # deleting never touches the bucket


async def test_unconfigured_storage_is_503(settings: Settings) -> None:
    bare = settings.model_copy(update={"files_url": "", "gcs_token": None})
    async with running_tendril(bare) as tendril:
        owner = await tendril.new_owner()
        async with tendril.raw() as api:
            api.headers["X-Api-Key"] = owner.api_key
            local = await api.post("/connectors", json={"name": "x", "type": "local_file"})
            assert_error(local, 503, "UNAVAILABLE", "File storage is not configured")
            bucket = await api.post(
                "/connectors", json={"name": "x", "type": "gcs", "config": {"gcs_url": "gs://b-1/x"}}
            )
            assert_error(bucket, 503, "UNAVAILABLE", "GCS storage is not configured")


async def test_file_connections_are_connections_too(api: httpx.AsyncClient) -> None:
    ref = (await create_local(api))["id"]
    connections = (await api.get("/api/v1/connections")).json()
    listed = connections["connections"] if isinstance(connections, dict) else connections
    assert [c["connectorSlug"] if "connectorSlug" in c else c.get("connector") for c in listed] == [
        "local_file"
    ]
    made_elsewhere = await api.post("/api/v1/connections", json={"connectorSlug": "local_file"})
    assert_error(made_elsewhere, 400, "BAD_REQUEST", "POST /connectors")
    assert ref


async def test_uploads_can_live_in_a_bucket_shared_by_replicas(settings: Settings, gcs: GcsEmulator) -> None:
    shared = settings.model_copy(update={"files_url": "gs://tendril-test/replicas"})
    async with running_tendril(shared) as first, running_tendril(shared) as second:
        owner = await first.new_owner()
        async with first.raw() as api_one, second.raw() as api_two:
            for api in (api_one, api_two):
                api.headers["X-Api-Key"] = owner.api_key
            ref = (await create_local(api_one))["id"]
            assert (await upload(api_one, ref, CSV)).status_code == 200
            page = (
                await api_two.get(f"/connectors/{ref}/content", params={"offset": 100, "limit": 2})
            ).json()
    assert page["content"] == "".join(CSV.splitlines(keepends=True)[100:102])
    assert any(
        path.startswith("tendril-test/replicas/") for path in gcs.filesystem().find("tendril-test/replicas")
    )


ODD_NUMBERS = ["%C2%B2", "%C2%B9", "%D9%A3", "-1", "1.5", "0x10", str(2**63), str(2**64), "9" * 40]


async def test_read_positions_that_are_not_whole_64_bit_numbers_are_a_400_naming_them(
    api: httpx.AsyncClient, gcs: GcsEmulator
) -> None:
    """Superscript or Arabic-Indic digits pass str.isdigit() but not int(); 2^63 does not fit an offset."""
    gcs.filesystem().pipe("tendril-test/odd/report.csv", b"a,b\n1,2\n")
    local = (await create_local(api))["id"]
    assert (await upload(api, local, CSV)).status_code == 200
    bucket = await api.post(
        "/connectors", json={"name": "Odd", "type": "gcs", "config": {"gcs_url": "gs://tendril-test/odd"}}
    )
    reads = {local: "", bucket.json()["id"]: "&path=report.csv"}
    for ref, path in reads.items():
        for name in ("offset", "limit", "bytes_start", "bytes_end"):
            for value in ODD_NUMBERS:
                response = await api.get(f"/connectors/{ref}/content?{name}={value}{path}")
                assert_error(response, 400, "BAD_REQUEST", f"'{name}'")


async def test_read_positions_past_the_end_of_a_file_read_nothing(
    api: httpx.AsyncClient, gcs: GcsEmulator
) -> None:
    gcs.filesystem().pipe("tendril-test/far/report.csv", b"a,b\n1,2\n")
    local = (await create_local(api))["id"]
    assert (await upload(api, local, CSV)).status_code == 200
    bucket = await api.post(
        "/connectors", json={"name": "Far", "type": "gcs", "config": {"gcs_url": "gs://tendril-test/far"}}
    )
    far = 2**63 - 1
    for ref, path in ((local, ""), (bucket.json()["id"], "&path=report.csv")):
        lines = await api.get(f"/connectors/{ref}/content?offset={far}&limit={far}{path}")
        assert lines.status_code == 200, lines.text
        assert lines.json()["content"] == ""
        tail = await api.get(f"/connectors/{ref}/content?bytes_start={far}{path}")
        assert tail.status_code == 200, tail.text
        assert tail.json()["content"] == "" and tail.json()["chunk_info"]["bytes_start"] == far
