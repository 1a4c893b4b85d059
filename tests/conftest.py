"""Shared fixtures: both database engines, loopback fakes, and Tendril in-process or on a socket.

Every test that takes `database_url` (directly or through `settings`/`tendril`) runs twice: on
SQLite and on a throwaway PostgreSQL cluster started once per session. Its database is a copy of
one migrated at the start of the session; `empty_database_url` is one with no schema.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from auth.crypto import generate_key
from clients import TendrilClient
from server.app import build_app, build_core
from server.core import Core
from server.settings import ConnectorSettings, Settings
from server.web.serving import protocol_with_deadlines
from storage import db
from tests.fakes.loopback import run_asgi_on_loopback
from tests.fakes.oauth import FakeOAuthProvider
from tests.fakes.slack import FakeSlack
from tests.fakes.telegram import FakeTelegram
from tests.support.asgi import Swappable
from tests.support.core import MovableClock
from tests.support.gcs import GcsEmulator, gcs_emulator
from tests.support.postgres import PostgresCluster, throwaway_postgres
from tests.support.webhooks import GOOGLE_CERTS

# Canary secrets: tests assert these never show up in a response, a log line or a tool result.
SLACK_TOKEN = "xoxb-1111-2222-CanarySlackSecret9f3k"
TELEGRAM_TOKEN = "987654321:CanaryTelegramSecretAbCdEfGhIjKlMnOp"


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


# -- databases -----------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    with throwaway_postgres() as cluster:
        yield cluster


# Every test's database starts as a copy of one migrated when the session began: running the
# migrations costs a quarter of a second a database, copying a template a twentieth.
_TEMPLATE = "t_migrated"


async def _migrate(url: str) -> None:
    engine = db.create_engine(url)
    try:
        await db.upgrade(engine)
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def _postgres_template(postgres: PostgresCluster) -> str:
    _create_database(postgres, name=_TEMPLATE, template="template1")
    asyncio.run(_migrate(postgres.url().rsplit("/", 1)[0] + f"/{_TEMPLATE}"))
    return _TEMPLATE


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "tendril.db"
    asyncio.run(_migrate(f"sqlite+aiosqlite:///{path}"))  # closed: nothing is left in a WAL file
    return path


def _on_cluster(cluster: PostgresCluster, statement: str) -> None:
    """One statement on the cluster's maintenance database (outside any transaction)."""

    async def run() -> None:
        conn = await asyncpg.connect(cluster.url(driver=""))
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


