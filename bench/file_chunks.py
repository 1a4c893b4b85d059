"""Reading 100 lines deep in a 1 GiB uploaded file: REST `/content` and MCP `resources/read`.

    python bench/file_chunks.py [--size-mib 1024] [--repeats 20]

A generated text file (numbered lines of ~70 bytes, so 1 GiB is ~15 million lines) is uploaded to
`tendril serve` (a subprocess, SQLite and local files in a temporary data dir) through
`POST /connectors/{id}:upload`. Then 100 lines are read at offsets 0, 1,000,000 and 10,000,000,
each `--repeats` times, through the REST endpoint and through an MCP client's `resources/read`
(`tendril://files/{id}?offset=&limit=100`). Printed: the median time per read and its ratio to
the offset-0 read of the same door (the baseline run in the same process tree). The sparse line
index is what keeps the deep reads near the shallow one; the target is a ratio of at most 2.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mcp_throughput import ROOT, _clean_env, _free_port, _process, _read_admin_key, _wait_listening

sys.path.insert(0, str(ROOT))  # tests.support.mcp: the same SDK client the tests use

OFFSETS = (0, 1_000_000, 10_000_000)
LIMIT = 100


def line(n: int) -> bytes:
    return f"{n:012d},customer-{n % 9973:05d},city-{n % 611:04d},{'x' * 30}\n".encode()


def generate(path: Path, size: int) -> int:
    written = lines = 0
    with path.open("wb") as out:
        while written < size:
            block = b"".join(line(lines + i) for i in range(10_000))
            out.write(block)
            written += len(block)
            lines += 10_000
    return lines


async def file_chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as source:
        while chunk := source.read(1 << 20):
            yield chunk


async def timed(read: Callable[[int], Awaitable[str]], offset: int, repeats: int) -> float:
    first = await read(offset)  # warm, and check what comes back
    assert first.startswith(line(offset).decode()) and first.count("\n") == LIMIT, first[:80]
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        await read(offset)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


async def run(args: argparse.Namespace) -> None:
    from tests.support.mcp import mcp_client

    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "big.csv"
        started = time.perf_counter()
        total_lines = generate(source, args.size_mib << 20)
        print(
            f"generated {source.stat().st_size / 2**20:.0f} MiB, {total_lines:,} lines "
            f"in {time.perf_counter() - started:.1f}s"
        )
        port = _free_port()
        env = {
            **_clean_env(),
            "TENDRIL_DATA_DIR": str(Path(tmp) / "data"),
            "TENDRIL_PORT": str(port),
            "TENDRIL_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "TENDRIL_LOG_LEVEL": "WARNING",
        }
        cmd = [sys.executable, "-m", "server.cli", "serve"]
        with (
            open(Path(tmp) / "serve.log", "w") as log,  # noqa: ASYNC230 (a benchmark, before any timing)
            _process(cmd, env=env, cwd=ROOT, log=log, read_stdout=True) as server,
        ):
            admin_key = _read_admin_key(server)
            _wait_listening(port, server, "tendril serve")
            url = f"http://127.0.0.1:{port}"
            async with httpx.AsyncClient(base_url=url, timeout=600, headers={"X-Api-Key": admin_key}) as api:
                created = (await api.post("/connectors", json={"name": "big", "filename": "big.csv"})).json()
                started = time.perf_counter()
                uploaded = await api.post(f"/connectors/{created['id']}:upload", content=file_chunks(source))
                uploaded.raise_for_status()
                print(
                    f"uploaded and indexed in {time.perf_counter() - started:.1f}s "
                    f"({uploaded.json()['metadata']['total_lines']:,} lines)"
                )
                made = await api.post(
                    "/api/v1/agents", json={"name": "bench", "allowedConnectors": ["local_file"]}
                )
                agent_key = made.json()["apiKey"]

                async def rest(offset: int) -> str:
                    reply = await api.get(
                        f"/connectors/{created['id']}/content", params={"offset": offset, "limit": LIMIT}
                    )
                    reply.raise_for_status()
                    return str(reply.json()["content"])

                rows = [("REST /content", {o: await timed(rest, o, args.repeats) for o in OFFSETS})]
                async with mcp_client(url, agent_key) as mcp:
                    uri = f"tendril://files/{created['connection_id']}"

                    async def resource(offset: int) -> str:
                        result = await mcp.read_resource(f"{uri}?offset={offset}&limit={LIMIT}")
                        return str(getattr(result.contents[0], "text", ""))

                    rows.append(
                        ("MCP resources/read", {o: await timed(resource, o, args.repeats) for o in OFFSETS})
                    )
        print(f"\n100 lines, median of {args.repeats} reads (ratio to offset 0; target <= 2.0)")
        print(f"{'door':<20}" + "".join(f"{f'offset {o:,}':>24}" for o in OFFSETS))
        for door, times in rows:
            cells = "".join(f"{times[o] * 1000:>13.2f} ms ({times[o] / times[0]:4.2f}x)" for o in OFFSETS)
            print(f"{door:<20}{cells}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=20)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
