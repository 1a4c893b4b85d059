"""The README's set-up, as a newcomer types it: plain `make` lists the targets, `make run` on a port
other than 8080 says that port everywhere, its printed hint works as printed, `/` is the landing
page, and the README's "A first session" runs as written against it."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import SLACK_TOKEN, Fakes
from tests.e2e.tendril_process import free_port

ROOT = Path(__file__).resolve().parents[2]
README_PORT = "18080"  # the port "A first session" is written with


def clean_env(**extra: str) -> dict[str, str]:
    """A newcomer's shell: no TENDRIL_* settings but the ones given."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("TENDRIL_")}, **extra}


def make(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("make") is None:
        pytest.fail("make is not installed; .ci/run installs it")
    return subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=ROOT,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def test_plain_make_lists_the_targets_and_runs_none() -> None:
    listed = make()
    assert listed.returncode == 0, listed.stderr
    targets = re.findall(r"^  make (\S+) +\S", listed.stdout, re.MULTILINE)
    assert {"help", "run", "test", "venv"} <= set(targets)
    assert listed.stdout.startswith("Tendril: make TARGET") and listed.stderr == ""  # nothing ran


def test_make_run_installs_the_runtime_and_make_test_adds_the_dev_extras(tmp_path: Path) -> None:
    """What each target would do with a venv in each state (make -n runs nothing)."""
    venv = tmp_path / "venv"

    def planned(target: str) -> str:
        dry = make("-n", target, f"VENV={venv}")
        assert dry.returncode == 0, dry.stderr
        return dry.stdout

    assert "scripts/ensure-venv run" in planned("run") and "ensure-venv dev" not in planned("run")
    assert "scripts/ensure-venv dev" in planned("test")
    venv.mkdir()
    (venv / ".installed-run").touch()  # after `make run`: the runtime only
    assert "ensure-venv" not in planned("run")
    assert "scripts/ensure-venv dev" in planned("test")  # make test still adds the dev extras
    (venv / ".installed-dev").touch()
    assert "ensure-venv" not in planned("test") and "ensure-venv" not in planned("run")
    os.utime(venv / ".installed-dev", (0, 0))  # older than pyproject.toml: reinstall
    assert "scripts/ensure-venv dev" in planned("test") and "ensure-venv" not in planned("run")


def first_session_block() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## A first session") :]
    return section[
        section.index("```sh\n") + len("```sh\n") : section.index("\n```", section.index("```sh\n"))
    ]


@pytest.mark.timeout(420)
def test_make_run_on_another_port_says_that_port_and_its_hints_work_as_printed(
    tmp_path: Path, fakes: Fakes
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # The data dir keeps the checkout clean; a newcomer's is ./.tendril, where the commands look too.
    data = {"TENDRIL_DATA_DIR": str(tmp_path / "data")}
    log_path = tmp_path / "make-run.log"
    log = log_path.open("w")
    process = subprocess.Popen(
        ["make", "--no-print-directory", "run"],
        cwd=ROOT,
        env=clean_env(TENDRIL_PORT=str(port), TENDRIL_SLACK_API_BASE=fakes.slack_url, **data),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240  # a fresh machine installs the venv first
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "make run did not serve in time"
            time.sleep(0.2)
        printed = log_path.read_text()
        assert f"Tendril serving on {url} (MCP at {url}/mcp)" in printed
        assert ":8080" not in printed
        lines = printed.splitlines()
        key = next(line.strip() for line in lines if line.strip().startswith("tdl_"))

        # The hint, typed into another terminal in this folder (no TENDRIL_* of its own).
        hint = lines[
            next(i for i, line in enumerate(lines) if line.startswith("Create an agent")) + 1
        ].strip()
        assert hint.endswith(" agents create --owner admin --name my-agent --allow slack,telegram")
        assert f"TENDRIL_PORT={port} .venv/bin/tendril agents" in hint
        made = subprocess.run(
            ["bash", "-c", hint], cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=60
        )
        assert made.returncode == 0, made.stderr
        assert f"MCP endpoint: {url}/mcp" in made.stdout
        assert made.stdout.strip().splitlines()[-1].startswith("tdl_agent_")

        landing = httpx.get(f"{url}/")
        assert landing.status_code == 200 and f'<pre id="mcp-url">{url}/mcp</pre>' in landing.text
        assert 'href="/signin"' in landing.text and 'href="/docs"' in landing.text

        # README "A first session", as written but for the port, the key and the bot token.
        block = first_session_block()
        assert f"TENDRIL_PORT={README_PORT} TENDRIL_KEY=tdl_..." in block and "xoxb-..." in block
        block = (
            block.replace(f"TENDRIL_PORT={README_PORT}", f"TENDRIL_PORT={port}")
            .replace("tdl_...", key)
            .replace("xoxb-...", SLACK_TOKEN)
        )
        session = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block],
            cwd=ROOT,
            env=clean_env(**data),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert session.returncode == 0, session.stdout + session.stderr
        assert re.search(rf"^{url}/api/v1/connections/[0-9a-f-]+/credentials$", session.stdout, re.MULTILINE)
        assert '"status":"active"' in session.stdout.replace(" ", "")
        assert "Created agent slack-agent" in session.stdout
        assert session.stdout.strip().splitlines()[-1].startswith("tdl_agent_")
        assert (tmp_path / "data" / "tendril.db").exists()
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
        log.close()
