"""Executions run on DBOS Transact: one durable workflow function runs a definition's steps in
order, each step checkpointed in DBOS's system database, so a step that completed never runs
again after a crash and an interrupted execution carries on from the step it was in.

Where DBOS keeps its state: on SQLite, `<data_dir>/dbos.sqlite` (nothing to start, one process);
on PostgreSQL, Tendril's own database under the `dbos` schema (replicas share it).

DBOS is one instance per process and registers its workflow functions globally when they are
decorated (here, at import). So:

- it is launched lazily, when a Core first needs it (an execution started or read), or at start
  when some execution has not finished (DBOS recovers those at launch); a Tendril that runs no
  workflow never pays for it;
- it is launched on the running event loop, so executions (and recovered ones) run on the loop
  where Tendril's clients and database pools live;
- the application version is pinned (APPLICATION_VERSION), so executions interrupted by a crash
  or an upgrade are recovered by the next start whatever code changed around the workflow;
- at stop, this process's executions in flight are cancelled on the loop (left PENDING in DBOS,
  recovered at the next launch) and DBOS is destroyed; its registry stays, so the next Core in
  this process (tests build many) launches it again;
- two Cores running at once in one process share the one DBOS when their system database is the
  same (in-process replicas on one PostgreSQL database, in tests); with another system database the
  second refuses to run workflows (Unavailable): DBOS cannot hold two.

Several replicas on one PostgreSQL need distinct, stable TENDRIL_WORKFLOW_EXECUTOR_ID values: DBOS
recovers at launch the unfinished executions of its executor id, and two live processes with the
same id would both run them.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol
from uuid import UUID

import anyio
from dbos import DBOS, SetWorkflowID
from sqlalchemy.engine import make_url

from server.core.audit import Actor, acting_as
from server.core.errors import Unavailable
from server.settings import Settings

logger = logging.getLogger(__name__)

# Pinned: DBOS recovers only the executions of the version it runs. Change it only if the execution
# workflow's sequence of DBOS operations changes in a way old checkpoints cannot be replayed on.
APPLICATION_VERSION = "tendril-executions-1"
WORKFLOW_NAME = "tendril.execution"
SYSTEM_SCHEMA = "dbos"
# How long an execution runs before Tendril's copy of its status (what lists filter on) says running.
RUNNING_MARK_SECONDS = 0.5
# How often DBOS's listener polls SQLite for notifications (PostgreSQL is told at once); it also
# bounds how long stopping DBOS takes (it waits for the listener's next round).
SQLITE_POLL_SECONDS = 0.25
STOP_SECONDS = 10


class StepFailed(Exception):
    """A step that failed, as recorded in DBOS (pickled: only its code and message travel)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message


class StepRunner(Protocol):
    """What the engine asks of Tendril while an execution runs (server/core/workflows/steps.py
    and executions.py answer)."""

    async def run_step(
        self, spec: Mapping[str, Any], step: Mapping[str, Any], context: Mapping[str, Any], key: str
    ) -> Any:
        """Run one step (action, http_request, condition) and return its output; raise StepFailed."""
        ...

    def delay_seconds(self, step: Mapping[str, Any], context: Mapping[str, Any]) -> float:
        """How long a delay step sleeps (its config rendered); raise StepFailed."""
        ...

    async def started(self, execution_id: UUID) -> None:
        """The execution has been running for RUNNING_MARK_SECONDS (or resumed after a crash)."""
        ...

    async def finished(self, execution_id: UUID, spec: Mapping[str, Any], result: Mapping[str, Any]) -> None:
        """The execution ended: `result` is {status, output, error}. Runs again if a crash comes
        before DBOS records the end (the recovered execution replays its steps and ends again),
        so what it does must be safe to repeat."""
        ...


@dataclass(frozen=True, slots=True)
class SystemDatabase:
    url: str
    schema: str | None
    executor_id: str

    @classmethod
    def of(cls, settings: Settings) -> SystemDatabase:
        url = make_url(settings.resolved_database_url)
        if url.get_backend_name() == "postgresql":
            # DBOS talks to its tables synchronously, with psycopg, in its own schema.
            text = url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
            return cls(text, SYSTEM_SCHEMA, settings.workflow_executor_id)
        return cls(
            f"sqlite:///{settings.data_dir.resolve() / 'dbos.sqlite'}", None, settings.workflow_executor_id
        )


