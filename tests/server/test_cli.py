"""The `tendril` command line, run as a real subprocess against the test database."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from uuid import UUID

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from server.cli import main, public_url_mismatch
from server.core.errors import Unauthenticated
from server.settings import ConnectorSettings, Settings
from tests.conftest import TELEGRAM_TOKEN, Fakes, _create_database, child_env
from tests.fakes.loopback import run_asgi_on_loopback
from tests.fakes.stripe import FakeStripe
from tests.support.core import prepared_core
from tests.support.postgres import PostgresCluster


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite only: the CLI shares every storage path with the API, which runs on both engines,
    and each command here is a fresh interpreter (about 2 s)."""
    return f"sqlite+aiosqlite:///{tmp_path / 'tendril.db'}"


def tendril(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *args],
        env=child_env(settings, **env),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def last_line(output: str) -> str:
    return output.strip().splitlines()[-1]


def migrated(settings: Settings) -> None:
    async def prepare() -> None:
        async with prepared_core(settings):
            pass

    asyncio.run(prepare())


def clean_env(**extra: str) -> dict[str, str]:
    """A user's shell: no TENDRIL_* settings but the ones given."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("TENDRIL_")}, **extra}


@dataclass
class Ran:
    code: int
    out: str
    err: str


Cli = Callable[..., Ran]


@pytest.fixture
def cli(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Cli:
    """`tendril ...` in this process, for the commands whose output is checked line by line (a
    fresh interpreter costs about 2 s of imports each), with this test's settings as TENDRIL_*."""
    monkeypatch.chdir(tmp_path)  # no .env of the checkout

    def run(*args: str, **env: str) -> Ran:
        for key in [k for k in os.environ if k.startswith("TENDRIL_")]:
            monkeypatch.delenv(key)
        for key, value in child_env(settings, **env).items():
            if key.startswith("TENDRIL_"):
                monkeypatch.setenv(key, value)
        # main() sets up logging for a process of its own: the root handlers, the root's level and
        # the levels of noisy libraries (httpx, alembic, ...), all put back for the tests after this.
        root, loggers = logging.getLogger(), logging.root.manager.loggerDict
        umask, handlers = os.umask(0o022), root.handlers[:]
        levels = {name: lg.level for name, lg in loggers.items() if isinstance(lg, logging.Logger)}
        levels[""] = root.level
        try:
            code = main(list(args))
        except SystemExit as exit:  # argparse's --version and usage errors
            code = int(exit.code or 0)
        finally:
            os.umask(umask)
            root.handlers[:] = handlers
            for name, logger in [("", root), *loggers.items()]:
                if isinstance(logger, logging.Logger):
                    logger.setLevel(levels.get(name, logging.NOTSET))
        out, err = capsys.readouterr()
        return Ran(code, out, err)

    return run


def test_owner_key_and_agent_commands_print_the_new_key_last(cli: Cli) -> None:
    assert cli("db", "upgrade").code == 0
    owner = cli("owners", "create", "acme")
    assert owner.code == 0, owner.err
    assert last_line(owner.out).startswith("tdl_")

    key = cli("keys", "create", "--owner", "acme", "--name", "ci", "--permission", "read")
    assert key.code == 0, key.err
    assert last_line(key.out).startswith("tdl_") and "['read']" in key.out

    agent = cli("agents", "create", "--owner", "acme", "--name", "bot", "--allow", "slack,telegram")
    assert agent.code == 0, agent.err
    assert last_line(agent.out).startswith("tdl_agent_")

    duplicate = cli("owners", "create", "acme")
    assert duplicate.code == 1 and "already exists" in duplicate.err
    unknown = cli("agents", "create", "--owner", "acme", "--name", "x", "--allow", "slak")
    assert unknown.code == 1
    assert unknown.err == "tendril: unknown connector slug(s): slak (did you mean 'slack'?)\n"
    nobody = cli("keys", "create", "--owner", "acmee")
    assert nobody.code == 1 and "no owner named 'acmee' (did you mean 'acme'?)" in nobody.err
    assert "Traceback" not in nobody.err and " ERROR " not in nobody.err
    command = cli("agent", "list")
    assert command.code == 2 and "invalid choice: 'agent'" in command.err
    assert "(did you mean 'agents'?)" in command.err


