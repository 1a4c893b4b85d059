"""The audit trail: what agents, API keys, browser sessions and the system did, and how it ended.

Recorded by the use cases themselves, so every edge's requests are covered alike:

- `tool.call` (an agent over MCP) and `action.run` (a key or session over REST): the connection,
  connector and action, the outcome and the latency; never the arguments or the result.
- `credential.submit` (a credential typed in for a connection, or a credential object created or
  rotated) and `credential.verify` (the provider asked whether a credential works).
- `oauth.complete` and `oauth.fail` (the outcome says why: access_denied, exchange_failed, ...).
- `connection.status`: every status move (pending, active, needs_reauth, revoked), from and to.
- `key.create`, `key.update`, `key.rotate`, `key.revoke`; `agent.create`, `agent.update`,
  `agent.rotate_key`, `agent.delete`.
- `workflow.create`, `workflow.update` (which fields changed), `workflow.delete`.
- `trigger.create`, `trigger.update` (which fields changed), `trigger.delete`: a workflow's event
  and schedule triggers.
- `signin.ok`, `signin.fail`.

Who acts is set by the edge that took the request (`acting_as`: the REST endpoint wrapper, the
signed-in page wrapper, the MCP tool handler); anything else acts as `system` (the CLI, background
work). Recording costs the request almost nothing: events are queued in memory and written in
batches every FLUSH_SECONDS (a group commit), and at shutdown. Recording never fails the operation
it describes: an event that cannot be recorded is logged and dropped. Events older than the
retention period (TENDRIL_AUDIT_RETENTION_DAYS) are deleted every PRUNE_INTERVAL_SECONDS.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, get_args
from uuid import UUID

import anyio

from connectors.errors import ConnectorError
from server.core import errors
from server.core.group_commit import GroupCommit
from server.core.paging import cursor_of, id_after
from server.core.throttle import Throttled
from storage.audit import AuditEvent, AuditQuery, AuditStore, event_id, to_millisecond

logger = logging.getLogger(__name__)

FLUSH_SECONDS = 0.5
MAX_BATCH = 500
# Events waiting to be written, at most; past it (the database has been away a while) new ones
# are dropped, and counted, rather than held without bound.
MAX_PENDING = 20_000
PRUNE_INTERVAL_SECONDS = 3600.0
PAGE_DEFAULT, PAGE_MAX = 50, 500

ActorType = Literal["agent", "key", "session", "system"]
Kind = Literal[
    "tool.call",
    "action.run",
    "credential.submit",
    "credential.verify",
    "oauth.complete",
    "oauth.fail",
    "connection.status",
    "key.create",
    "key.update",
    "key.rotate",
    "key.revoke",
    "agent.create",
    "agent.update",
    "agent.rotate_key",
    "agent.delete",
    "workflow.create",
    "workflow.update",
    "workflow.delete",
    "trigger.create",
    "trigger.update",
    "trigger.delete",
    "signin.ok",
    "signin.fail",
]
KINDS: tuple[Kind, ...] = get_args(Kind)
# A filter may name a kind or its family (`key` for every key.* kind).
FAMILIES: dict[str, tuple[Kind, ...]] = {
    family: tuple(kind for kind in KINDS if kind.split(".")[0] == family)
    for family in dict.fromkeys(kind.split(".")[0] for kind in KINDS)
}


@dataclass(frozen=True, slots=True)
class Actor:
    """Who did it: an agent (its id), an API key (its id), a browser session (the id of the key it
    was opened with), or the system (no id)."""

    type: ActorType
    id: UUID | None = None

    @classmethod
    def agent(cls, agent_id: UUID) -> Actor:
        return cls("agent", agent_id)

    @classmethod
    def key(cls, key_id: UUID) -> Actor:
        return cls("key", key_id)

    @classmethod
    def session(cls, key_id: UUID) -> Actor:
        return cls("session", key_id)


SYSTEM = Actor("system")
_actor: ContextVar[Actor] = ContextVar("tendril_audit_actor", default=SYSTEM)


@contextmanager
def acting_as(actor: Actor) -> Iterator[None]:
    """What the use cases called inside record as done by `actor` (set by the edges, per request)."""
    token = _actor.set(actor)
    try:
        yield
    finally:
        _actor.reset(token)


def current_actor() -> Actor:
    return _actor.get()


_DOMAIN_CODES: tuple[tuple[type[errors.DomainError], str], ...] = (
    (errors.Invalid, "invalid_input"),
    (errors.Unauthenticated, "unauthenticated"),
    (errors.Forbidden, "forbidden"),
    (errors.NotFound, "not_found"),
    (errors.Conflict, "conflict"),
    (errors.TooLarge, "too_large"),
    (errors.Unavailable, "unavailable"),
    (errors.Upstream, "upstream_error"),
)


def outcome_of(error: BaseException) -> str:
    """The stable code an operation that raised `error` ended with (what the edges answer)."""
    if isinstance(error, ConnectorError):
        return error.code
    if isinstance(error, errors.DomainError):
        if isinstance(error, Throttled):
            return "rate_limited"
        return next((code for kind, code in _DOMAIN_CODES if isinstance(error, kind)), "error")
    if isinstance(error, anyio.get_cancelled_exc_class()):
        return "cancelled"
    return "internal_error"


def family_or_kind(value: str) -> tuple[Kind, ...] | None:
    """The kinds a filter value names (`key.create`, or `key` for them all); None if none."""
    if value in FAMILIES:
        return FAMILIES[value]
    return next(((kind,) for kind in KINDS if kind == value), None)


def _utc(value: datetime | None) -> datetime | None:
    """A time without a zone is taken as UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class AuditPage:
    events: list[AuditEvent]
    next_cursor: str | None  # the page after this one; None when this is the last


