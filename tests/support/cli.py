"""Running the `tendril` command line against a test's database, from an async test."""

from __future__ import annotations

import subprocess
import sys

import anyio

from server.settings import Settings
from tests.conftest import child_env


async def run_cli(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    with anyio.fail_after(60):
        done = await anyio.run_process(
            [sys.executable, "-m", "server.cli", *args], env=child_env(settings, **env), check=False
        )
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(), done.stderr.decode())