def test_production_refuses_to_start_without_a_master_key(settings: Settings) -> None:
    refused = tendril(settings, "db", "upgrade", TENDRIL_ENV="production", TENDRIL_MASTER_KEY="")
    assert refused.returncode == 2
    assert "refusing to start" in refused.stderr and "TENDRIL_MASTER_KEY" in refused.stderr
    assert not (settings.data_dir / "master.key").exists()


def test_first_run_generates_a_private_key_file_and_says_so(settings: Settings) -> None:
    first = tendril(settings, "db", "upgrade", TENDRIL_MASTER_KEY="")
    assert first.returncode == 0, first.stderr
    key_file = settings.data_dir / "master.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert "generated one at" in first.stderr
    second = tendril(settings, "db", "upgrade", TENDRIL_MASTER_KEY="")
    assert second.returncode == 0 and "generated" not in second.stderr
    assert key_file.read_text() == key_file.read_text().strip() + "\n"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_with_the_embedded_default_bootstraps_an_admin_once(tmp_path: Path) -> None:
    """The README's run command: no settings but the port; SQLite and the key under ./.tendril, and
    every URL it prints on that port."""
    port = _free_port()
    out = (tmp_path / "out.txt").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "serve"],
        cwd=tmp_path,
        env=clean_env(TENDRIL_PORT=str(port)),
        stdout=out,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, (tmp_path / "out.txt").read_text()
            assert time.monotonic() < deadline, "tendril serve did not start"
            time.sleep(0.1)
        printed = (tmp_path / "out.txt").read_text()
        key = next(line.strip() for line in printed.splitlines() if line.strip().startswith("tdl_"))
        catalog = httpx.get(f"http://127.0.0.1:{port}/api/v1/connectors", headers={"X-Api-Key": key})
        assert catalog.status_code == 200
        assert {"slack", "telegram", "github"} <= {c["slug"] for c in catalog.json()}
        url = f"http://127.0.0.1:{port}"
        assert f"Tendril serving on {url} (MCP at {url}/mcp)" in printed
        script = Path(sys.executable).parent / "tendril"
        assert f"TENDRIL_PORT={port} {script} agents create --owner admin --name my-agent" in printed
        assert f"curl -X POST {url}/api/v1/agents -H 'Authorization: Bearer {key}'" in printed
        assert ":8080" not in printed
    finally:
        process.terminate()
        process.wait(timeout=15)
        out.close()
    assert (tmp_path / ".tendril" / "tendril.db").exists()
    assert stat.S_IMODE((tmp_path / ".tendril" / "master.key").stat().st_mode) == 0o600


