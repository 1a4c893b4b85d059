"""GCS buckets are bound to owners: an owner mounts only what the operator granted them (setting or
CLI, never their own keys), or a bucket their own service-account key reads."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import jwt
from mcp.shared.exceptions import MCPError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from storage import schema
from tests.conftest import LiveTendril, Tendril
from tests.fakes.loopback import run_asgi_on_loopback
from tests.support.cli import run_cli
from tests.support.core import prepared_core, stored_rows
from tests.support.gcs import GcsEmulator
from tests.support.mcp import mcp_client
from tests.support.rest import assert_error

pytestmark = pytest.mark.anyio

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PRIVATE_PEM = KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode()
PUBLIC_PEM = (
    KEY.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)
CLIENT_EMAIL = "reader@owner-project.iam.gserviceaccount.com"
ACCESS_TOKEN = "ya29.CanaryOwnAccessToken-5e1"


class FakeGoogleTokens:
    """Google's token endpoint for service accounts (RFC 7523 JWT bearer), checking the signature."""

    def __init__(self) -> None:
        self.grants: list[dict[str, Any]] = []
        self.app = Starlette(routes=[Route("/token", self.token, methods=["POST"])])

    async def token(self, request: Request) -> JSONResponse:
        form = parse_qs((await request.body()).decode())
        assert form["grant_type"] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
        claims = jwt.decode(form["assertion"][0], certs={"k": PUBLIC_PEM}, verify=True, audience=None)
        self.grants.append(dict(claims))
        return JSONResponse({"access_token": ACCESS_TOKEN, "expires_in": 3600, "token_type": "Bearer"})


@pytest.fixture
def google_tokens() -> Iterator[tuple[FakeGoogleTokens, str]]:
    tokens = FakeGoogleTokens()
    with run_asgi_on_loopback(tokens.app) as url:
        yield tokens, f"{url}/token"


def service_account(token_uri: str) -> dict[str, str]:
    return {
        "type": "service_account",
        "project_id": "owner-project",
        "private_key_id": "k",
        "private_key": PRIVATE_PEM,
        "client_email": CLIENT_EMAIL,
        "client_id": "1",
        "token_uri": token_uri,
    }


async def bucket(http: httpx.AsyncClient, url: str, **extra: Any) -> httpx.Response:
    return await http.post(
        "/connectors",
        json={"name": f"b-{uuid.uuid4().hex[:6]}", "type": "gcs", "config": {"gcs_url": url}, **extra},
    )


async def test_an_owner_mounts_only_granted_folders_and_loses_them_when_the_grant_goes(
    tendril: Tendril, gcs: GcsEmulator
) -> None:
    fs = gcs.filesystem()
    fs.pipe("tendril-test/granted/a.txt", b"mine\n")
    fs.pipe("tendril-test/other/b.txt", b"someone else's\n")
    owner = await tendril.new_owner()
    grants = tendril.core.files.grants
    async with tendril.raw() as http:
        http.headers["X-Api-Key"] = owner.api_key
        refused = await bucket(http, "gs://tendril-test/granted")
        assert_error(refused, 403, "FORBIDDEN", "not granted to you")
        assert (await http.get("/connectors")).json()["connectors"] == []  # nothing stored

        await grants.grant(uuid.UUID(owner.id), "gs://tendril-test/granted")
        made = await bucket(http, "gs://tendril-test/granted")
        assert made.status_code == 201, made.text
        below = await bucket(http, "gs://tendril-test/granted/deeper")
        assert below.status_code == 201, below.text
        sibling = await bucket(http, "gs://tendril-test/other")
        assert_error(sibling, 403, "FORBIDDEN", "not granted to you")
        read = await http.get(f"/connectors/{made.json()['id']}/content", params={"path": "a.txt"})
        assert read.json()["content"] == "mine\n"

        await grants.revoke(uuid.UUID(owner.id), "gs://tendril-test/granted")
        after = await http.get(f"/connectors/{made.json()['id']}/content", params={"path": "a.txt"})
        assert_error(after, 403, "FORBIDDEN", "not granted to you")