@dataclass
class _Launched:
    database: SystemDatabase
    loop: asyncio.AbstractEventLoop
    users: list[WorkflowEngine] = field(default_factory=list["WorkflowEngine"])
    # This process's executions in flight: cancelled at stop, so they stay PENDING for recovery.
    tasks: set[asyncio.Task[Any]] = field(default_factory=set["asyncio.Task[Any]"])

    @property
    def runner(self) -> StepRunner:
        if not self.users:
            raise RuntimeError("DBOS is running without a Tendril core")
        return self.users[-1].runner


_launched: _Launched | None = None
_stopping: anyio.Event | None = None


def _current() -> _Launched:
    if _launched is None:
        raise RuntimeError("the workflow engine is not running")
    return _launched


class WorkflowEngine:
    """A Core's handle on the process's DBOS: starts, reads and cancels executions."""

    def __init__(self, database: SystemDatabase, runner: StepRunner) -> None:
        self.database = database
        self.runner = runner
        self._joined = False

    @property
    def running(self) -> bool:
        return self._joined

    async def ensure_running(self) -> None:
        """Launch DBOS (or join the one running in this process) unless this Core already has."""
        global _launched
        if self._joined:
            return
        while _stopping is not None:
            await _stopping.wait()
        if _launched is None:
            # DBOS's migrations first, off the loop: launching runs them on the loop, and on
            # PostgreSQL one (CREATE INDEX CONCURRENTLY) waits for every open transaction, which
            # a request of ours on this very loop could then never finish.
            await anyio.to_thread.run_sync(_migrate, self.database)
        if _launched is None:  # still: nobody launched it while this Core waited
            _launched = _launch(self.database)
        elif _launched.database != self.database:
            raise Unavailable(
                "workflows run on one system database per process, and another Tendril in this "
                "process already runs them on another"
            )
        _launched.users.append(self)
        self._joined = True

    async def stop(self) -> None:
        """Leave DBOS; the last Core to leave cancels the executions in flight on this loop (DBOS
        recovers them at its next launch) and destroys it."""
        global _launched, _stopping
        if not self._joined:
            return
        self._joined = False
        launched = _current()
        launched.users.remove(self)
        if launched.users:
            return
        _stopping = anyio.Event()
        try:
            tasks = [task for task in launched.tasks if not task.done()]
            for task in tasks:
                task.cancel()
            if tasks:
                with anyio.move_on_after(STOP_SECONDS):
                    await asyncio.gather(*tasks, return_exceptions=True)
            await anyio.to_thread.run_sync(DBOS.destroy)
            # DBOS made its (now shut down) thread pool this loop's default executor.
            launched.loop.set_default_executor(ThreadPoolExecutor(thread_name_prefix="asyncio"))
        finally:
            _launched = None
            stopping, _stopping = _stopping, None
            stopping.set()

    async def start(self, execution_id: UUID, spec: Mapping[str, Any], *, fresh: bool = False) -> None:
        """Start the execution (a DBOS workflow whose id is the execution's). Starting an id DBOS
        already knows starts nothing. `fresh` says the id was made just now (its row just added),
        so DBOS cannot know it and its status is not read first."""
        await self.ensure_running()
        if not fresh and await DBOS.get_workflow_status_async(str(execution_id)) is not None:
            return
        with SetWorkflowID(str(execution_id)):
            await DBOS.start_workflow_async(_execution, dict(spec))

    async def status(self, execution_id: UUID) -> Any:
        """DBOS's WorkflowStatus of the execution (None if DBOS never heard of it)."""
        await self.ensure_running()
        return await DBOS.get_workflow_status_async(str(execution_id))

    async def steps(self, execution_id: UUID) -> list[Any]:
        """DBOS's recorded steps (StepInfo), in order."""
        await self.ensure_running()
        return list(await DBOS.list_workflow_steps_async(str(execution_id)))

    async def cancel(self, execution_id: UUID) -> None:
        await self.ensure_running()
        await DBOS.cancel_workflow_async(str(execution_id))

    async def wait(self, execution_id: UUID) -> Any:
        """The execution's result once it ends (tests and the benchmark)."""
        await self.ensure_running()
        handle = await DBOS.retrieve_workflow_async(str(execution_id))
        return await handle.get_result()


_migrating = threading.Lock()


def _migrate(database: SystemDatabase) -> None:
    """Create or bring DBOS's system tables up to date (quick when they are); one at a time."""
    with _migrating:
        DBOS.migrate(database.url, schema=database.schema or SYSTEM_SCHEMA)


