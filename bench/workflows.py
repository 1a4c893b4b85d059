"""Executions per second of a three-step workflow: Tendril against a bare DBOS workflow and against the
same calls made without any engine, on SQLite and on PostgreSQL, in one run.

    python bench/workflows.py [--databases sqlite,postgresql] [--rounds 3] [--executions 150]
                              [--concurrency 8] [--database-url postgresql+asyncpg://...]

The workflow: Slack's post_message twice (an `action` step each, on a Slack connection) and one
`http_request` POST to a loopback receiver. The three variants make the same three HTTP calls, the
Slack ones with the same SDK (slack_sdk's AsyncWebClient on one aiohttp session, as Tendril's Slack
connector opens it):

- direct: the three calls in a row in a coroutine, no engine;
- dbos: a bare `@DBOS.workflow` calling three `@DBOS.step`s (no Tendril), started with
  `DBOS.start_workflow_async` and awaited, DBOS configured as Tendril configures it;
- tendril: Tendril's core in-process (`Executions.start`, the end heard through `on_finished`; the
  REST edge is not in the measure), the workflow stored and checked as an owner's.

Everything runs on 127.0.0.1 in one process tree: the fakes (tests.fakes.slack.FakeSlack and the
receiver) on threads of this process; each measure in its own subprocess (DBOS is one per process)
with a fresh database (a temporary SQLite file, or a new PostgreSQL database on the cluster: a
throwaway one started through tests/support/postgres.py unless --database-url names one). Each
round runs the three variants in turn (rotating who goes first), `--warmup` executions unmeasured,
then `--executions` with `--concurrency` in flight. Printed per database: executions/s and CPU per
execution of each variant (the measuring process's, threads included: PostgreSQL's own server CPU is
not in it) as medians over the rounds, the median of the per-round ratios tendril/dbos (target 0.7)
and dbos/direct, and the database statements per execution by database and table (counted with a
SQLAlchemy cursor event in the measured window), from which the engine's cost per step follows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SLACK_TOKEN = "xoxb-4242-4242-BenchmarkSlackToken"
CHANNEL = "#general"
VARIANTS = ("direct", "dbos", "tendril")
STEPS = 3
# What Tendril's engine sets (server/core/workflows/engine.py), so that the bare DBOS runs alike.
DBOS_POLL_SECONDS = 0.25
_WRITE = re.compile(r'^\s*(INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+(?:"?\w+"?\.)?"?(\w+)', re.I)


# -- the three calls ----------------------------------------------------------------------------------
class Calls:
    """The two Slack posts and the HTTP POST, on clients opened once per process."""

    def __init__(self, slack_url: str, receiver_url: str) -> None:
        self.slack_url, self.receiver_url = slack_url, receiver_url

    async def __aenter__(self) -> Calls:
        import aiohttp
        import httpx
        from slack_sdk.web.async_client import AsyncWebClient

        self._session = aiohttp.ClientSession()
        self.slack = AsyncWebClient(token=SLACK_TOKEN, base_url=self.slack_url, session=self._session)
        self.http = httpx.AsyncClient(timeout=30)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._session.close()
        await self.http.aclose()

    async def post(self, text: str) -> dict[str, Any]:
        answer = await self.slack.chat_postMessage(channel=CHANNEL, text=text)
        return {"ts": answer["ts"], "channel": answer["channel"]}

    async def request(self, key: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = await self.http.post(self.receiver_url, json=body, headers={"Idempotency-Key": key})
        answer.raise_for_status()
        return answer.json()


# -- counting the databases' statements ------------------------------------------------------------
class Statements:
    """Statements sent through SQLAlchemy (Tendril's async engines and DBOS's sync ones alike), by
    database (dbos: DBOS's system database; tendril: Tendril's tables) and kind, while `on`."""

    def __init__(self) -> None:
        self.on = False
        self.counts: Counter[str] = Counter()

    def install(self) -> None:
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        event.listen(Engine, "before_cursor_execute", self._seen)

    def _seen(self, conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        if not self.on:
            return
        url = conn.engine.url
        database = (
            "dbos" if url.drivername == "postgresql+psycopg" or "dbos" in str(url.database) else "tendril"
        )
        write = _WRITE.match(statement)
        if write:
            self.counts[f"{database} {write.group(1).split()[0].lower()} {write.group(2).lower()}"] += 1
        else:
            self.counts[f"{database} {statement.split(None, 1)[0].lower()}"] += 1


# -- a measure (run in its own subprocess) -------------------------------------------------------
async def _drive(
    one: Callable[[int], Awaitable[Any]], args: argparse.Namespace, statements: Statements
) -> dict[str, Any]:
    """Warm up, then run args.executions of `one` with args.concurrency in flight; time them."""
    latencies: list[float] = []

    async def batch(count: int, offset: int) -> None:
        queue = iter(range(offset, offset + count))

        async def worker() -> None:
            for n in queue:
                began = time.perf_counter()
                await one(n)
                latencies.append(time.perf_counter() - began)

        await asyncio.gather(*(worker() for _ in range(args.concurrency)))

    await batch(args.warmup, 0)
    latencies.clear()
    statements.on = True
    cpu, wall = time.process_time(), time.perf_counter()
    await batch(args.executions, args.warmup)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    statements.on = False
    return {
        "rate": args.executions / wall,
        "cpu_ms": 1000 * cpu / args.executions,
        "p50_ms": 1000 * statistics.median(latencies),
        "statements": {k: v / args.executions for k, v in sorted(statements.counts.items())},
    }


async def measure_direct(args: argparse.Namespace, statements: Statements) -> dict[str, Any]:
    async with Calls(args.slack, args.receiver) as calls:

        async def one(n: int) -> Any:
            await calls.post(f"first {n}")
            await calls.post(f"second {n}")
            return await calls.request(f"direct-{n}", {"n": n})

        return await _drive(one, args, statements)


def _dbos_url(database: str, tmp: Path) -> tuple[str, str | None]:
    """DBOS's system database as Tendril makes it (engine.SystemDatabase.of)."""
    if database == "sqlite":
        return f"sqlite:///{tmp / 'dbos.sqlite'}", None
    from sqlalchemy.engine import make_url

    url = make_url(database).set(drivername="postgresql+psycopg")
    return url.render_as_string(hide_password=False), "dbos"


