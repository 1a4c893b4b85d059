"""End-to-end fixtures: one real `tendril serve` per module, driven by external Node MCP clients.

These tests run on SQLite only; the other suites cover PostgreSQL. The process is module-scoped
to keep runtime small, so it gets its own module-scoped settings and fake providers, served on
the session-wide fake sockets of tests/conftest.py.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from auth.crypto import generate_key
from clients import TendrilClient
from server.settings import ConnectorSettings, Settings
from tests.conftest import SLACK_TOKEN, TELEGRAM_TOKEN, Owner, _bootstrap_owner
from tests.e2e.tendril_process import TendrilProcess, tendril_serve
from tests.fakes.slack import FakeSlack
from tests.fakes.telegram import FakeTelegram
from tests.support import node_tools
from tests.support.asgi import Swappable


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """Overrides the SQLite+PostgreSQL parametrization: e2e runs on one engine."""
    return f"sqlite+aiosqlite:///{tmp_path / 'tendril.db'}"


@dataclass(frozen=True)
class NodeTools:
    inspector: list[str]
    conformance: list[str]


@pytest.fixture(scope="session")
def node_clis() -> NodeTools:
    """The Node CLIs; missing tools fail the run on CI and skip it locally."""
    try:
        return NodeTools(node_tools.inspector_cli(), node_tools.conformance_cli())
    except RuntimeError as exc:
        message = f"MCP Node tools unavailable: {exc}"
        if "scripts/ensure-node-tools" not in message:
            message += " Run scripts/ensure-node-tools."
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


CLI_TIMEOUT = 120.0
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_BEARER = re.compile(r"Bearer \S+")

NodeRunner = Callable[[list[str]], subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def run_node(tmp_path_factory: pytest.TempPathFactory) -> NodeRunner:
    """Runs a Node CLI with Node 22 first on PATH, in (and with HOME at) a throwaway directory."""
    home = tmp_path_factory.mktemp("node-home")
    env = node_tools.node_env(home)

    def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv, cwd=home, env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT, check=False
        )

    return run


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def describe(result: subprocess.CompletedProcess[str]) -> str:
    """A CLI run's exit code and output, colours stripped, for assertion messages."""
    out, err = strip_ansi(result.stdout), strip_ansi(result.stderr)
    command = _BEARER.sub("Bearer ***", " ".join(result.args))
    return f"exit {result.returncode}: {command}\n--- stdout ---\n{out}\n--- stderr ---\n{err}"


@dataclass
class E2EFakes:
    slack: FakeSlack
    telegram: FakeTelegram


@pytest.fixture(scope="module")
def e2e_fakes(
    _slack_server: tuple[Swappable, str], _telegram_server: tuple[Swappable, str]
) -> Iterator[E2EFakes]:
    slack, telegram = FakeSlack(), FakeTelegram()
    slack.add_token(SLACK_TOKEN)
    telegram.add_bot(TELEGRAM_TOKEN)
    yield E2EFakes(slack, telegram)


@pytest.fixture(autouse=True)
def _install_e2e_fakes(
    e2e_fakes: E2EFakes, _slack_server: tuple[Swappable, str], _telegram_server: tuple[Swappable, str]
) -> None:
    """Re-installed per test: a function-scoped `fakes` elsewhere may have swapped the targets."""
    _slack_server[0].target = e2e_fakes.slack.app
    _telegram_server[0].target = e2e_fakes.telegram.app


@pytest.fixture(scope="module")
def e2e_settings(
    tmp_path_factory: pytest.TempPathFactory,
    _slack_server: tuple[Swappable, str],
    _telegram_server: tuple[Swappable, str],
) -> Settings:
    tmp = tmp_path_factory.mktemp("e2e")
    return Settings(
        env="test",
        data_dir=tmp / "data",
        database_url=f"sqlite+aiosqlite:///{tmp / 'tendril.db'}",
        master_key=generate_key(),
        public_url="http://127.0.0.1:8080",  # replaced by the real port in the child's env
        action_timeout_seconds=5,
        max_retry_wait_seconds=2,
        connectors={
            "slack": ConnectorSettings(api_base=f"{_slack_server[1]}/api/"),
            "telegram": ConnectorSettings(api_base=_telegram_server[1]),
        },
    )


@dataclass
class LiveProcess:
    """A running `tendril serve` with a Slack connection and an agent allowed `slack`."""

    tendril: TendrilProcess
    admin: Owner
    agent_key: str
    fakes: E2EFakes

    @property
    def mcp_url(self) -> str:
        return f"{self.tendril.url}/mcp"


async def _connect_slack_agent(url: str, admin_key: str) -> str:
    async with TendrilClient(url, api_key=admin_key) as client:
        started = await client.create_connection("slack")
        connection = await client.submit_credentials(started.connection.id, {"bot_token": SLACK_TOKEN})
        assert connection.status == "active", connection
        created = await client.create_agent("e2e-agent", ["slack"])
    return created.api_key


@pytest.fixture(scope="module")
def live_process(
    node_clis: NodeTools,  # checked first: no point starting Tendril without the clients
    e2e_settings: Settings,
    e2e_fakes: E2EFakes,
    _slack_server: tuple[Swappable, str],
    _telegram_server: tuple[Swappable, str],
) -> Iterator[LiveProcess]:
    # The owner exists before the first start, so `serve` prints no bootstrap key.
    admin = _bootstrap_owner(e2e_settings, "admin")
    _slack_server[0].target = e2e_fakes.slack.app  # credential check runs before any test body
    _telegram_server[0].target = e2e_fakes.telegram.app
    with tendril_serve(e2e_settings, e2e_settings.data_dir.parent / "proc") as proc:
        agent_key = asyncio.run(_connect_slack_agent(proc.url, admin.api_key))
        yield LiveProcess(proc, admin, agent_key, e2e_fakes)
