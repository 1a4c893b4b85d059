"""Serve an ASGI app on a real 127.0.0.1 socket so tests drive real SDK clients.

Real sockets (not ASGI transports or mocks) keep the SDKs' own HTTP stacks,
headers, encodings and error handling in the loop.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Generator
from contextlib import contextmanager
from typing import Any, Literal

import uvicorn
from starlette.requests import Request
from starlette.types import ASGIApp

logger = logging.getLogger(__name__)

STARTUP_TIMEOUT = 5.0


@contextmanager
def run_asgi_on_loopback(
    app: ASGIApp,
    *,
    lifespan: Literal["auto", "on", "off"] = "off",
    startup_timeout: float = STARTUP_TIMEOUT,
    sock: socket.socket | None = None,
    http: Any = "auto",
) -> Generator[str, None, None]:
    """Run `app` under uvicorn in a daemon thread; yield its base URL.

    The socket is bound here so the OS-picked port is known before uvicorn
    starts. It is a sync context manager, so async tests can use it too: the
    server has its own event loop in its own thread. Fakes need no lifespan;
    pass `lifespan="on"` for a real app whose startup must run (and succeed).
    """
    if sock is None:  # a caller that must know the port before building the app binds it itself
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        log_config=None,  # leave global logging alone; records propagate to pytest
        lifespan=lifespan,
        timeout_graceful_shutdown=2,
        http=http,  # Tendril's own protocol (server.web.serving) for a Tendril app
    )
    server = uvicorn.Server(config)

    def serve() -> None:
        try:
            server.run(sockets=[sock])
        except SystemExit as exc:  # uvicorn's "startup failed"; it has logged the cause
            logger.error("loopback server on port %d exited with %s", port, exc.code)

    thread = threading.Thread(target=serve, name=f"loopback-{port}", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + startup_timeout
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError(f"loopback server for {app!r} exited during startup")
            if time.monotonic() > deadline:
                raise TimeoutError(f"loopback server for {app!r} not started after {startup_timeout}s")
            time.sleep(0.005)
        logger.debug("loopback server for %r on port %d", app, port)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=startup_timeout)
        if thread.is_alive():
            logger.warning("loopback server on port %d did not stop in time", port)
        sock.close()


async def request_params(request: Request) -> dict[str, Any]:
    """Merge query string, then JSON or form body, the way provider APIs accept them.

    Body values win over query values; form values arrive as strings, exactly
    as the providers see them.
    """
    params: dict[str, Any] = dict(request.query_params)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        body = await request.body()
        if body:
            try:
                data: Any = json.loads(body)
            except ValueError:
                data = None
            if isinstance(data, dict):
                params.update(data)  # pyright: ignore[reportUnknownArgumentType]
    elif content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.form()
        params.update({k: v if isinstance(v, str) else v.filename for k, v in form.items()})
    return params