async def measure_dbos(args: argparse.Namespace, statements: Statements, tmp: Path) -> dict[str, Any]:
    from dbos import DBOS

    calls: Calls | None = None

    @DBOS.step(name="first")
    async def first(n: int) -> Any:
        assert calls is not None
        return await calls.post(f"first {n}")

    @DBOS.step(name="second")
    async def second(n: int) -> Any:
        assert calls is not None
        return await calls.post(f"second {n}")

    @DBOS.step(name="third")
    async def third(n: int) -> Any:
        assert calls is not None
        return await calls.request(f"{DBOS.workflow_id}:third", {"n": n})

    @DBOS.workflow(name="bench.three")
    async def three(n: int) -> Any:
        await first(n)
        await second(n)
        return await third(n)

    url, schema = _dbos_url(args.database, tmp)
    config: dict[str, Any] = {
        "name": "bench",
        "system_database_url": url,
        "application_version": "bench-1",
        "executor_id": "bench",
        "log_level": "WARNING",
        "notification_listener_polling_interval_sec": DBOS_POLL_SECONDS,
    }
    if schema:
        config["dbos_system_schema"] = schema
    DBOS(config=config)  # type: ignore[arg-type]
    DBOS.launch()
    try:
        async with Calls(args.slack, args.receiver) as opened:
            calls = opened

            async def one(n: int) -> Any:
                handle = await DBOS.start_workflow_async(three, n)
                return await handle.get_result()

            return await _drive(one, args, statements)
    finally:
        DBOS.destroy()