def _launch(database: SystemDatabase) -> _Launched:
    # DBOS's own console handler would bypass Tendril's log format and redaction: give its logger
    # a handler so it adds none, and let records reach the root logger's. Its banners are INFO.
    dbos_logger = logging.getLogger("dbos")
    if not dbos_logger.handlers:
        dbos_logger.addHandler(logging.NullHandler())
    config: dict[str, Any] = {
        "name": "tendril",
        "system_database_url": database.url,
        "application_version": APPLICATION_VERSION,
        "executor_id": database.executor_id,
        "log_level": "WARNING",
        "notification_listener_polling_interval_sec": SQLITE_POLL_SECONDS,
    }
    if database.schema is not None:
        config["dbos_system_schema"] = database.schema
    DBOS(config=config)  # type: ignore[arg-type]  # a DBOSConfig TypedDict
    try:
        DBOS.launch()  # on the running loop: its executions (recovered ones too) run on this loop
    except BaseException:
        DBOS.destroy()
        raise
    logger.info("workflow engine started (DBOS, executor %s)", database.executor_id)
    return _Launched(database, asyncio.get_running_loop())


# -- the execution workflow ---------------------------------------------------------------------------
def step_key(execution_id: str, step_name: str) -> str:
    """The idempotency key of one step of one execution: the same on every retry of that step."""
    return f"{execution_id}:{step_name}"


def actor_of(spec: Mapping[str, Any]) -> Actor:
    actor = spec.get("actor") or {}
    kind, ident = actor.get("type", "system"), actor.get("id")
    return Actor(kind, UUID(ident) if ident else None)


async def _named_step(name: str, work: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    """`work(*args)` as the DBOS step `name` (an async function: DBOS awaits it on this loop)."""
    return await DBOS.run_step_async({"name": name}, work, *args)


async def _fail(error: StepFailed) -> Any:
    raise error


@DBOS.workflow(name=WORKFLOW_NAME)
async def _execution(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the definition's steps in order. Each is a DBOS step named after the definition's step
    (a delay is DBOS's durable sleep followed by that step), so a recovered execution replays the
    outputs recorded so far and runs from the first step without one. Then the runner records the
    outcome in Tendril and tells the on_finished listeners: not a DBOS step (that would cost two
    more system-database round trips an execution), so a crash before DBOS records the end repeats
    it, which is why everything it does is idempotent."""
    launched = _current()
    task = asyncio.current_task()
    if task is not None:
        launched.tasks.add(task)
    try:
        execution_id = str(DBOS.workflow_id)
        runner = launched.runner
        with acting_as(actor_of(spec)):
            # Tendril's copy of the status says running only once the execution has run for a
            # moment: most finish sooner and go from pending to their end in one write. (Reading
            # an execution asks DBOS, which knows it is running from the start.)
            started = asyncio.get_running_loop().call_later(
                RUNNING_MARK_SECONDS, _mark_running, runner, UUID(execution_id)
            )
            try:
                result = await _run_steps(runner, execution_id, spec)
            finally:
                started.cancel()
            await runner.finished(UUID(execution_id), spec, result)
        return result
    finally:
        if task is not None:
            launched.tasks.discard(task)


def _mark_running(runner: StepRunner, execution_id: UUID) -> None:
    # A task of its own: the update moves only a pending row, so it can never undo the end's.
    tasks = _current().tasks
    task = asyncio.ensure_future(runner.started(execution_id))
    tasks.add(task)

    def done(task: asyncio.Task[None]) -> None:
        tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.warning("could not mark execution %s running", execution_id, exc_info=task.exception())

    task.add_done_callback(done)


async def _run_steps(runner: StepRunner, execution_id: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    outputs: dict[str, Any] = {}
    output: Any = None
    steps: Sequence[Mapping[str, Any]] = spec["steps"]
    skipped: set[str] = set()
    for step in steps:
        name = str(step["name"])
        if name in skipped:
            continue
        context = {"input": spec.get("input") or {}, "steps": {n: {"output": o} for n, o in outputs.items()}}
        try:
            if step["type"] == "delay":
                try:
                    seconds = runner.delay_seconds(step, context)
                except StepFailed as error:
                    await _named_step(name, _fail, error)
                    raise
                await DBOS.sleep_async(seconds)
                result: Any = await _named_step(name, _slept, seconds)
            else:
                key = step_key(execution_id, name)
                result = await _named_step(name, runner.run_step, spec, step, context, key)
        except StepFailed as error:
            return {
                "status": "failed",
                "output": output,
                "error": {"step": name, "code": error.code, "message": error.message},
            }
        outputs[name] = result
        if step["type"] == "condition":
            outcome = result.get("then") if isinstance(result, dict) else None
            if outcome == "stop":
                break
            if outcome == "skip":
                skipped.update(str(n) for n in result.get("skip") or [])
            continue
        output = result
    return {"status": "completed", "output": output, "error": None}


async def _slept(seconds: float) -> dict[str, Any]:
    return {"seconds": seconds}
