"""What recording an audit event costs, timed in-process: the part a request pays (queuing the
event) and the part the writer loop pays later (writing it in a batch), per event.

    python bench/audit_overhead.py [--events 20000] [--batch 80] [--database-url postgresql+asyncpg://...]

Without --database-url it uses a temporary SQLite database (migrated first). `--batch` is how many
events one flush writes: at 160 tool calls a second and a flush every 0.5 s, a batch holds ~80.
Compare the sum with the server CPU a tools/call costs (bench/mcp_throughput.py: ~7-9 ms on a
2-core machine).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from server.core.audit import Actor, Audit, acting_as
from storage import db
from storage.audit import AuditStore
from storage.repositories import Store, utcnow


async def measure(url: str, events: int, batch: int) -> None:
    engine = db.create_engine(url)
    try:
        await db.upgrade(engine)
        owner = await Store(engine).create_owner(f"bench-{uuid.uuid4().hex[:8]}")
        audit = Audit(AuditStore(engine), clock=utcnow, retention_days=90)
        agent, connection = uuid.uuid4(), uuid.uuid4()

        def record() -> None:
            audit.record(
                "tool.call",
                owner.id,
                connection_id=connection,
                connector="slack",
                action="slack_post_message",
                latency_ms=12.345,
            )

        with acting_as(Actor.agent(agent)):
            for _ in range(1000):  # warm-up
                record()
            await audit.flush()
            started = time.process_time()
            for _ in range(events):
                record()
            queued = time.process_time() - started
            # The queue as the loop finds it every half second: `batch` events at a time.
            await audit.flush()
            written_cpu = written_wall = 0.0
            for _ in range(events // batch):
                for _ in range(batch):
                    record()
                cpu, wall = time.process_time(), time.perf_counter()
                await audit.flush()
                written_cpu += time.process_time() - cpu
                written_wall += time.perf_counter() - wall
        count = (events // batch) * batch
        print(f"database: {engine.dialect.name}, {events} events, batches of {batch}")
        print(f"record() on the request path: {queued / events * 1e6:8.1f} us CPU per event")
        print(
            f"batched write (writer loop):   {written_cpu / count * 1e6:8.1f} us CPU per event "
            f"({written_wall / (count / batch) * 1e3:.2f} ms wall per batch)"
        )
        together = (queued / events + written_cpu / count) * 1e6
        print(f"together:                      {together:8.1f} us CPU per event")
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=80)
    parser.add_argument("--database-url", help="default: a temporary SQLite database")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        asyncio.run(measure(url, args.events, args.batch))


if __name__ == "__main__":
    main()