async def measure_tendril(args: argparse.Namespace, statements: Statements, tmp: Path) -> dict[str, Any]:
    import httpx

    from auth.crypto import generate_key
    from clients.rest import TendrilClient
    from server.app import build_app, build_core
    from server.core.workflows.executions import FinishedExecution
    from server.settings import ConnectorSettings, Settings

    settings = Settings(
        env="development",
        data_dir=tmp / "data",
        database_url=f"sqlite+aiosqlite:///{tmp / 'tendril.db'}"
        if args.database == "sqlite"
        else args.database,
        master_key=generate_key(),
        public_url="http://127.0.0.1:8080",
        log_level="WARNING",
        api_rate_limit=1_000_000,
        connectors={
            "slack": ConnectorSettings(api_base=args.slack),
            "http": ConnectorSettings(allowed_hosts="127.0.0.1"),
        },
    )
    core = build_core(settings)
    app = build_app(settings, core=core)
    async with app.router.lifespan_context(app):
        owner = await core.identity.create_owner("bench")
        key = await core.identity.create_api_key(owner.id, name="bench", permissions=["admin"])
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with TendrilClient("http://127.0.0.1:8080", api_key=key.plaintext, transport=transport) as api:
            started = await api.create_connection("slack")
            connection = await api.submit_credentials(started.connection.id, {"bot_token": SLACK_TOKEN})

        def post(name: str, text: str) -> dict[str, Any]:
            config = {"connectionId": connection.id, "action": "post_message"}
            return {
                "name": name,
                "type": "action",
                "config": {**config, "parameters": {"channel": CHANNEL, "text": text}},
            }

        third = {"method": "POST", "url": args.receiver, "body": {"n": "{{ input.n }}"}}
        steps = [
            post("first", "first {{ input.n }}"),
            post("second", "second {{ input.n }}"),
            {"name": "third", "type": "http_request", "config": third},
        ]
        workflow = await core.workflows.create(owner.id, name="bench", definition={"steps": steps})
        executions = core.executions
        # Told by the execution itself as it finishes (engine.wait polls DBOS once a second, which
        # would time the polling, not the engine).
        ended: dict[uuid.UUID, asyncio.Future[FinishedExecution]] = {}

        async def finished(done: FinishedExecution) -> None:
            ended.setdefault(done.execution_id, asyncio.get_running_loop().create_future()).set_result(done)

        executions.on_finished(finished)

        async def one(n: int) -> Any:
            view = await executions.start(owner.id, workflow.id, {"n": n}, started_by="api")
            done = await ended.setdefault(view.id, asyncio.get_running_loop().create_future())
            if done.status != "completed":
                raise RuntimeError(f"execution {view.id} ended {done.status}: {done.error}")
            return done.output

        return await _drive(one, args, statements)


def cmd_measure(args: argparse.Namespace) -> int:
    statements = Statements()
    statements.install()
    with tempfile.TemporaryDirectory(prefix="tendril-bench-wf-") as tmp:
        if args.variant == "direct":
            work = measure_direct(args, statements)
        elif args.variant == "dbos":
            work = measure_dbos(args, statements, Path(tmp))
        else:
            work = measure_tendril(args, statements, Path(tmp))
        print(json.dumps(asyncio.run(work)))
    return 0


# -- the run ----------------------------------------------------------------------------------------
@contextmanager
def fakes() -> Iterator[tuple[str, str]]:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from tests.fakes.loopback import run_asgi_on_loopback
    from tests.fakes.slack import FakeSlack

    slack = FakeSlack()
    slack.add_token(SLACK_TOKEN)
    received = 0

    async def receive(request: Request) -> JSONResponse:
        nonlocal received
        received += 1
        body = await request.body()
        return JSONResponse({"id": received, "echo": json.loads(body) if body else None})

    receiver = Starlette(routes=[Route("/{path:path}", receive, methods=["POST"])])
    with run_asgi_on_loopback(slack.app) as slack_url, run_asgi_on_loopback(receiver) as receiver_url:
        yield f"{slack_url}/api/", f"{receiver_url}/orders"