def test_serve_on_a_busy_port_says_why_and_starts_nothing(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        refused = subprocess.run(
            [sys.executable, "-m", "server.cli", "serve", "--port", str(port)],
            cwd=tmp_path,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
    assert refused.returncode == 1
    assert refused.stderr.startswith(f"tendril: serve failed: cannot listen on 127.0.0.1:{port}, ")
    assert "already in use" in refused.stderr and f"--port {port + 1}" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert refused.stdout == ""  # no "serving on", no admin key
    assert list(tmp_path.iterdir()) == []  # no database, no key file


def test_a_public_url_naming_this_machine_at_another_port_is_warned_about() -> None:
    derived = Settings(port=18080)
    assert derived.public_url == "http://127.0.0.1:18080"
    assert public_url_mismatch(derived, "127.0.0.1", 18080) is None
    stale = Settings(port=18080, public_url="http://127.0.0.1:8080")
    warning = public_url_mismatch(stale, "127.0.0.1", 18080)
    assert warning is not None and "TENDRIL_PUBLIC_URL is http://127.0.0.1:8080" in warning
    assert "listens on 127.0.0.1:18080" in warning and "Unset TENDRIL_PUBLIC_URL" in warning
    assert public_url_mismatch(Settings(public_url="http://localhost:9000"), "0.0.0.0", 9001)
    # Another host name may be a proxy in front of this server: not judged.
    assert public_url_mismatch(Settings(public_url="https://hub.example.com"), "0.0.0.0", 8080) is None
    assert public_url_mismatch(Settings(public_url="http://localhost:9000"), "127.0.0.1", 9000) is None


def test_commands_other_than_serve_create_no_database_and_say_where_they_looked(tmp_path: Path) -> None:
    elsewhere = tmp_path / "another-folder"
    elsewhere.mkdir()
    lost = subprocess.run(
        [sys.executable, "-m", "server.cli", "agents", "create", "--owner", "admin", "--name", "a"],
        cwd=elsewhere,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert lost.returncode == 2 and lost.stdout == ""
    data_dir = elsewhere / ".tendril"
    assert lost.stderr.startswith(f"tendril: no Tendril database at {data_dir / 'tendril.db'}, ")
    for said in (
        f"data dir {data_dir}",
        f"database sqlite+aiosqlite:///{data_dir / 'tendril.db'}",
        f"working directory {elsewhere}",
        "TENDRIL_DATA_DIR=",
        "TENDRIL_DATABASE_URL",
    ):
        assert said in lost.stderr
    assert "Traceback" not in lost.stderr
    assert list(elsewhere.iterdir()) == []  # no second .tendril, no new master.key


def test_a_database_without_its_master_key_is_refused_without_making_a_key(
    cli: Cli, settings: Settings
) -> None:
    assert cli("db", "upgrade").code == 0
    keyless = cli("owners", "list", TENDRIL_MASTER_KEY="")
    assert keyless.code == 2
    assert "TENDRIL_MASTER_KEY is not set" in keyless.err and "master.key does not exist" in keyless.err
    assert not (settings.data_dir / "master.key").exists()


def test_an_empty_postgresql_database_is_left_empty(cli: Cli, postgres: PostgresCluster) -> None:
    url = postgres.url().rsplit("/", 1)[0] + f"/{_create_database(postgres)}"
    refused = cli("connections", "list", TENDRIL_DATABASE_URL=url)
    assert refused.code == 2 and "holds no Tendril tables" in refused.err
    assert postgres.password not in refused.err and "***" in refused.err  # the password is not repeated

    async def tables() -> list[str]:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(lambda sync: sa.inspect(sync).get_table_names())
        finally:
            await engine.dispose()

    assert asyncio.run(tables()) == []


def test_version_is_the_installed_package_s(cli: Cli) -> None:
    assert cli("--version").out == f"tendril {metadata.version('tendril')}\n"


def test_list_rotate_and_delete_owners_keys_and_agents(cli: Cli, settings: Settings) -> None:
    assert cli("db", "upgrade").code == 0
    made = cli("owners", "create", "acme")
    assert made.code == 0
    owners = cli("owners", "list")
    assert owners.out.splitlines()[0].split() == ["name", "id", "created", "keys", "agents", "connections"]
    assert owners.out.splitlines()[1].split()[0] == "acme"

    typo = cli("keys", "create", "--owner", "acme", "--name", "ci", "--permission", "reed")
    assert typo.code == 1 and typo.out == ""
    assert typo.err.startswith("tendril: unknown permission 'reed' (did you mean 'read'?); choose from read,")
    first = cli("keys", "create", "--owner", "acme", "--name", "ci", "--permission", "read").out.splitlines()[
        -1
    ]
    listed = json.loads(cli("keys", "list", "--owner", "acme", "--json").out)
    ci = next(k for k in listed if k["name"] == "ci")
    assert ci["permissions"] == "read" and first.startswith(ci["prefix"])
    assert first not in cli("keys", "list", "--owner", "acme").out

    rotated = cli("keys", "rotate", "--owner", "acme", "ci")
    assert rotated.code == 0
    second = rotated.out.splitlines()[-1]
    assert second.startswith("tdl_") and second != first
    assert _owner_key_works(settings, second) and not _owner_key_works(settings, first)
    assert json.loads(cli("keys", "list", "--owner", "acme", "--json").out)[0]["id"] == ci["id"]
    assert cli("keys", "delete", "--owner", "acme", ci["prefix"]).code == 1  # the old prefix is gone
    assert cli("keys", "delete", "--owner", "acme", ci["id"]).code == 0
    assert not _owner_key_works(settings, second)
    assert ci["id"] not in cli("keys", "list", "--owner", "acme").out
    assert ci["id"] in cli("keys", "list", "--owner", "acme", "--all").out

    toolless = cli("agents", "create", "--owner", "acme", "--name", "bare")
    assert toolless.code == 0 and "is allowed no connectors, so it will see no tools" in toolless.err
    helper = cli("agents", "create", "--owner", "acme", "--name", "helper", "--allow", "slack,telegram")
    old_key = helper.out.splitlines()[-1]
    assert f"MCP endpoint: {settings.public_url}/mcp" in helper.out
    agents = json.loads(cli("agents", "list", "--owner", "acme", "--json").out)
    assert [(a["name"], a["allowed"]) for a in agents] == [("helper", "slack,telegram"), ("bare", "(none)")]
    missing = cli("agents", "rotate-key", "--owner", "acme", "helpr")
    assert missing.code == 1 and missing.err == "tendril: no agent 'helpr' (did you mean 'helper'?).\n"
    new_key = cli("agents", "rotate-key", "--owner", "acme", "helper").out.splitlines()[-1]
    assert new_key.startswith("tdl_agent_") and new_key != old_key
    assert _agent_of(settings, old_key) is None
    assert _agent_of(settings, new_key) == agents[0]["id"]
    assert cli("agents", "delete", "--owner", "acme", "bare").code == 0
    assert [a["name"] for a in json.loads(cli("agents", "list", "--owner", "acme", "--json").out)] == [
        "helper"
    ]

    assert cli("connections", "list").err == "No connections.\n"
    connection_id = _connect_telegram(settings, "acme")
    table = cli("connections", "list", "--owner", "acme").out.splitlines()
    assert table[1].split()[:5] == [connection_id, "acme", "telegram", "Telegram", "active"]

    uploaded = _upload_file(settings, "acme", b"notes of acme")

    unasked = cli("owners", "delete", "acme")
    assert unasked.code == 1 and "add --yes" in unasked.err
    deleted = cli("owners", "delete", "acme", "--yes")
    assert deleted.code == 0, deleted.err
    assert f"Connection {connection_id} (telegram) revoked." in deleted.err
    # The owner's uploaded content goes with them.
    assert not uploaded.exists() or not [p for p in uploaded.rglob("*") if p.is_file()]
    assert cli("owners", "list").err == "No owners yet.\n"
    assert _agent_of(settings, new_key) is None
    gone = cli("agents", "list", "--owner", "acme")
    assert gone.code == 1 and "this database has no owners yet" in gone.err


def _owner_key_works(settings: Settings, key: str) -> bool:
    async def check() -> bool:
        async with prepared_core(settings) as core:
            try:
                await core.identity.authenticate_owner(key)
            except Unauthenticated:
                return False
            return True

    return asyncio.run(check())


def _agent_of(settings: Settings, key: str) -> str | None:
    async def check() -> str | None:
        async with prepared_core(settings) as core:
            agent = await core.identity.authenticate_agent(key)
            return str(agent.id) if agent else None

    return asyncio.run(check())


def _connect_telegram(settings: Settings, owner_name: str) -> str:
    async def connect() -> str:
        async with prepared_core(settings) as core:
            owner = await core.identity.owner_named(owner_name)
            made, _ = await core.connections.start(owner.id, core.catalog["telegram"])
            await core.connections.submit_credentials(owner.id, made.id, {"bot_token": TELEGRAM_TOKEN})
            return str(made.id)

    return asyncio.run(connect())


def _upload_file(settings: Settings, owner_name: str, content: bytes) -> Path:
    """A local file connection with content, uploaded through the files use case; the folder
    that keeps it."""

    async def upload() -> Path:
        async with prepared_core(settings) as core:
            owner = await core.identity.owner_named(owner_name)
            made = await core.files.create(owner.id, name="notes", kind="local_file", filename="notes.txt")

            async def chunks() -> AsyncIterator[bytes]:
                yield content

            ref = f"conn_{made.id.hex}"
            await core.files.upload(owner.id, ref, chunks(), declared_length=len(content), content_type=None)
            [folder] = [p for p in (settings.data_dir / "files").iterdir() if p.name == made.id.hex]
            assert content in [p.read_bytes() for p in folder.rglob("*") if p.is_file()]
            return folder

    return asyncio.run(upload())


def test_webhooks_setup_registers_telegram_and_hands_out_console_urls(
    settings: Settings, fakes: Fakes
) -> None:
    async def connections() -> tuple[str, str]:
        async with prepared_core(settings) as core:
            owner = await core.identity.create_owner("hooks")
            telegram, _ = await core.connections.start(owner.id, core.catalog["telegram"])
            await core.connections.submit_credentials(owner.id, telegram.id, {"bot_token": TELEGRAM_TOKEN})
            github, _ = await core.connections.start(owner.id, core.catalog["github"], label="gh")
            return str(telegram.id), str(github.id)

    telegram_id, github_id = asyncio.run(connections())
    base = {"TENDRIL_WEBHOOK_BASE_URL": "https://hooks.tendril.test"}
    made = tendril(settings, "webhooks", "setup", "telegram", "--connection", telegram_id, **base)
    assert made.returncode == 0, made.stderr
    registered = fakes.telegram.webhooks[TELEGRAM_TOKEN]
    assert registered["url"] in made.stdout and registered["url"].startswith("https://hooks.tendril.test/")
    assert registered["secret_token"] and registered["secret_token"] not in made.stdout + made.stderr
    github = tendril(
        settings, "webhooks", "setup", "github", "--connection", github_id, "--secret", "secret=s3", **base
    )
    assert github.returncode == 0, github.stderr
    assert "paste https://hooks.tendril.test/api/v1/connectors/webhooks/github/" in github.stdout
    assert UUID(github.stdout.split("endpoint ")[1].split(".")[0])
    internal = tendril(
        settings, "webhooks", "setup", "github", "--connection", github_id, "--secret", "secret=s3"
    )
    assert internal.returncode != 0 and "TENDRIL_WEBHOOK_BASE_URL" in internal.stderr


def test_webhooks_setup_register_creates_the_stripe_endpoint_through_its_api(settings: Settings) -> None:
    stripe = FakeStripe()
    stripe.add_key("sk_test_51CanaryCliHooksQw7Zx9Lm2")

    with run_asgi_on_loopback(stripe.app) as stripe_url:
        stripe_settings = settings.model_copy(
            update={"connectors": {**settings.connectors, "stripe": ConnectorSettings(api_base=stripe_url)}}
        )

        async def connection() -> str:
            async with prepared_core(stripe_settings) as core:
                owner = await core.identity.create_owner("stripe-hooks")
                made, _ = await core.connections.start(owner.id, core.catalog["stripe"])
                await core.connections.submit_credentials(
                    owner.id, made.id, {"secret_key": "sk_test_51CanaryCliHooksQw7Zx9Lm2"}
                )
                return str(made.id)

        connection_id = asyncio.run(connection())
        made = tendril(
            settings,
            "webhooks",
            "setup",
            "stripe",
            "--connection",
            connection_id,
            "--register",
            "--event",
            "invoice.paid",
            TENDRIL_WEBHOOK_BASE_URL="https://hooks.tendril.test",
            TENDRIL_STRIPE_API_BASE=stripe_url,
        )
        assert made.returncode == 0, made.stderr
        [endpoint] = stripe.webhook_endpoints.values()
        assert endpoint["enabled_events"] == ["invoice.paid"] and endpoint["url"] in made.stdout
        assert f"created Stripe webhook endpoint {endpoint['id']}" in made.stdout
        assert endpoint["secret"] not in made.stdout + made.stderr

        ours = made.stdout.split("webhook endpoint ")[1].split(".")[0]
        deleted = tendril(
            settings,
            "webhooks",
            "delete",
            ours,
            TENDRIL_WEBHOOK_BASE_URL="https://hooks.tendril.test",
            TENDRIL_STRIPE_API_BASE=stripe_url,
        )
        assert deleted.returncode == 0, deleted.stderr
        assert f"Deleted stripe webhook endpoint {ours}." in deleted.stdout
        assert "removed the hook at Stripe" in deleted.stdout and stripe.webhook_endpoints == {}
