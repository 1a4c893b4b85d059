"""Webhook ingest CPU per event of several Tendril source trees (or settings), loaded in turn.

    python bench/webhook_ab.py before=/tmp/before after=/tmp/after after-info=/tmp/after:INFO \\
        [--rounds 10] [--seconds 4] [--concurrency 32]

Each target is NAME=TREE[:LOG_LEVEL[:VAR=VALUE,...]]: a `tendril serve` started from TREE (a git
worktree of the revision to measure, run with this venv), on SQLite, logging at LOG_LEVEL (default
WARNING; INFO writes the access log), with extra TENDRIL_ settings. All servers run at once, set up
as webhook_ingest.py sets up its one; then each round loads every server in turn for `--seconds`
with pre-signed GitHub deliveries. Printed per target: server CPU per event (from /proc) for each
round, its median, and the median of its per-round ratios to the first target. Rounds interleave
the targets, so a busy machine slows them alike; on a shared machine prefer the medians of many
short rounds to one long run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import webhook_ingest  # noqa: E402


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start(name: str, spec: str, port: int, tmp: Path) -> tuple[subprocess.Popen[str], str]:
    tree, _, rest = spec.partition(":")
    level, _, extra = rest.partition(":")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENDRIL_")}
    env.update(
        PYTHONPATH=tree,
        TENDRIL_DATA_DIR=str(tmp / name),
        TENDRIL_PORT=str(port),
        TENDRIL_PUBLIC_URL=f"http://127.0.0.1:{port}",
        TENDRIL_LOG_LEVEL=level or "WARNING",
        TENDRIL_WEBHOOK_ALLOW_INSECURE_URLS="true",
    )
    env.update(pair.split("=", 1) for pair in extra.split(",") if pair)
    log = (tmp / f"{name}.log").open("w")
    cmd = [sys.executable, "-m", "server.cli", "serve"]
    process = subprocess.Popen(cmd, cwd=tree, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
    key = webhook_ingest._read_admin_key(process)
    webhook_ingest._wait_listening(port, process, name)
    return process, asyncio.run(webhook_ingest._set_up(f"http://127.0.0.1:{port}", key))


def load(url: str, seconds: float, concurrency: int) -> int:
    cmd = [sys.executable, str(HERE / "webhook_ingest.py"), "load", "--url", url]
    cmd += ["--seconds", str(seconds), "--concurrency", str(concurrency)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return int(json.loads(done.stdout.strip().splitlines()[-1])["acked"])


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("targets", nargs="+", help="NAME=TREE[:LOG_LEVEL[:VAR=VALUE,...]]")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    targets = [target.partition("=")[::2] for target in args.targets]
    per_event: dict[str, list[float]] = {name: [] for name, _ in targets}
    with tempfile.TemporaryDirectory(prefix="tendril-ab-") as tmp:
        servers = {}
        try:
            for name, spec in targets:
                servers[name] = start(name, spec, webhook_ingest._free_port(), Path(tmp))
            load(servers[targets[0][0]][1], 2, args.concurrency)  # warm-up
            for _ in range(args.rounds):
                for name, (process, url) in servers.items():
                    before = cpu_seconds(process.pid)
                    acked = load(url, args.seconds, args.concurrency)
                    per_event[name].append((cpu_seconds(process.pid) - before) / max(acked, 1) * 1e6)
        finally:
            for process, _ in servers.values():
                process.terminate()
            for process, _ in servers.values():
                process.wait(10)
            time.sleep(0.2)
    first = per_event[targets[0][0]]
    for name, values in per_event.items():
        rounds = " ".join(f"{v:.0f}" for v in values)
        # Within a round the targets ran seconds apart, so their ratio cancels most of what a busy
        # machine adds; the median of those ratios is the figure to quote.
        ratio = statistics.median(v / f for v, f in zip(values, first, strict=True))
        print(
            f"{name:<16} median {statistics.median(values):5.0f} us server CPU/event"
            f"   x{ratio:.2f} of {targets[0][0]} (median per-round ratio)   rounds: {rounds}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