@contextmanager
def postgres(url: str | None) -> Iterator[Callable[[], str]]:
    """A factory of fresh databases on the cluster (dropped at exit)."""
    import asyncpg
    from sqlalchemy.engine import make_url

    with ExitStack() as stack:
        if url is None:
            from tests.support.postgres import throwaway_postgres

            url = stack.enter_context(throwaway_postgres()).url()
        base = make_url(url)
        plain = base.set(drivername="postgresql").render_as_string(hide_password=False)
        made: list[str] = []

        async def sql(statement: str) -> None:
            conn = await asyncpg.connect(plain)
            try:
                await conn.execute(statement)
            finally:
                await conn.close()

        def fresh() -> str:
            name = f"bench_wf_{uuid.uuid4().hex[:12]}"
            asyncio.run(sql(f'CREATE DATABASE "{name}"'))
            made.append(name)
            return base.set(database=name).render_as_string(hide_password=False)

        try:
            yield fresh
        finally:
            for name in made:
                asyncio.run(sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _measure(
    variant: str, database: str, slack: str, receiver: str, args: argparse.Namespace
) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "measure", "--variant", variant, "--database", database]
    cmd += ["--slack", slack, "--receiver", receiver, "--executions", str(args.executions)]
    cmd += ["--warmup", str(args.warmup), "--concurrency", str(args.concurrency)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENDRIL_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)
    if done.returncode != 0:
        raise SystemExit(f"{variant} on {database} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _report(name: str, runs: dict[str, list[dict[str, Any]]]) -> None:
    def median(variant: str, field: str) -> float:
        return statistics.median(r[field] for r in runs[variant])

    print(f"\n== {name} ==")
    print(f"{'variant':<8} {'exec/s':>8} {'CPU ms/exec':>12} {'p50 ms':>8}   per round (exec/s)")
    for variant in VARIANTS:
        rounds = " ".join(f"{r['rate']:.1f}" for r in runs[variant])
        print(
            f"{variant:<8} {median(variant, 'rate'):>8.1f} {median(variant, 'cpu_ms'):>12.2f} "
            f"{median(variant, 'p50_ms'):>8.1f}   {rounds}"
        )
    ratios = [t["rate"] / d["rate"] for t, d in zip(runs["tendril"], runs["dbos"], strict=True)]
    engine = [d["rate"] / x["rate"] for d, x in zip(runs["dbos"], runs["direct"], strict=True)]
    print(
        f"tendril/dbos: median {statistics.median(ratios):.2f} (rounds: "
        f"{' '.join(f'{r:.2f}' for r in ratios)}; target 0.70)"
    )
    print(f"dbos/direct: median {statistics.median(engine):.2f}")
    dbos_cpu = (median("dbos", "cpu_ms") - median("direct", "cpu_ms")) / STEPS
    tendril_cpu = (median("tendril", "cpu_ms") - median("dbos", "cpu_ms")) / STEPS
    print(f"CPU per step: DBOS over direct {dbos_cpu:.2f} ms; Tendril over bare DBOS {tendril_cpu:.2f} ms")
    print("statements per execution (last round):")
    for variant in ("dbos", "tendril"):
        counts: dict[str, float] = runs[variant][-1]["statements"]
        writes = sum(v for k, v in counts.items() if len(k.split()) == 3)
        total = sum(counts.values())
        print(f"  {variant}: {writes:.1f} writes ({writes / STEPS:.1f} per step), {total:.1f} in all")
        for key, value in counts.items():
            print(f"    {key:<45} {value:6.2f}")


def cmd_run(args: argparse.Namespace) -> int:
    databases = [d.strip() for d in args.databases.split(",") if d.strip()]
    load = os.getloadavg()
    print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")
    with ExitStack() as stack:
        slack, receiver = stack.enter_context(fakes())
        fresh_pg = stack.enter_context(postgres(args.database_url)) if "postgresql" in databases else None
        for name in databases:
            runs: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
            for round_ in range(args.rounds):
                order = VARIANTS[round_ % 3 :] + VARIANTS[: round_ % 3]
                for variant in order:
                    database = "sqlite" if name == "sqlite" else fresh_pg()  # type: ignore[misc]
                    result = _measure(variant, database, slack, receiver, args)
                    runs[variant].append(result)
                    print(f"  {name} round {round_ + 1} {variant}: {result['rate']:.1f} exec/s", flush=True)
            _report(name, runs)
    load = os.getloadavg()
    print(f"\nload average at end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run")
    measure = sub.add_parser("measure")
    for p in (run, measure):
        p.add_argument("--executions", type=int, default=150)
        p.add_argument("--warmup", type=int, default=20)
        p.add_argument("--concurrency", type=int, default=8)
    run.add_argument("--databases", default="sqlite,postgresql")
    run.add_argument("--rounds", type=int, default=3)
    run.add_argument("--database-url", default=None, help="a PostgreSQL cluster to make databases on")
    measure.add_argument("--variant", choices=VARIANTS, required=True)
    measure.add_argument("--database", required=True, help="sqlite, or a PostgreSQL URL")
    measure.add_argument("--slack", required=True)
    measure.add_argument("--receiver", required=True)
    argv = sys.argv[1:]
    if not argv or argv[0] not in ("run", "measure"):
        argv = ["run", *argv]
    args = parser.parse_args(argv)
    return cmd_measure(args) if args.command == "measure" else cmd_run(args)


if __name__ == "__main__":
    sys.exit(main())