def _create_database(
    cluster: PostgresCluster, *, name: str | None = None, template: str = "template1"
) -> str:
    name = name or f"t_{uuid.uuid4().hex[:16]}"
    _on_cluster(cluster, f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return name


def _drop_database(cluster: PostgresCluster, name: str) -> None:
    _on_cluster(cluster, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def empty_database_url(database_url: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database with no schema yet, on the engine `database_url` is on (both, then)."""
    if database_url.startswith("sqlite"):
        return f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    return cluster.url().rsplit("/", 1)[0] + f"/{_create_database(cluster)}"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database already at the newest migration (Tendril's start then has nothing to do)."""
    if request.param == "sqlite":
        path = tmp_path / "tendril.db"
        shutil.copyfile(request.getfixturevalue("_sqlite_template"), path)
        return f"sqlite+aiosqlite:///{path}"
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    name = _create_database(cluster, template=request.getfixturevalue("_postgres_template"))
    # Dropped after the test: a thousand databases of 8 MB each would cost their writing and,
    # at the session's end, half a minute of deleting.
    request.addfinalizer(lambda: _drop_database(cluster, name))
    return cluster.url().rsplit("/", 1)[0] + f"/{name}"


# -- fake providers ---------------------------------------------------------------------------
def swappable_server() -> Iterator[tuple[Swappable, str]]:
    """One loopback server per session; each test installs a fresh fake behind it."""
    holder = Swappable()
    with run_asgi_on_loopback(holder) as url:
        yield holder, url


@pytest.fixture(scope="session")
def _slack_server() -> Iterator[tuple[Swappable, str]]:
    yield from swappable_server()


@pytest.fixture(scope="session")
def _telegram_server() -> Iterator[tuple[Swappable, str]]:
    yield from swappable_server()


@dataclass
class Fakes:
    slack: FakeSlack
    slack_url: str
    telegram: FakeTelegram
    telegram_url: str


@pytest.fixture
def fakes(_slack_server: tuple[Swappable, str], _telegram_server: tuple[Swappable, str]) -> Fakes:
    """Fresh provider state per test, served on session-wide loopback sockets."""
    slack, telegram = FakeSlack(), FakeTelegram()
    slack.add_token(SLACK_TOKEN)
    telegram.add_bot(TELEGRAM_TOKEN)
    _slack_server[0].target = slack.app
    _telegram_server[0].target = telegram.app
    return Fakes(slack, f"{_slack_server[1]}/api/", telegram, _telegram_server[1])


# -- Tendril ----------------------------------------------------------------------------------
@pytest.fixture
def master_key() -> str:
    return generate_key()


@pytest.fixture(scope="session")
def gcs() -> Iterator[GcsEmulator]:
    with gcs_emulator() as emulator:
        yield emulator


@pytest.fixture
def settings(database_url: str, tmp_path: Path, fakes: Fakes, master_key: str, gcs: GcsEmulator) -> Settings:
    return Settings(
        env="test",
        data_dir=tmp_path / "data",
        database_url=database_url,
        master_key=master_key,
        public_url="http://127.0.0.1:8080",
        action_timeout_seconds=5,
        max_retry_wait_seconds=2,
        gcs_token="anon",
        gcs_endpoint_url=gcs.url,
        gcs_grants="admin=gs://tendril-test",  # the owner live servers bootstrap
        # Tests that send wrong keys on purpose are not about throttling (tests/security/ is).
        auth_failures_per_client=100_000,
        auth_failures_per_key_prefix=100_000,
        # Nor are tests that make many requests with one key (tests/server/test_rate_limits.py is).
        api_rate_limit=100_000,
        agent_tool_call_rate_limit=100_000,
        connectors={
            "slack": ConnectorSettings(api_base=fakes.slack_url),
            "telegram": ConnectorSettings(api_base=fakes.telegram_url),
        },
    )


@dataclass
class Owner:
    name: str
    id: str
    api_key: str


class Tendril:
    """Tendril running in-process; REST calls go through httpx's ASGI transport."""

    def __init__(self, app: object, core: Core, base_url: str, clock: MovableClock) -> None:
        self.app = app
        self.core = core
        self.clock = clock
        self.base_url = base_url
        self._clients: list[TendrilClient] = []

    def transport(self) -> httpx.AsyncBaseTransport | None:
        return httpx.ASGITransport(app=self.app)  # type: ignore[arg-type]

    def client(self, api_key: str) -> TendrilClient:
        client = TendrilClient(self.base_url, api_key=api_key, transport=self.transport())
        self._clients.append(client)
        return client

    def raw(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url, transport=self.transport())

    async def new_owner(self, name: str | None = None, permissions: list[str] | None = None) -> Owner:
        name = name or f"owner-{secrets.token_hex(3)}"
        owner = await self.core.identity.create_owner(name)
        key = await self.core.identity.create_api_key(
            owner.id, name="test", permissions=permissions or ["admin"]
        )
        return Owner(name, str(owner.id), key.plaintext)

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()


@asynccontextmanager
async def running_tendril(settings: Settings) -> AsyncIterator[Tendril]:
    clock = MovableClock()
    core = build_core(settings, clock=clock)
    app = build_app(settings, core=core)
    async with app.router.lifespan_context(app):
        instance = Tendril(app, core, "http://127.0.0.1:8080", clock)
        try:
            yield instance
        finally:
            await instance.aclose()


@pytest.fixture
async def tendril(settings: Settings) -> AsyncIterator[Tendril]:
    async with running_tendril(settings) as instance:
        yield instance


# -- OAuth ----------------------------------------------------------------------------------------
CALLBACK_URL = "http://127.0.0.1:8080/api/v1/connections/oauth/callback"


@pytest.fixture(scope="session")
def _oauth_server() -> Iterator[tuple[Swappable, str]]:
    yield from swappable_server()


@pytest.fixture(scope="session")
def _slack_oauth_server() -> Iterator[tuple[Swappable, str]]:
    yield from swappable_server()


@dataclass
class OAuthFakes:
    github: FakeOAuthProvider  # a standard RFC 6749 server with PKCE, playing GitHub
    github_url: str
    slack: FakeOAuthProvider  # Slack-shaped oauth.v2.access
    slack_url: str


@pytest.fixture
def oauth_fakes(
    _oauth_server: tuple[Swappable, str], _slack_oauth_server: tuple[Swappable, str], fakes: Fakes
) -> OAuthFakes:
    github = FakeOAuthProvider()
    github.register_client("github-client", "github-secret-canary-7f3", [CALLBACK_URL], "client_secret_post")
    slack = FakeOAuthProvider(token_response_style="slack", require_pkce=False)
    slack.register_client("slack-client", "slack-secret-canary-9d1", [CALLBACK_URL], "client_secret_basic")
    fakes.slack.token_authority = lambda token: token in slack.valid_access_tokens()
    _oauth_server[0].target = github.app
    _slack_oauth_server[0].target = slack.app
    return OAuthFakes(github, _oauth_server[1], slack, _slack_oauth_server[1])


def oauth_connector(url: str, client_id: str, secret: str, api_base: str | None = None) -> ConnectorSettings:
    return ConnectorSettings(
        api_base=api_base,
        client_id=client_id,
        client_secret=SecretStr(secret),
        authorize_url=f"{url}/oauth/authorize",
        token_url=f"{url}/oauth/token",
        revoke_url=f"{url}/oauth/revoke",
    )


@pytest.fixture
def oauth_settings(settings: Settings, oauth_fakes: OAuthFakes, fakes: Fakes) -> Settings:
    """Slack and GitHub with OAuth clients pointing at the fake authorization servers."""
    connectors = {
        **settings.connectors,
        "slack": oauth_connector(
            oauth_fakes.slack_url, "slack-client", "slack-secret-canary-9d1", fakes.slack_url
        ),
        "github": oauth_connector(oauth_fakes.github_url, "github-client", "github-secret-canary-7f3"),
    }
    return settings.model_copy(update={"connectors": connectors})


@pytest.fixture
async def oauth_tendril(oauth_settings: Settings) -> AsyncIterator[Tendril]:
    async with running_tendril(oauth_settings) as instance:
        yield instance


# -- provider webhooks -------------------------------------------------------------------------
WEBHOOK_BASE = "https://hooks.tendril.test"
WEBHOOK_LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def google_certs_url() -> Iterator[str]:
    async def certs(_request: object) -> JSONResponse:
        return JSONResponse(GOOGLE_CERTS)

    with run_asgi_on_loopback(Starlette(routes=[Route("/certs", certs)])) as url:
        yield f"{url}/certs"


@pytest.fixture
async def hub_app(settings: Settings, google_certs_url: str) -> AsyncIterator[Tendril]:
    # Gmail connections take OAuth; its client is never used here (push only needs the connection).
    gmail = ConnectorSettings(client_id="gmail-client", client_secret=SecretStr("gmail-secret"))
    configured = settings.model_copy(
        update={
            "webhook_base_url": WEBHOOK_BASE,
            "webhook_max_body_bytes": WEBHOOK_LIMIT,
            "google_certs_url": google_certs_url,
            "connectors": {**settings.connectors, "gmail": gmail},
        }
    )
    async with running_tendril(configured) as tendril:
        yield tendril


@dataclass
class LiveTendril:
    """Tendril served by uvicorn on a loopback socket, for real MCP and HTTP clients."""

    url: str
    settings: Settings
    admin: Owner

    def client(self, api_key: str | None = None) -> TendrilClient:
        return TendrilClient(self.url, api_key=api_key or self.admin.api_key)


def _bootstrap_owner(settings: Settings, name: str) -> Owner:
    async def work() -> Owner:
        core = build_core(settings)
        try:
            await core.prepare()
            owner = await core.identity.create_owner(name)
            key = await core.identity.create_api_key(owner.id, name="test", permissions=["admin"])
            return Owner(name, str(owner.id), key.plaintext)
        finally:
            await core.aclose()

    return asyncio.run(work())


@contextmanager
def serving(settings: Settings) -> Iterator[LiveTendril]:
    admin = _bootstrap_owner(settings, "admin")
    app = build_app(settings)
    with run_asgi_on_loopback(app, lifespan="on", http=protocol_with_deadlines(settings)) as url:
        live_settings = settings.model_copy(update={"public_url": url})
        yield LiveTendril(url, live_settings, admin)


@pytest.fixture
def live_tendril(settings: Settings) -> Iterator[LiveTendril]:
    with serving(settings) as live:
        yield live


@pytest.fixture
def oauth_live_tendril(oauth_settings: Settings) -> Iterator[LiveTendril]:
    """Served on a socket, with OAuth clients for Slack and GitHub (links still say :8080)."""
    with serving(oauth_settings) as live:
        yield live


def child_env(settings: Settings, **extra: str) -> dict[str, str]:
    """Environment for a `tendril` subprocess that shares this test's database and fakes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENDRIL_")}
    env.update(
        TENDRIL_ENV="test",
        TENDRIL_DATA_DIR=str(settings.data_dir),
        TENDRIL_DATABASE_URL=settings.resolved_database_url,
        TENDRIL_MASTER_KEY=settings.master_key.get_secret_value() if settings.master_key else "",
        TENDRIL_PUBLIC_URL=settings.public_url,
    )
    for slug, overrides in settings.connectors.items():
        if overrides.api_base:
            env[f"TENDRIL_{slug.upper()}_API_BASE"] = overrides.api_base
    env.update(extra)
    return env


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