class Audit:
    def __init__(
        self,
        store: AuditStore,
        *,
        clock: Callable[[], datetime],
        retention_days: int,
        flush_seconds: float = FLUSH_SECONDS,
    ) -> None:
        self._store = store
        self._clock = clock
        self._retention = timedelta(days=retention_days) if retention_days > 0 else None
        self._commits: GroupCommit[AuditEvent, None] = GroupCommit(
            self._write,
            name="audit trail",
            max_batch=MAX_BATCH,
            linger=flush_seconds,
            max_pending=MAX_PENDING,
        )
        self._stopped: anyio.Event | None = None
        self._stopping = False

    @property
    def dropped(self) -> int:
        """Events lost since start (the database refused them, or too many were waiting)."""
        return self._commits.dropped

    # -- recording ---------------------------------------------------------------------------------
    def record(
        self,
        kind: Kind,
        owner_id: UUID | None,
        *,
        outcome: str = "ok",
        agent_id: UUID | None = None,
        connection_id: UUID | None = None,
        connector: str | None = None,
        action: str | None = None,
        latency_ms: float | None = None,
        detail: Mapping[str, Any] | None = None,
        actor: Actor | None = None,
    ) -> None:
        """Queue one event, done by `actor` (the request's, by default). Never raises."""
        try:
            who = actor or _actor.get()
            if agent_id is None and who.type == "agent":
                agent_id = who.id
            at = to_millisecond(self._clock())
            self._commits.submit(
                AuditEvent(
                    event_id(at),
                    owner_id,
                    at,
                    kind,
                    who.type,
                    who.id,
                    agent_id,
                    connection_id,
                    connector,
                    action,
                    outcome,
                    None if latency_ms is None else round(latency_ms, 3),
                    detail or {},
                )
            )
        except Exception:  # the operation it describes goes on regardless
            logger.exception("audit event %s dropped", kind)

    @contextmanager
    def timed(
        self,
        kind: Kind,
        owner_id: UUID | None,
        *,
        connection_id: UUID | None = None,
        connector: str | None = None,
        action: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> Iterator[None]:
        """Record the block as one event: its latency, and ok or the code of what it raised."""
        started = time.perf_counter()
        outcome = "ok"
        try:
            yield
        except BaseException as exc:
            outcome = outcome_of(exc)
            raise
        finally:
            self.record(
                kind,
                owner_id,
                outcome=outcome,
                connection_id=connection_id,
                connector=connector,
                action=action,
                latency_ms=(time.perf_counter() - started) * 1000,
                detail=detail,
            )

    async def _write(self, events: list[AuditEvent]) -> list[None]:
        await self._store.record(events)
        return [None] * len(events)

    # -- reading -------------------------------------------------------------------------------------
    async def list(
        self,
        owner_id: UUID,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        agent_id: UUID | None = None,
        connection_id: UUID | None = None,
        kind: str | None = None,
        limit: int = PAGE_DEFAULT,
        cursor: str | None = None,
    ) -> AuditPage:
        """A page of the owner's events, newest first: at or after `since`, before `until`, of one
        agent (done by it or to it), one connection, one kind or family of kinds (`key`), after the
        page whose `next_cursor` is `cursor`. This process's queued events are written first, so a
        caller sees what it has just done."""
        if not 1 <= limit <= PAGE_MAX:
            raise errors.Invalid(f"limit must be between 1 and {PAGE_MAX}", field="limit")
        kinds: tuple[Kind, ...] = ()
        if kind:
            found = family_or_kind(kind)
            if found is None:
                choices = ", ".join([*FAMILIES, *KINDS])
                raise errors.Invalid(f"unknown kind {kind!r}; choose one of: {choices}", field="kind")
            kinds = found
        query = AuditQuery(
            owner_id,
            limit + 1,  # one more than shown: whether there is a next page
            since=_utc(since),
            until=_utc(until),
            before=id_after(cursor) if cursor else None,
            agent_id=agent_id,
            connection_id=connection_id,
            kinds=kinds,
        )
        await self.flush()
        events = await self._store.page(query)
        shown = events[:limit]
        return AuditPage(shown, cursor_of(shown[-1].id) if len(events) > limit else None)

    # -- background work -----------------------------------------------------------------------------
    async def flush(self) -> None:
        """Write every event queued so far (shutdown, readers); failures are logged, never raised."""
        try:
            await self._commits.flush()
        except Exception:
            logger.exception("audit events could not be written")

    async def prune(self) -> int:
        """Delete the events older than the retention period; how many."""
        if self._retention is None:
            return 0
        return await self._store.delete_before(self._clock() - self._retention)

    async def run(self) -> None:
        """Write queued events every FLUSH_SECONDS and prune old ones every PRUNE_INTERVAL_SECONDS,
        until stop(); what is queued then is written before it returns."""
        self._stopped = anyio.Event()
        if self._stopping:
            self._stopped.set()
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self._commits.run)
            tasks.start_soon(self._prune_periodically, self._stopped)

    def stop(self) -> None:
        self._stopping = True
        self._commits.stop()
        if self._stopped is not None:
            self._stopped.set()

    async def _prune_periodically(self, stopped: anyio.Event) -> None:
        while not stopped.is_set():
            try:
                if pruned := await self.prune():
                    logger.info("audit trail: %d events past the retention period deleted", pruned)
            except Exception:
                logger.warning("audit trail: pruning old events failed; trying again later", exc_info=True)
            with anyio.move_on_after(PRUNE_INTERVAL_SECONDS):
                await stopped.wait()