async def test_a_revoked_grant_hides_that_folder_from_mcp_without_breaking_the_rest(
    live_tendril: LiveTendril, gcs: GcsEmulator
) -> None:
    gcs.filesystem().pipe("tendril-test/listed/c.txt", b"c\n")
    async with prepared_core(live_tendril.settings) as core:  # the operator, beside the running server
        owner = await core.identity.create_owner("granted-owner")
        key = (await core.identity.create_api_key(owner.id, name="k", permissions=["admin"])).plaintext
        await core.files.grants.grant(owner.id, "gs://tendril-test/listed")
    async with httpx.AsyncClient(base_url=live_tendril.url, timeout=30) as http:
        http.headers["X-Api-Key"] = key
        made = (await bucket(http, "gs://tendril-test/listed")).json()
        note = (await http.post("/connectors", json={"name": "notes", "type": "local_file"})).json()
        await http.post(f"/connectors/{note['id']}:upload", content=b"note\n")
        agent = (
            await http.post("/api/v1/agents", json={"name": "r", "allowedConnectors": ["gcs", "local_file"]})
        ).json()
    object_uri = f"tendril://gcs/{made['connection_id']}/c.txt"
    file_uri = f"tendril://files/{note['connection_id']}"
    async with mcp_client(live_tendril.url, agent["apiKey"]) as mcp:
        assert {object_uri, file_uri} <= {str(r.uri) for r in (await mcp.list_resources()).resources}
        async with prepared_core(live_tendril.settings) as core:
            await core.files.grants.revoke(owner.id, "gs://tendril-test/listed")
        listed = {str(r.uri) for r in (await mcp.list_resources()).resources}
        assert file_uri in listed and object_uri not in listed
        with pytest.raises(MCPError, match="not granted"):
            await mcp.read_resource(object_uri)


async def test_operators_grant_and_revoke_with_the_cli(tendril: Tendril, gcs: GcsEmulator) -> None:
    owner = await tendril.new_owner()
    settings = tendril.core.settings
    granted = await run_cli(settings, "gcs", "grant", "--owner", owner.name, "gs://tendril-test/cli")
    assert granted.returncode == 0, granted.stderr
    listed = await run_cli(settings, "gcs", "grants", "--owner", owner.name)
    assert listed.stdout.split() == ["gs://tendril-test/cli"]
    async with tendril.raw() as http:
        http.headers["X-Api-Key"] = owner.api_key
        assert (await bucket(http, "gs://tendril-test/cli")).status_code == 201
    revoked = await run_cli(settings, "gcs", "revoke", "--owner", owner.name, "gs://tendril-test/cli")
    assert revoked.returncode == 0, revoked.stderr
    assert (await run_cli(settings, "gcs", "grants", "--owner", owner.name)).stdout.split() == []


async def test_an_owners_own_key_reads_an_ungranted_bucket_and_stays_secret(
    tendril: Tendril, gcs: GcsEmulator, google_tokens: tuple[FakeGoogleTokens, str]
) -> None:
    tokens, token_uri = google_tokens
    gcs.filesystem().pipe("tendril-test/theirs/report.csv", b"a,b\n")
    owner = await tendril.new_owner()
    key = service_account(token_uri)
    async with tendril.raw() as http:
        http.headers["X-Api-Key"] = owner.api_key
        made = await bucket(http, "gs://tendril-test/theirs", credentials=key)
        assert made.status_code == 201, made.text
        read = await http.get(f"/connectors/{made.json()['id']}/content", params={"path": "report.csv"})
        listed = await http.get("/connectors")
        bad = await bucket(http, "gs://tendril-test/theirs", credentials={"type": "service_account"})
    assert read.json()["content"] == "a,b\n"
    assert tokens.grants and tokens.grants[0]["iss"] == CLIENT_EMAIL  # reads were signed with their key
    assert tokens.grants[0]["exp"] > time.time()
    assert_error(bad, 400, "BAD_REQUEST", "service-account key")
    for text in (made.text, read.text, listed.text, bad.text):
        assert "PRIVATE KEY" not in text and PRIVATE_PEM.splitlines()[1] not in text
    async with stored_rows(tendril.core.settings) as store, store.engine.connect() as conn:
        rows = (await conn.execute(sa.select(schema.connections.c.credentials))).scalars().all()
    assert not any(row and (PRIVATE_PEM.splitlines()[1] in row or CLIENT_EMAIL in row) for row in rows)
    assert any(row and row.startswith("v1:") for row in rows)
    json.dumps(key)  # (the key the test holds is the only plaintext copy)
