"""Run a real `tendril serve` subprocess, so e2e tests cover the CLI, uvicorn and the real socket."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from server.settings import Settings
from tests.conftest import child_env

STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


@dataclass
class TendrilProcess:
    url: str
    process: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def output(self) -> str:
        """Both streams, labelled, for assertion messages."""
        return f"--- tendril stdout ---\n{self.stdout}\n--- tendril stderr ---\n{self.stderr}"


def free_port() -> int:
    """An OS-picked loopback port; `tendril serve` binds it itself, so there is a small race."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(proc: TendrilProcess, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if proc.process.poll() is not None:
            raise RuntimeError(f"tendril serve exited with {proc.process.returncode}\n{proc.output()}")
        try:
            if httpx.get(f"{proc.url}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError as exc:
            last_error = exc
        time.sleep(0.1)
    raise TimeoutError(f"tendril serve not healthy after {timeout}s ({last_error!r})\n{proc.output()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT)


@contextmanager
def tendril_serve(settings: Settings, workdir: Path, **env_vars: str) -> Iterator[TendrilProcess]:
    """Start `tendril serve` on a free port with this test's database and fakes; stop it on exit.

    The child runs in `workdir` so a developer's `.env` in the repo cannot leak into it.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = child_env(settings, TENDRIL_PUBLIC_URL=url, **env_vars)
    workdir.mkdir(parents=True, exist_ok=True)
    stdout_path, stderr_path = workdir / "tendril.stdout", workdir / "tendril.stderr"
    argv = [sys.executable, "-m", "server.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        process = subprocess.Popen(
            argv, cwd=workdir, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL
        )
    proc = TendrilProcess(url, process, stdout_path, stderr_path)
    try:
        _wait_healthy(proc, STARTUP_TIMEOUT)
        yield proc
    finally:
        _stop(process)
