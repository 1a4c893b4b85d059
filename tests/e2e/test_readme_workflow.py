"""README's "A complete example" of workflows, run as written but for the ports and the key: a real
`tendril serve` with the fake Slack, the README's receiver.py, and its shell block run by bash.
The receiver must print the workflow.completed event it verified, and the example's own last
command the reply's output."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from server.settings import Settings
from tests.conftest import SLACK_TOKEN
from tests.e2e.tendril_process import free_port, tendril_serve
from tests.support.core import prepared_core

ROOT = Path(__file__).resolve().parents[2]
README_PORT, RECEIVER_PORT = "18080", "9000"  # as the README writes them


def example_blocks() -> tuple[str, str]:
    """The receiver (python) and the commands (sh) of README's "A complete example"."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("#### A complete example", 1)[1].split("\n### ", 1)[0]
    receiver = re.search(r"```python\n(.*?)```", section, re.S)
    commands = re.search(r"```sh\n(.*?)```", section, re.S)
    assert receiver and commands, "README's complete example lost its python or sh block"
    return receiver.group(1), commands.group(1)


async def _owner_with_slack(settings: Settings) -> str:
    async with prepared_core(settings) as core:
        owner = await core.identity.create_owner("readme")
        key = await core.identity.create_api_key(owner.id, name="readme", permissions=["admin"])
        connection, _ = await core.connections.start(owner.id, core.catalog["slack"])
        await core.connections.submit_credentials(owner.id, connection.id, {"bot_token": SLACK_TOKEN})
        return key.plaintext


@pytest.mark.timeout(120)
def test_the_readme_workflow_example_runs_as_written(e2e_settings: Settings, tmp_path: Path) -> None:
    receiver_code, commands = example_blocks()
    assert f"TENDRIL_PUSH_ALLOWED_HOSTS=127.0.0.1:{RECEIVER_PORT}" in (ROOT / "README.md").read_text()
    key = asyncio.run(_owner_with_slack(e2e_settings))
    receiver_port = str(free_port())
    workdir = tmp_path / "example"
    workdir.mkdir()
    (workdir / "receiver.py").write_text(receiver_code.replace(f", {RECEIVER_PORT})", f", {receiver_port})"))
    allowed = {"TENDRIL_PUSH_ALLOWED_HOSTS": f"127.0.0.1:{receiver_port}"}
    with tendril_serve(e2e_settings, tmp_path / "serve", **allowed) as tendril:
        port = tendril.url.rsplit(":", 1)[1]
        script = (
            commands.replace(f"TENDRIL_PORT={README_PORT}", f"TENDRIL_PORT={port}")
            .replace("TENDRIL_KEY=tdl_...", f"TENDRIL_KEY={key}")
            .replace(f"127.0.0.1:{RECEIVER_PORT}/", f"127.0.0.1:{receiver_port}/")
        )
        assert script.count(receiver_port) == 1 and f"TENDRIL_PORT={port}" in script
        # The receiver, started in the background by the script, runs until its process group ends.
        with (workdir / "out.txt").open("w") as out:
            shell = subprocess.Popen(
                ["bash", "-euo", "pipefail", "-c", script],
                cwd=workdir,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={"PATH": os.environ["PATH"], "HOME": str(workdir)},
                start_new_session=True,
            )
        try:
            assert shell.wait(timeout=60) == 0, (workdir / "out.txt").read_text()
            deadline = time.monotonic() + 20
            while (
                "workflow.completed" not in (workdir / "out.txt").read_text() and time.monotonic() < deadline
            ):
                time.sleep(0.1)
        finally:
            os.killpg(shell.pid, signal.SIGTERM)
        printed = (workdir / "out.txt").read_text().splitlines()
    [reply_output] = [line for line in printed if line.startswith("{'message_ts'")]
    [event] = [line for line in printed if line.startswith("workflow.completed ")]
    assert event.endswith(reply_output), printed  # the webhook carried the execution's output
