"""Slow clients are dropped: a connection that does not send its headers, or its body, in time is
closed by the server (slowloris and slow-body clients cannot hold connections), while a large
body arriving at a sane speed is not cut short."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from server.settings import Settings
from tests.conftest import LiveTendril, serving

pytestmark = pytest.mark.anyio

HEADER_SECONDS, BODY_SECONDS = 0.5, 0.8


@pytest.fixture
def impatient(settings: Settings) -> Iterator[LiveTendril]:
    limits = {
        "header_timeout_seconds": HEADER_SECONDS,
        "body_timeout_seconds": BODY_SECONDS,
        "body_min_bytes_per_second": 256 * 1024,
    }
    with serving(settings.model_copy(update=limits)) as live:
        yield live


def connect(live: LiveTendril) -> socket.socket:
    parts = urlsplit(live.url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    return sock


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """True when the server closes the connection (EOF) within `seconds`."""
    sock.settimeout(seconds)
    try:
        while True:
            if sock.recv(65536) == b"":
                return True
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_a_client_trickling_its_headers_is_dropped(impatient: LiveTendril) -> None:
    clients = [connect(impatient) for _ in range(20)]
    started = time.monotonic()
    for sock in clients:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
    assert all(closed_within(sock, 5) for sock in clients)
    assert time.monotonic() - started < 5
    idle = connect(impatient)  # connected, says nothing
    assert closed_within(idle, 5)


def test_a_client_trickling_its_body_is_dropped(impatient: LiveTendril) -> None:
    sock = connect(impatient)
    headers = (
        f"POST /api/v1/connections HTTP/1.1\r\nHost: x\r\nX-Api-Key: {impatient.admin.api_key}\r\n"
        "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
    )
    sock.sendall(headers.encode())
    dropped_at = None
    for _ in range(40):  # a byte every 0.1 s: alive, but far too slow
        try:
            sock.sendall(b" ")
        except (BrokenPipeError, ConnectionResetError):
            dropped_at = time.monotonic()
            break
        time.sleep(0.1)
        sock.settimeout(0.01)
        try:
            if sock.recv(65536) == b"":
                dropped_at = time.monotonic()
                break
        except TimeoutError:
            pass
    assert dropped_at is not None, "the slow body was still being read after 4 s"


def test_a_large_body_at_a_sane_speed_gets_its_answer(impatient: LiveTendril) -> None:
    sock = connect(impatient)
    body = b'{"connectorSlug": "telegram", "label": "' + b"x" * 150 + b'"}' + b" " * (800 * 1024)
    headers = (
        f"POST /api/v1/connections HTTP/1.1\r\nHost: x\r\nX-Api-Key: {impatient.admin.api_key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    sock.sendall(headers.encode())
    for start in range(0, len(body), 64 * 1024):  # ~1.3 s in all: longer than the bare deadline
        sock.sendall(body[start : start + 64 * 1024])
        time.sleep(0.1)
    sock.settimeout(10)
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    assert answer.startswith(b"HTTP/1.1 201"), answer[:200]
