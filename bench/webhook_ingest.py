"""Sustained webhook ingest on SQLite: signed GitHub deliveries (10% of them sent twice) into
`tendril serve`, next to a bare Starlette route that only answers 200, in one run.

    python bench/webhook_ingest.py [--seconds 8] [--concurrency 32] [--rounds 2]

Everything runs on 127.0.0.1 in one process tree: the baseline (a subprocess of this script:
uvicorn + one Starlette route returning 200, logging at WARNING), Tendril (`tendril serve` with a
temporary data dir, SQLite, logging at WARNING; set up through its REST API with an agent allowed
`github` and a GitHub endpoint), and the load generator (a subprocess per round: keep-alive raw
HTTP/1.1 connections sending pre-signed deliveries back to back). Each delivery Tendril
acknowledges was verified (HMAC-SHA256), deduplicated and written with its job before the 2xx.
Printed: acknowledged events/s for each target and Tendril's ratio to the bare route.
Target from the issue: at least 2,000 events/s and 40% of the bare route on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mcp_throughput import (
    ROOT,
    RawHttp,
    _clean_env,
    _free_port,
    _process,
    _process_cpu_seconds,
    _read_admin_key,
    _wait_listening,
)

SECRET = "bench-github-webhook-secret"


def deliveries(count: int, duplicate_share: float = 0.1) -> list[tuple[dict[str, str], bytes]]:
    """Signed deliveries; `duplicate_share` of them repeat an earlier delivery id (a provider retry)."""
    rng = random.Random(3)
    made: list[tuple[dict[str, str], bytes]] = []
    for n in range(count):
        if made and rng.random() < duplicate_share:
            made.append(made[rng.randrange(len(made))])
            continue
        body = json.dumps({"action": "opened", "issue": {"number": n, "title": f"Issue {n}"}}).encode()
        headers = {
            "Content-Type": "application/json",
            "X-GitHub-Event": "issues",
            "X-GitHub-Delivery": f"bench-{os.getpid()}-{n}",
            "X-Hub-Signature-256": "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest(),
        }
        made.append((headers, body))
    return made


# -- roles run in subprocesses --------------------------------------------------------------------
def cmd_baseline(args: argparse.Namespace) -> int:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def ok(request: Request) -> Response:
        await request.body()
        return Response(b"", status_code=200)

    app = Starlette(routes=[Route("/{path:path}", ok, methods=["POST"])])
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    pool = deliveries(int(args.seconds * 6000) + 1000)
    acked = errors = 0
    stop_at = 0.0

    async def worker(index: int) -> None:
        nonlocal acked, errors
        http = RawHttp(args.url)
        position = index
        while time.monotonic() < stop_at:
            headers, body = pool[position % len(pool)]
            position += args.concurrency
            try:
                reply = await http.post(headers, body)
            except (OSError, asyncio.IncompleteReadError):
                errors += 1
                await http.aclose()
                continue
            if 200 <= reply.status < 300:
                acked += 1
            else:
                errors += 1
        await http.aclose()

    async def main() -> None:
        nonlocal stop_at
        stop_at = time.monotonic() + args.seconds
        await asyncio.gather(*(worker(i) for i in range(args.concurrency)))

    started = time.monotonic()
    asyncio.run(main())
    print(json.dumps({"acked": acked, "errors": errors, "seconds": time.monotonic() - started}))
    return 0


# -- the run --------------------------------------------------------------------------------------
def _load(url: str, args: argparse.Namespace) -> dict[str, float]:
    cmd = [sys.executable, __file__, "load", "--url", url, "--seconds", str(args.seconds)]
    cmd += ["--concurrency", str(args.concurrency)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True, env=_clean_env(), cwd=ROOT)
    return json.loads(done.stdout.strip().splitlines()[-1])


async def _set_up(url: str, admin_key: str) -> str:
    import httpx

    async with httpx.AsyncClient(base_url=url, headers={"X-Api-Key": admin_key}, timeout=30) as api:
        agent = await api.post("/api/v1/agents", json={"name": "bench", "allowedConnectors": ["github"]})
        agent.raise_for_status()
        connection = await api.post("/api/v1/connections", json={"connectorSlug": "github"})
        connection.raise_for_status()
        connection_id = connection.json()["connection"]["id"]
        body = {"provider": "github", "secrets": {"secret": SECRET}}
        endpoint = await api.post(f"/api/v1/connections/{connection_id}/webhooks", json=body)
        endpoint.raise_for_status()
        return f"{url}/api/v1/connectors/webhooks/github/{endpoint.json()['endpoint']['id']}"


def cmd_run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        base_port, tendril_port = _free_port(), _free_port()
        tendril_env = {
            **_clean_env(),
            "TENDRIL_DATA_DIR": str(Path(tmp) / "data"),
            "TENDRIL_PORT": str(tendril_port),
            "TENDRIL_PUBLIC_URL": f"http://127.0.0.1:{tendril_port}",
            "TENDRIL_LOG_LEVEL": args.log_level,
            "TENDRIL_WEBHOOK_ALLOW_INSECURE_URLS": "true",
        }
        baseline_cmd = [sys.executable, __file__, "baseline", "--port", str(base_port)]
        tendril_cmd = [sys.executable, "-m", "server.cli", "serve"]
        with (
            open(Path(tmp) / "baseline.log", "w") as base_log,
            open(Path(tmp) / "tendril.log", "w") as tendril_log,
            _process(baseline_cmd, env=_clean_env(), cwd=ROOT, log=base_log) as baseline,
            _process(tendril_cmd, env=tendril_env, cwd=ROOT, log=tendril_log, read_stdout=True) as tendril,
        ):
            admin_key = _read_admin_key(tendril)
            _wait_listening(base_port, baseline, "baseline")
            _wait_listening(tendril_port, tendril, "tendril serve")
            receiver = asyncio.run(_set_up(f"http://127.0.0.1:{tendril_port}", admin_key))
            totals = {"bare route": [0.0, 0.0, 0.0], "Tendril": [0.0, 0.0, 0.0]}
            for _ in range(args.rounds):  # alternate, so background noise hits both alike
                for name, url, pid in (
                    ("bare route", f"http://127.0.0.1:{base_port}/hook", baseline.pid),
                    ("Tendril", receiver, tendril.pid),
                ):
                    cpu_before = _process_cpu_seconds(pid) or 0.0
                    result = _load(url, args)
                    cpu = (_process_cpu_seconds(pid) or 0.0) - cpu_before
                    if result["errors"]:
                        print(f"{name}: {result['errors']:.0f} non-2xx or failed requests")
                    totals[name][0] += result["acked"]
                    totals[name][1] += result["seconds"]
                    totals[name][2] += cpu
    rates = {name: acked / seconds for name, (acked, seconds, _) in totals.items()}
    cpu_per_event = {name: cpu / max(acked, 1) * 1e6 for name, (acked, _, cpu) in totals.items()}
    print(
        f"\nsigned GitHub deliveries, 10% duplicates, {args.concurrency} connections, "
        f"{args.rounds}x{args.seconds}s"
    )
    for name, rate in rates.items():
        print(f"{name:<12} {rate:>8.0f} events/s   {cpu_per_event[name]:>6.0f} us server CPU/event")
    ratio = rates["Tendril"] / rates["bare route"]
    print(f"ratio        {ratio:>8.2f}   (targets: >= 2,000 events/s and >= 0.40)")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="role")
    run = sub.add_parser("run")
    for target in (parser, run):
        target.add_argument("--seconds", type=float, default=8.0)
        target.add_argument("--concurrency", type=int, default=32)
        target.add_argument("--rounds", type=int, default=2)
        # INFO writes the access log (a line per delivery) to the temporary folder's tendril.log.
        target.add_argument("--log-level", default="WARNING")
    baseline = sub.add_parser("baseline")
    baseline.add_argument("--port", type=int, required=True)
    load = sub.add_parser("load")
    load.add_argument("--url", required=True)
    load.add_argument("--seconds", type=float, required=True)
    load.add_argument("--concurrency", type=int, required=True)
    args = parser.parse_args()
    if args.role == "baseline":
        return cmd_baseline(args)
    if args.role == "load":
        return cmd_load(args)
    return cmd_run(args)


if __name__ == "__main__":
    sys.exit(main())
