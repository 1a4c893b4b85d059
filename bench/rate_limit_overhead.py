"""What the per-key rate limit costs a cheap API request: `tendril serve` as shipped, next to the
same server with the rate-limit count switched off, in one run.

    python bench/rate_limit_overhead.py [--seconds 6] [--concurrency 16] [--rounds 3]
    python bench/rate_limit_overhead.py --database-url postgresql+asyncpg://...  # + the shared count

Everything runs on 127.0.0.1 in one process tree: two `tendril serve` processes (temporary data
dirs, logging at WARNING, a server default limit far above what the load makes, so every request
is counted and none refused), one of them started through this script with `Window._count` (the
edge's only call into the rate limits) replaced by a no-op; and the load generator (a subprocess
per round: keep-alive raw HTTP/1.1 connections sending `GET /api/v1/agents` with the bootstrap
admin key, back to back). The cheap request still authenticates its key and reads the owner's
agents from the database. Printed: requests/s and the server's CPU time per request for each, and
the difference as a share of the request (the issue's target: at most 5%); then the count alone,
timed in-process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
import uuid
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

PATH = "/api/v1/agents"


# -- roles run in subprocesses --------------------------------------------------------------------
def cmd_uncounted_serve(args: argparse.Namespace) -> int:
    """`tendril serve` with the rate-limit count switched off: the baseline."""
    from server import cli
    from server.web.quotas import Window

    async def not_counted(self: Window, principal: object) -> None:
        return None

    Window._count = not_counted  # type: ignore[method-assign]
    return cli.main(["serve"])


def cmd_load(args: argparse.Namespace) -> int:
    done = errors = 0
    stop_at = 0.0
    headers = {"Authorization": f"Bearer {args.key}"}

    async def worker() -> None:
        nonlocal done, errors
        http = RawHttp(args.url + PATH)
        while time.monotonic() < stop_at:
            try:
                reply = await http.get(headers)
            except (OSError, asyncio.IncompleteReadError):
                errors += 1
                await http.aclose()
                continue
            if reply.status == 200:
                done += 1
            else:
                errors += 1
        await http.aclose()

    async def main() -> None:
        nonlocal stop_at
        stop_at = time.monotonic() + args.seconds
        await asyncio.gather(*(worker() for _ in range(args.concurrency)))

    started = time.monotonic()
    asyncio.run(main())
    print(json.dumps({"done": done, "errors": errors, "seconds": time.monotonic() - started}))
    return 0


# -- the run --------------------------------------------------------------------------------------
def _load(url: str, key: str, args: argparse.Namespace) -> dict[str, float]:
    cmd = [sys.executable, __file__, "load", "--url", url, "--key", key, "--seconds", str(args.seconds)]
    cmd += ["--concurrency", str(args.concurrency)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True, env=_clean_env(), cwd=ROOT)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _check_alone(database_url: str | None, calls: int = 20_000) -> float:
    """Microseconds one count takes in-process (the same objects the server builds)."""
    from server.core.rate_limits import LocalWindows, RateLimits, SharedWindows
    from storage import db
    from storage.rate_windows import RateWindowStore

    async def run() -> float:
        engine = db.create_engine(database_url) if database_url else None
        if engine is not None:
            await db.upgrade(engine)
        counter = SharedWindows(RateWindowStore(engine)) if engine is not None else LocalWindows()
        limits = RateLimits(counter, api_default=10**9, tool_call_default=10**9)
        key = uuid.uuid4()
        await limits.api_request(key, None)
        started = time.perf_counter()
        for _ in range(calls):
            await limits.api_request(key, None)
        elapsed = time.perf_counter() - started
        if engine is not None:
            await engine.dispose()
        return elapsed / calls * 1e6

    return asyncio.run(run())


def cmd_run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        ports = {"counted": _free_port(), "uncounted": _free_port()}
        commands = {
            "counted": [sys.executable, "-m", "server.cli", "serve"],
            "uncounted": [sys.executable, __file__, "uncounted-serve"],
        }
        with open(Path(tmp) / "servers.log", "w") as log:
            servers = {}
            keys = {}
            for name, port in ports.items():
                env = {
                    **_clean_env(),
                    "TENDRIL_DATA_DIR": str(Path(tmp) / name),
                    "TENDRIL_PORT": str(port),
                    "TENDRIL_PUBLIC_URL": f"http://127.0.0.1:{port}",
                    "TENDRIL_LOG_LEVEL": "WARNING",
                    "TENDRIL_API_RATE_LIMIT": str(10**9),
                }
                servers[name] = _process(commands[name], env=env, cwd=ROOT, log=log, read_stdout=True)
            processes = {name: server.__enter__() for name, server in servers.items()}
            try:
                for name, process in processes.items():
                    keys[name] = _read_admin_key(process)
                    _wait_listening(ports[name], process, name)
                totals = {name: [0.0, 0.0, 0.0] for name in ports}
                for _ in range(args.rounds):  # alternate, so background noise hits both alike
                    for name, port in ports.items():
                        pid = processes[name].pid
                        cpu_before = _process_cpu_seconds(pid) or 0.0
                        result = _load(f"http://127.0.0.1:{port}", keys[name], args)
                        cpu = (_process_cpu_seconds(pid) or 0.0) - cpu_before
                        if result["errors"]:
                            print(f"{name}: {result['errors']:.0f} failed requests")
                        totals[name][0] += result["done"]
                        totals[name][1] += result["seconds"]
                        totals[name][2] += cpu
            finally:
                for server in servers.values():
                    server.__exit__(None, None, None)
    print(f"\nGET {PATH}, SQLite, {args.concurrency} connections, {args.rounds}x{args.seconds}s")
    cpu_us = {}
    for name, (done, seconds, cpu) in totals.items():
        cpu_us[name] = cpu / max(done, 1) * 1e6
        print(f"{name:<10} {done / seconds:>8.0f} req/s   {cpu_us[name]:>7.0f} us server CPU/request")
    share = (cpu_us["counted"] - cpu_us["uncounted"]) / cpu_us["uncounted"]
    print(f"difference {share:>8.1%} of a request's CPU   (target: <= 5%)")
    for what, url in (("in-process windows", None), ("shared windows", args.database_url)):
        if what == "shared windows" and not url:
            continue  # give --database-url (PostgreSQL) to time the replicas' shared count too
        alone = _check_alone(url)
        print(f"the count alone, {what}: {alone:.1f} us = {alone / cpu_us['uncounted']:.1%} of a request")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="role")
    run = sub.add_parser("run")
    for target in (parser, run):
        target.add_argument("--seconds", type=float, default=6.0)
        target.add_argument("--concurrency", type=int, default=16)
        target.add_argument("--rounds", type=int, default=3)
        target.add_argument("--database-url", default=None)
    sub.add_parser("uncounted-serve")
    load = sub.add_parser("load")
    load.add_argument("--url", required=True)
    load.add_argument("--key", required=True)
    load.add_argument("--seconds", type=float, required=True)
    load.add_argument("--concurrency", type=int, required=True)
    args = parser.parse_args()
    if args.role == "uncounted-serve":
        return cmd_uncounted_serve(args)
    if args.role == "load":
        return cmd_load(args)
    return cmd_run(args)


if __name__ == "__main__":
    sys.exit(main())
