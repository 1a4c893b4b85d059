"""The `tendril` command line, run as a real subprocess against the test database."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from uuid import UUID

import httpx
import pytest

from server.settings import ConnectorSettings, Settings
from tests.conftest import TELEGRAM_TOKEN, Fakes, child_env
from tests.fakes.loopback import run_asgi_on_loopback
from tests.fakes.stripe import FakeStripe
from tests.support.core import prepared_core


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


def test_owner_key_and_agent_commands_print_the_new_key_last(settings: Settings) -> None:
    owner = tendril(settings, "owners", "create", "acme")
    assert owner.returncode == 0, owner.stderr
    assert last_line(owner.stdout).startswith("tdl_")

    key = tendril(settings, "keys", "create", "--owner", "acme", "--name", "ci", "--permission", "read")
    assert key.returncode == 0, key.stderr
    assert last_line(key.stdout).startswith("tdl_") and "['read']" in key.stdout

    agent = tendril(
        settings, "agents", "create", "--owner", "acme", "--name", "bot", "--allow", "slack,telegram"
    )
    assert agent.returncode == 0, agent.stderr
    assert last_line(agent.stdout).startswith("tdl_agent_")

    duplicate = tendril(settings, "owners", "create", "acme")
    assert duplicate.returncode == 1 and "already exists" in duplicate.stderr
    unknown = tendril(settings, "agents", "create", "--owner", "acme", "--name", "x", "--allow", "fax")
    assert unknown.returncode == 1 and "unknown connector slug(s): fax" in unknown.stderr
    nobody = tendril(settings, "keys", "create", "--owner", "nobody")
    assert nobody.returncode == 1 and "no owner named 'nobody'" in nobody.stderr


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
    """The README's run command: no settings at all, SQLite and the key under ./.tendril."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENDRIL_")}
    env["TENDRIL_PORT"] = str(port)
    out = (tmp_path / "out.txt").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "serve"],
        cwd=tmp_path,
        env=env,
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
        assert "tendril agents create --owner admin" in printed
    finally:
        process.terminate()
        process.wait(timeout=15)
        out.close()
    assert (tmp_path / ".tendril" / "tendril.db").exists()
    assert stat.S_IMODE((tmp_path / ".tendril" / "master.key").stat().st_mode) == 0o600


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
