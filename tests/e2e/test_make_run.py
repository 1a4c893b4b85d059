"""The README's run command, exactly as a newcomer types it: `make run` serves on 127.0.0.1:8080."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
README_PORT = 8080


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_make_run_serves_the_embedded_default_on_8080(tmp_path: Path) -> None:
    if shutil.which("make") is None:
        pytest.fail("make is not installed; .ci/run installs it")
    assert _port_is_free(README_PORT), "something else already listens on 127.0.0.1:8080"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENDRIL_")}
    env["TENDRIL_DATA_DIR"] = str(tmp_path / "data")  # keep the checkout clean; otherwise ./.tendril
    log = (tmp_path / "make-run.log").open("w")
    process = subprocess.Popen(
        ["make", "--no-print-directory", "run"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240  # a fresh machine installs the venv first
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{README_PORT}/healthz", timeout=2)
                if health.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, (tmp_path / "make-run.log").read_text()
            assert time.monotonic() < deadline, "make run did not serve in time"
            time.sleep(0.2)
        printed = (tmp_path / "make-run.log").read_text()
        key = next(line.strip() for line in printed.splitlines() if line.strip().startswith("tdl_"))
        catalog = httpx.get(f"http://127.0.0.1:{README_PORT}/api/v1/connectors", headers={"X-Api-Key": key})
        assert catalog.status_code == 200
        assert (tmp_path / "data" / "tendril.db").exists()
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
        log.close()
