"""What the access log and the request metrics cost one request, timed in-process.

    python bench/observability_overhead.py [--requests 50000]

The whole-server benchmarks (mcp_throughput.py, webhook_ingest.py) measure this inside a request
that costs 0.2-9 ms of server CPU, where a few microseconds drown in the noise of a shared machine.
Here the access-log middleware (server/web/access.py) wraps an ASGI app that answers at once, and is
driven directly (no sockets), so the figure is the middleware's own: the route template, the
request counter and duration histogram, and the log line through the redaction filter and the text
or JSON formatter into a file. Also timed: the counters the MCP edge and webhook ingest add per call.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from starlette.routing import Route  # noqa: E402

from server.core.metrics import Metrics  # noqa: E402
from server.logs import formatter_for, install_redaction, note_key  # noqa: E402
from server.web.access import AccessLog  # noqa: E402

ROUTE = Route("/api/v1/connections/{id}", lambda request: None)
KEY_ID = __import__("uuid").uuid4()


async def answer(scope: dict[str, Any], receive: Any, send: Any) -> None:
    scope["route"] = ROUTE  # as the router leaves it
    note_key(scope, KEY_ID)  # as @api does
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def drive(app: Callable[..., Any], requests: int) -> float:
    """Seconds of CPU per request through `app`."""

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        return None

    started = time.process_time()
    for _ in range(requests):
        scope = {"type": "http", "method": "GET", "path": "/x", "client": ("10.0.0.7", 50000), "headers": []}
        await app(scope, receive, send)
    return (time.process_time() - started) / requests


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=50_000)
    args = parser.parse_args()
    n = args.requests
    access = logging.getLogger("tendril.access")
    with tempfile.TemporaryDirectory() as tmp:
        handler = logging.FileHandler(Path(tmp) / "access.log")
        install_redaction(handler)
        logging.getLogger().addHandler(handler)
        figures: dict[str, float] = {}
        figures["bare app"] = asyncio.run(drive(answer, n))
        access.setLevel(logging.WARNING)
        figures["metrics only (log off)"] = asyncio.run(drive(AccessLog(answer, Metrics()), n))
        access.setLevel(logging.INFO)
        for log_format in ("text", "json"):
            handler.setFormatter(formatter_for(log_format))
            figures[f"metrics + {log_format} line"] = asyncio.run(drive(AccessLog(answer, Metrics()), n))
    bare = figures.pop("bare app")
    print(f"{n} requests; CPU per request beyond the bare app ({bare * 1e6:.1f} us):")
    for name, seconds in figures.items():
        print(f"  {name:<24} {(seconds - bare) * 1e6:6.1f} us")
    metrics = Metrics()
    started = time.process_time()
    for _ in range(n):
        metrics.tool_call("slack", "post_message", "ok", 0.01)
        metrics.webhook_delivery("github", "accepted")
    per_pair = (time.process_time() - started) / n
    print(f"  {'tool call + delivery count':<24} {per_pair * 1e6:6.1f} us (both together)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
