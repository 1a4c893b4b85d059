"""What starts a workflow besides a request: a provider event or a schedule. Managed per owner and
workflow (create, list, get, change, delete); an owner's trigger only ever starts that owner's
workflow, and names only that owner's webhook endpoint.

Event triggers. A trigger names a normalised event key (`github.issues.opened`, or a prefix
`github.issues.*`) and optionally one of the owner's webhook endpoints (otherwise any of them).
The ingest path matches each verified delivery against its endpoint's triggers (cached with the
endpoint's routing, so matching costs a dict lookup) and the delivery writer records a firing per
matched trigger in the same transaction as the delivery, only when the delivery is new: a
provider's retry of the same delivery is a duplicate and fires nothing. After the batch (never
before the provider's 2xx, never in its way), the firings are claimed here and their executions
started with the delivery's dedupe identity as the idempotency key (`event:<endpoint>:<event id>`),
started_by="event"; a firing is deleted once its execution exists. A process that dies in
between leaves the firing behind: it is claimed again at the next start or by any replica's sweep
(every SWEEP_SECONDS, once its claim runs out), and the idempotency key makes a second start find
the first execution. The execution's input is the event's payload, as its jobs get it.

Schedule triggers. A cron expression (5 fields, or 6 with seconds first, as DBOS's croniter reads
it), an optional IANA time zone and a fixed input. Each active one is a DBOS dynamic schedule
named after the trigger: DBOS's scheduler derives one workflow id per tick
(`sched-<trigger>-<time>`), so however many replicas run the scheduler, a tick is enqueued once;
that workflow (TICK_WORKFLOW) starts the Tendril execution with the idempotency key
`schedule:<trigger>:<tick time>`, started_by="schedule". The DBOS schedules follow the table on
create, change, delete and (de)activation, and at start (`resume`, which launches DBOS when any
trigger is active: launching it blocks the loop for a moment, which the ingest path should not
see). A tick whose trigger is gone, inactive, or whose workflow was deleted
deletes its schedule and starts nothing. DBOS's scheduler picks up a new or changed schedule
within its polling interval (30 s; every second in the minute after it launches).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from dbos import DBOS

from connectors import Catalog
from server.core.audit import Audit
from server.core.errors import Invalid, NotFound
from server.core.webhooks.ingest import EventMatcher
from server.core.workflows.executions import Executions
from server.core.workflows.service import Workflows
from storage.jobs import WebhookStore
from storage.webhook_records import EndpointRecord, TriggerFiring
from storage.workflow_triggers import TriggerRecord, TriggerStore

logger = logging.getLogger(__name__)

KINDS = ("event", "schedule")
TICK_WORKFLOW = "tendril.schedule"
EVENT_KEY_MAX, CRON_MAX, INPUT_MAX_BYTES = 200, 100, 64 * 1024
# A normalised event key: the provider's slug, then dot-separated parts; `.*` at the end matches
# every key under the prefix.
EVENT_KEY = re.compile(r"^[a-z0-9_]+(\.[A-Za-z0-9_:\-]+)*(\.\*)?$")
FIRING_BATCH = 100
FIRING_LEASE = timedelta(seconds=60)
SWEEP_SECONDS = 15.0

# The Triggers of the Cores running in this process: DBOS runs a schedule's tick as a workflow
# registered once per process, which starts the execution through one of them (they share the
# database: in-process replicas in tests).
_running: list[Triggers] = []


def _tick_target() -> Triggers:
    if not _running:
        raise RuntimeError("a schedule ticked in a process with no Tendril core running")
    return _running[-1]


@DBOS.workflow(name=TICK_WORKFLOW)
async def _tick(scheduled_at: datetime, context: dict[str, Any]) -> None:
    """One tick of a schedule trigger (DBOS enqueues it once per tick, whichever replica sees it)."""
    await _tick_target().fire_schedule(UUID(str(context["triggerId"])), scheduled_at)


def check_cron(cron: object) -> str:
    if not isinstance(cron, str) or not cron.strip():
        raise Invalid("a schedule trigger needs cron, a cron expression", field="cron")
    cron = " ".join(cron.split())
    fields = len(cron.split(" "))
    if len(cron) > CRON_MAX or fields not in (5, 6) or not croniter.is_valid(cron, second_at_beginning=True):
        raise Invalid(
            f"cron {cron[:CRON_MAX]!r} is not a valid cron expression: 5 fields (minute hour day "
            "month weekday) or 6 with seconds first",
            field="cron",
        )
    return cron


def check_timezone(timezone: object) -> str | None:
    if timezone is None:
        return None
    try:
        if not isinstance(timezone, str) or not timezone or len(timezone) > 64:
            raise ValueError(timezone)
        ZoneInfo(timezone)
    except (ValueError, ZoneInfoNotFoundError):
        raise Invalid(
            f"timezone {str(timezone)[:64]!r} is not an IANA time zone (e.g. Europe/Paris)", field="timezone"
        ) from None
    return timezone


def check_input(value: object) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise Invalid("input must be a JSON object", field="input")
    if len(json.dumps(value)) > INPUT_MAX_BYTES:
        raise Invalid(f"input must be at most {INPUT_MAX_BYTES} bytes of JSON", field="input")
    return dict(value)  # pyright: ignore[reportUnknownArgumentType]


def matches(pattern: str, event_key: str) -> bool:
    if pattern.endswith(".*"):
        return event_key.startswith(pattern[:-1])
    return event_key == pattern


class Triggers:
    def __init__(
        self,
        *,
        store: TriggerStore,
        workflows: Workflows,
        executions: Executions,
        hooks: WebhookStore,
        catalog: Catalog,
        audit: Audit,
        sweep_seconds: float = SWEEP_SECONDS,
    ) -> None:
        self._store = store
        self._workflows = workflows
        self._executions = executions
        self._hooks = hooks
        self._catalog = catalog
        self._audit = audit
        self._sweep_seconds = sweep_seconds
        self._changed: list[Callable[[], None]] = []
        self._wake: asyncio.Event | None = None
        self._stopping = False

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call `listener` when an event trigger is made, changed or deleted (the ingest's cached
        routing holds the endpoints' triggers)."""
        self._changed.append(listener)

    # -- the owner's triggers --------------------------------------------------------------------------
    async def list(self, owner_id: UUID, workflow_id: UUID) -> list[TriggerRecord]:
        await self._workflows.get(owner_id, workflow_id)
        return await self._store.list(owner_id, workflow_id)

    async def get(self, owner_id: UUID, workflow_id: UUID, trigger_id: UUID) -> TriggerRecord:
        await self._workflows.get(owner_id, workflow_id)
        record = await self._store.get(owner_id, workflow_id, trigger_id)
        if record is None:
            raise NotFound("trigger not found")
        return record

    async def create(self, owner_id: UUID, workflow_id: UUID, fields: Mapping[str, Any]) -> TriggerRecord:
        """A new trigger from `fields` (kind, and eventKey/endpointId or cron/timezone/input, active)."""
        await self._workflows.get(owner_id, workflow_id)
        kind = fields.get("kind")
        if kind not in KINDS:
            raise Invalid("kind must be event or schedule", field="kind")
        values = await self._checked(owner_id, str(kind), fields)
        record = await self._store.create(owner_id, workflow_id, kind=kind, **values)
        self._audit.record("trigger.create", owner_id, detail=_detail(record))
        await self._applied(record)
        return record

    async def update(
        self, owner_id: UUID, workflow_id: UUID, trigger_id: UUID, changes: Mapping[str, Any]
    ) -> TriggerRecord:
        """PATCH: the fields given replace what was (null clears endpointId, timezone and input);
        the kind stays."""
        before = await self.get(owner_id, workflow_id, trigger_id)
        if "kind" in changes and changes["kind"] != before.kind:
            raise Invalid("a trigger's kind cannot change: delete it and make another", field="kind")
        merged = {**_fields(before), **{k: v for k, v in changes.items() if k != "kind"}}
        values = await self._checked(owner_id, before.kind, merged)
        record = await self._store.update(owner_id, workflow_id, trigger_id, **values)
        if record is None:
            raise NotFound("trigger not found")
        self._audit.record("trigger.update", owner_id, detail={**_detail(record), "changed": sorted(changes)})
        if (record.cron, record.timezone, record.active) != (before.cron, before.timezone, before.active):
            await self._applied(record)
        elif record.kind == "event":
            self._tell_changed()
        return record

    async def delete(self, owner_id: UUID, workflow_id: UUID, trigger_id: UUID) -> None:
        record = await self.get(owner_id, workflow_id, trigger_id)
        if not await self._store.delete(owner_id, workflow_id, trigger_id):
            raise NotFound("trigger not found")
        self._audit.record("trigger.delete", owner_id, detail=_detail(record))
        if record.kind == "schedule":
            await self._unschedule(record.id)
        else:
            self._tell_changed()

    async def _checked(self, owner_id: UUID, kind: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        active = fields.get("active", True)
        if not isinstance(active, bool):
            raise Invalid("active must be true or false", field="active")
        if kind == "event":
            for name in ("cron", "timezone", "input"):
                if fields.get(name) is not None:
                    raise Invalid(
                        f"{name} is for schedule triggers (an event's payload is the input)", field=name
                    )
            event_key = await self._event_key(fields.get("eventKey"))
            endpoint_id = await self._endpoint(owner_id, fields.get("endpointId"), event_key)
            return {"event_key": event_key, "endpoint_id": endpoint_id, "active": active}
        for name in ("eventKey", "endpointId"):
            if fields.get(name) is not None:
                raise Invalid(f"{name} is for event triggers", field=name)
        return {
            "cron": check_cron(fields.get("cron")),
            "timezone": check_timezone(fields.get("timezone")),
            "input": check_input(fields.get("input")),
            "active": active,
        }

    async def _event_key(self, value: object) -> str:
        if not isinstance(value, str) or not value:
            raise Invalid("an event trigger needs eventKey, e.g. github.issues.opened", field="eventKey")
        if len(value) > EVENT_KEY_MAX or not EVENT_KEY.match(value):
            raise Invalid(
                f"eventKey {value[:EVENT_KEY_MAX]!r} is not an event key: <provider>.<event>..., "
                "optionally ending in .* for every event under it",
                field="eventKey",
            )
        provider = value.split(".", 1)[0]
        if provider not in self._catalog.receivers:
            known = ", ".join(sorted(self._catalog.receivers))
            raise Invalid(
                f"eventKey {value!r} names no provider that sends events; one of: {known}", field="eventKey"
            )
        return value

    async def _endpoint(self, owner_id: UUID, value: object, event_key: str) -> UUID | None:
        if value is None:
            return None
        try:
            endpoint_id = UUID(str(value))
        except ValueError:
            raise Invalid("endpointId must be a webhook endpoint's id", field="endpointId") from None
        endpoint = await self._hooks.endpoint(endpoint_id, owner_id)
        if endpoint is None:
            raise NotFound("webhook endpoint not found")
        if endpoint.provider != event_key.split(".", 1)[0]:
            raise Invalid(
                f"the endpoint receives {endpoint.provider} events, not {event_key}", field="endpointId"
            )
        return endpoint_id

    def _tell_changed(self) -> None:
        for listener in self._changed:
            listener()

    # -- event triggers --------------------------------------------------------------------------------
    async def matcher_for(self, endpoint: EndpointRecord) -> EventMatcher:
        """Which of the endpoint owner's event triggers an event key fires (for the ingest's routing)."""
        found = await self._store.event_triggers(endpoint.owner_id, endpoint.id)
        if not found:
            return _nothing
        exact: dict[str, list[TriggerFiring]] = {}
        prefixes: list[tuple[str, TriggerFiring]] = []
        for trigger in found:
            firing = TriggerFiring(trigger.id, trigger.workflow_id)
            key = trigger.event_key or ""
            if key.endswith(".*"):
                prefixes.append((key[:-1], firing))
            else:
                exact.setdefault(key, []).append(firing)

        def match(event_key: str) -> tuple[TriggerFiring, ...]:
            hits = exact.get(event_key, [])
            if prefixes:
                hits = hits + [f for prefix, f in prefixes if event_key.startswith(prefix)]
            return tuple(hits)

        return match

    def wake(self) -> None:
        """New firings were recorded: start their executions soon (the loop's next round)."""
        if self._wake is not None:
            self._wake.set()

    async def run(self) -> None:
        """Start the executions firings owe: when woken, every SWEEP_SECONDS, and at once at start
        (what a process that died left behind); until stop()."""
        self._wake = wake = asyncio.Event()
        self._stopping = False
        try:
            while not self._stopping:
                wake.clear()  # before the round: firings recorded during it wake the next one
                try:
                    await self.fire_pending()
                except Exception:
                    logger.exception("starting the executions of trigger firings failed; retrying later")
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._sweep_seconds):
                        await wake.wait()
        finally:
            self._wake = None

    def stop(self) -> None:
        self._stopping = True
        if self._wake is not None:
            self._wake.set()

    async def fire_pending(self) -> int:
        """Start the executions of the firings nobody holds; the number started (or found started)."""
        started = 0
        while True:
            firings = await self._store.claim_firings(limit=FIRING_BATCH, lease=FIRING_LEASE)
            if not firings:
                return started
            done: list[UUID] = []
            for firing in firings:
                try:
                    await self._executions.start(
                        firing.owner_id,
                        firing.workflow_id,
                        firing.input,
                        started_by="event",
                        trigger_id=firing.trigger_id,
                        idempotency_key=firing.idempotency_key,
                    )
                    started += 1
                except (NotFound, Invalid) as refused:  # the workflow went away: nothing to start
                    logger.info("trigger %s fired for nothing: %s", firing.trigger_id, refused.message)
                except Exception:  # left claimed: taken again when the claim runs out
                    logger.exception("could not start the execution trigger %s owes", firing.trigger_id)
                    continue
                done.append(firing.id)
            await self._store.done(done)
            if len(firings) < FIRING_BATCH:
                return started

    # -- schedule triggers -----------------------------------------------------------------------------
    async def resume(self) -> None:
        """At start: be the target of this process's schedule ticks, and when some schedule is
        active, launch DBOS (its scheduler runs the ticks) with its schedules in step with the table."""
        _running.append(self)
        schedules = await self._store.active_schedules()
        if schedules:
            await self.sync_schedules(schedules)
        elif await self._store.any_active_event_trigger():
            await self._executions.engine.ensure_running()

    async def aclose(self) -> None:
        if self in _running:
            _running.remove(self)

    async def sync_schedules(self, active: list[TriggerRecord] | None = None) -> None:
        """Make DBOS's schedules exactly the active schedule triggers of live workflows."""
        if active is None:
            active = await self._store.active_schedules()
        await self._executions.engine.ensure_running()
        wanted = {str(t.id): t for t in active}
        existing = {
            s["schedule_name"]: s for s in await DBOS.list_schedules_async(workflow_name=TICK_WORKFLOW)
        }
        for name in existing.keys() - wanted.keys():
            await DBOS.delete_schedule_async(name)
        for name, trigger in wanted.items():
            found = existing.get(name)
            if found is None or (found["schedule"], found.get("cron_timezone")) != (
                trigger.cron,
                trigger.timezone,
            ):
                await self._schedule(trigger)

    async def _applied(self, record: TriggerRecord) -> None:
        if record.kind == "event":
            self._tell_changed()
            if record.active:  # launched now, not by the first event's execution
                await self._executions.engine.ensure_running()
        elif record.active:
            await self._schedule(record)
        else:
            await self._unschedule(record.id)

    async def _schedule(self, trigger: TriggerRecord) -> None:
        await self._executions.engine.ensure_running()
        name = str(trigger.id)
        await DBOS.delete_schedule_async(name)
        try:
            await DBOS.create_schedule_async(
                schedule_name=name,
                workflow_fn=_tick,
                schedule=str(trigger.cron),
                context={"triggerId": name, "ownerId": str(trigger.owner_id)},
                cron_timezone=trigger.timezone,
            )
        except Exception:
            # Another replica made it between the delete and the create: theirs is the same trigger.
            if await DBOS.get_schedule_async(name) is None:
                raise

    async def _unschedule(self, trigger_id: UUID) -> None:
        await self._executions.engine.ensure_running()
        await DBOS.delete_schedule_async(str(trigger_id))

    async def fire_schedule(self, trigger_id: UUID, scheduled_at: datetime) -> None:
        """A tick (inside its DBOS workflow): start the trigger's execution for this tick, once."""
        trigger = await self._store.firing(trigger_id)
        if trigger is None or trigger.kind != "schedule":
            logger.info("schedule %s has no active trigger or workflow any more: stopping it", trigger_id)
            await DBOS.delete_schedule_async(str(trigger_id))
            return
        try:
            await self._executions.start(
                trigger.owner_id,
                trigger.workflow_id,
                trigger.input or {},
                started_by="schedule",
                trigger_id=trigger.id,
                idempotency_key=f"schedule:{trigger.id}:{scheduled_at.isoformat()}",
            )
        except NotFound:  # deleted between the read and the start
            await DBOS.delete_schedule_async(str(trigger_id))


def _nothing(_event_key: str) -> tuple[TriggerFiring, ...]:
    return ()


def _fields(record: TriggerRecord) -> dict[str, Any]:
    """A stored trigger as the fields create takes (for merging a PATCH)."""
    return {
        "eventKey": record.event_key,
        "endpointId": str(record.endpoint_id) if record.endpoint_id else None,
        "cron": record.cron,
        "timezone": record.timezone,
        "input": record.input,
        "active": record.active,
    }


def _detail(record: TriggerRecord) -> dict[str, str]:
    return {"trigger": str(record.id), "workflow": str(record.workflow_id), "kind": record.kind}
