"""Outgoing webhooks: the owner's URLs told about events (`workflow.completed`, `workflow.failed`,
`connection.*`, `job.dead`), as the Integration Layer documents them.

Each event sent to each webhook is one durable delivery (storage/outgoing.py): the body
`{event, timestamp, data}` is written once and sent as is, signed with the webhook's secret
(generated here, shown once, sealed at rest like the custom headers, which may carry the receiver's
own credentials). Sending is the outbound delivery mechanism's (server/core/outbound.py), shared with
the job pusher: the same egress guard, timeout, signing and loop. An attempt that fails with a 5xx,
408, 425, 429, a timeout or a connection error is retried after `backoffMs`, doubled per retry (at
most an hour), until `maxAttempts`; another 4xx, or a URL the egress guard refuses, ends it at once.
Either way it is then `dead`, and can be sent again with redeliver.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol
from urllib.parse import urlsplit
from uuid import UUID, uuid4

import anyio

from auth.credentials import CredentialVault
from connectors import AllowList, BlockedDestination, vetted_addresses
from server.core import outbound
from server.core.errors import Invalid, NotFound, did_you_mean
from server.core.paging import cursor_of, id_after
from storage.jobs import JobRecord
from storage.outgoing import (
    DeliveryStatus,
    NewOutgoingDelivery,
    OutgoingDeliveryRecord,
    OutgoingStore,
    OutgoingWebhookRecord,
)
from storage.repositories import ConnectionRecord, utcnow

logger = logging.getLogger(__name__)

WORKFLOW_EVENTS = ("workflow.completed", "workflow.failed")
CONNECTION_EVENTS = (
    "connection.active",
    "connection.pending",
    "connection.needs_reauth",
    "connection.revoked",
)
EVENTS = (*WORKFLOW_EVENTS, *CONNECTION_EVENTS, "job.dead")
# A subscription may also name a family: every event before the dot.
FAMILIES = {"connection.*": CONNECTION_EVENTS, "workflow.*": WORKFLOW_EVENTS}

NAME_MAX, URL_MAX, EVENTS_MAX = 200, 2000, 20
HEADERS_MAX, HEADER_NAME_MAX, HEADER_VALUE_MAX, HEADERS_BYTES_MAX = 20, 100, 1000, 8192
ATTEMPTS_MAX, BACKOFF_MS_MAX = 20, 3_600_000
DEFAULT_ATTEMPTS, DEFAULT_BACKOFF_MS = 3, 1000
BACKOFF_CAP_SECONDS = 3600.0
PAGE_DEFAULT, PAGE_MAX = 20, 100
LEASE_SECONDS = 60.0  # well past the request timeout: a lease runs out only when its sender died
BATCH = 10
RESOLVE_SECONDS = 5.0
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 field-name
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = DEFAULT_ATTEMPTS
    backoff_ms: int = DEFAULT_BACKOFF_MS


@dataclass(frozen=True, slots=True)
class OutgoingWebhook:
    """A webhook as its owner sees it: custom header names, never their values; never the secret."""

    record: OutgoingWebhookRecord
    header_names: list[str]

    @property
    def retry(self) -> RetryPolicy:
        return RetryPolicy(self.record.max_attempts, self.record.backoff_ms)


@dataclass(frozen=True, slots=True)
class CreatedWebhook:
    webhook: OutgoingWebhook
    secret: str  # shown once


@dataclass(frozen=True, slots=True)
class DeliveryPage:
    deliveries: list[OutgoingDeliveryRecord]
    next_cursor: str | None


class FinishedWorkflow(Protocol):
    """What the executions use case tells its on_finished listeners (server/core/workflows)."""

    @property
    def owner_id(self) -> UUID: ...
    @property
    def workflow_id(self) -> UUID: ...
    @property
    def execution_id(self) -> UUID: ...
    @property
    def status(self) -> str: ...
    @property
    def output(self) -> Any: ...
    @property
    def error(self) -> Any: ...


class _Keep:
    """A PATCH field left out."""


KEEP: Any = _Keep()


def _clean_name(name: str) -> str:
    if not name.strip() or len(name) > NAME_MAX or _CONTROL.search(name):
        raise Invalid(f"name must be 1-{NAME_MAX} characters without control characters", field="name")
    return name.strip()


def _clean_events(events: Sequence[str]) -> list[str]:
    if not events:
        raise Invalid("events must name at least one event: " + ", ".join(EVENTS), field="events")
    if len(events) > EVENTS_MAX:
        raise Invalid(f"events may name at most {EVENTS_MAX} events", field="events")
    known = (*EVENTS, *FAMILIES)
    unknown = [event for event in events if event not in known]
    if unknown:
        named = ", ".join(f"{event!r}{did_you_mean(event, known)}" for event in unknown)
        raise Invalid(f"unknown event {named}; choose from: {', '.join(known)}", field="events")
    return list(dict.fromkeys(events))


def _clean_headers(headers: Mapping[str, str]) -> dict[str, str]:
    if len(headers) > HEADERS_MAX:
        raise Invalid(f"headers may hold at most {HEADERS_MAX} headers", field="headers")
    size = 0
    for name, value in headers.items():
        if not _TOKEN.match(name) or len(name) > HEADER_NAME_MAX:
            raise Invalid(f"header name {name[:40]!r} is not a valid HTTP header name", field="headers")
        if name.lower() in outbound.RESERVED_HEADERS:
            raise Invalid(f"header {name} is set by Tendril itself", field="headers")
        if len(value) > HEADER_VALUE_MAX or _CONTROL.search(value.replace("\t", "")):
            # The value itself is never repeated: it may be a credential.
            raise Invalid(
                f"header {name}: the value must be at most {HEADER_VALUE_MAX} characters on one line",
                field="headers",
            )
        size += len(name) + len(value)
    if size > HEADERS_BYTES_MAX:
        raise Invalid(f"headers may hold at most {HEADERS_BYTES_MAX} characters in all", field="headers")
    return dict(headers)


def _clean_retry(policy: RetryPolicy) -> RetryPolicy:
    if not 1 <= policy.max_attempts <= ATTEMPTS_MAX:
        raise Invalid(f"retryPolicy.maxAttempts must be from 1 to {ATTEMPTS_MAX}", field="retryPolicy")
    if not 0 <= policy.backoff_ms <= BACKOFF_MS_MAX:
        raise Invalid(f"retryPolicy.backoffMs must be from 0 to {BACKOFF_MS_MAX}", field="retryPolicy")
    return policy


def _delivery_key(dedupe_key: str, webhook_id: UUID) -> str:
    """Unique per event and webhook, within the column's 255 characters."""
    key = f"{dedupe_key}:{webhook_id}"
    return key if len(key) <= 255 else "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def matches(subscribed: Sequence[str], event: str) -> bool:
    return event in subscribed or any(event in FAMILIES.get(item, ()) for item in subscribed)


class OutgoingWebhooks:
    def __init__(
        self,
        store: OutgoingStore,
        vault: CredentialVault,
        *,
        allowed_hosts: str | None,
        poll_seconds: float,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._store = store
        self._vault = vault
        self._clock = clock
        self._allow = AllowList.parse((allowed_hosts or "").split(","))
        self._sender = outbound.Sender(allowed_hosts)
        self._loop = outbound.DeliveryLoop("outgoing webhooks", self.deliver_once, poll_seconds=poll_seconds)
        self._poll = poll_seconds
        self._nobody_until = 0.0  # monotonic time before which no owner had a webhook

    # -- owners ------------------------------------------------------------------------------------
    async def create(
        self,
        owner_id: UUID,
        *,
        name: str,
        url: str,
        events: Sequence[str],
        headers: Mapping[str, str] | None = None,
        retry: RetryPolicy | None = None,
    ) -> CreatedWebhook:
        """A webhook with a new signing secret, shown only in this answer."""
        webhook_id = uuid4()
        policy = _clean_retry(retry or RetryPolicy())
        secret = "whsec_" + secrets.token_urlsafe(32)
        values: dict[str, Any] = {
            "id": webhook_id,
            "owner_id": owner_id,
            "name": _clean_name(name),
            "url": await self._check_url(url),
            "events": _clean_events(events),
            "sealed_secret": self._vault.seal(webhook_id, {"secret": secret}, kind="outgoing_webhook"),
            "sealed_headers": self._seal_headers(webhook_id, headers),
            "max_attempts": policy.max_attempts,
            "backoff_ms": policy.backoff_ms,
        }
        record = await self._store.create(values)
        self._nobody_until = 0.0
        return CreatedWebhook(self._view(record), secret)

    async def list(self, owner_id: UUID) -> list[OutgoingWebhook]:
        return [self._view(record) for record in await self._store.list(owner_id)]

    async def get(self, owner_id: UUID, webhook_id: UUID) -> OutgoingWebhook:
        return self._view(await self._record(owner_id, webhook_id))

    async def update(
        self,
        owner_id: UUID,
        webhook_id: UUID,
        *,
        name: Any = KEEP,
        url: Any = KEEP,
        events: Any = KEEP,
        headers: Any = KEEP,
        retry: Any = KEEP,
        active: Any = KEEP,
    ) -> OutgoingWebhook:
        """Change what is given; `headers` replaces the whole set (None or {} clears it)."""
        current = await self._record(owner_id, webhook_id)
        values: dict[str, Any] = {}
        if name is not KEEP:
            values["name"] = _clean_name(name)
        if url is not KEEP:
            values["url"] = await self._check_url(url)
        if events is not KEEP:
            values["events"] = _clean_events(events)
        if headers is not KEEP:
            values["sealed_headers"] = self._seal_headers(current.id, headers)
        if retry is not KEEP:
            policy = _clean_retry(retry)
            values.update(max_attempts=policy.max_attempts, backoff_ms=policy.backoff_ms)
        if active is not KEEP:
            values["active"] = bool(active)
        updated = await self._store.update(owner_id, webhook_id, values) if values else current
        if updated is None:
            raise NotFound("webhook not found")
        if values.get("active"):
            self.wake()  # what waited while it was paused
        return self._view(updated)

    async def delete(self, owner_id: UUID, webhook_id: UUID) -> None:
        if not await self._store.delete(owner_id, webhook_id):
            raise NotFound("webhook not found")

    async def deliveries(
        self,
        owner_id: UUID,
        webhook_id: UUID,
        *,
        status: str | None = None,
        limit: int = PAGE_DEFAULT,
        cursor: str | None = None,
    ) -> DeliveryPage:
        """A page of the webhook's deliveries, newest first."""
        await self._record(owner_id, webhook_id)
        if status is not None and status not in DeliveryStatus.ALL:
            raise Invalid(f"status must be one of {', '.join(DeliveryStatus.ALL)}", field="status")
        if not 1 <= limit <= PAGE_MAX:
            raise Invalid(f"limit must be from 1 to {PAGE_MAX}", field="limit")
        found = await self._store.deliveries(
            owner_id,
            webhook_id,
            limit=limit + 1,
            before=id_after(cursor) if cursor else None,
            status=status,
        )
        shown = found[:limit]
        return DeliveryPage(shown, cursor_of(shown[-1].id) if len(found) > limit else None)

    async def redeliver(self, owner_id: UUID, webhook_id: UUID, delivery_id: UUID) -> OutgoingDeliveryRecord:
        """The same body again, as a new delivery (its own id and attempts), due now."""
        await self._record(owner_id, webhook_id)
        original = await self._store.delivery(owner_id, webhook_id, delivery_id)
        if original is None:
            raise NotFound("delivery not found")
        [new_id] = await self._store.add_deliveries(
            [NewOutgoingDelivery(webhook_id, owner_id, original.event, original.body, None)]
        )
        self.wake()
        made = await self._store.delivery(owner_id, webhook_id, new_id)
        assert made is not None
        return made

    # -- producers -----------------------------------------------------------------------------------
    async def announce(self, owner_id: UUID, event: str, data: Any, *, dedupe_key: str) -> int:
        """Queue `event` for each of the owner's active webhooks that asked for it; announcing the
        same `dedupe_key` again adds nothing. How many deliveries were added."""
        if event not in EVENTS:
            raise ValueError(f"unknown outgoing event {event!r}")
        hooks = [hook for hook in await self._store.subscribed(owner_id) if matches(hook.events, event)]
        if not hooks:
            return 0
        body = outbound.envelope(event, data, self._clock()).decode()
        added = await self._store.add_deliveries(
            [
                NewOutgoingDelivery(hook.id, owner_id, event, body, _delivery_key(dedupe_key, hook.id))
                for hook in hooks
            ]
        )
        if added:
            self.wake()
        return len(added)

    async def workflow_finished(self, finished: FinishedWorkflow) -> None:
        """An on_finished listener: workflow.completed or workflow.failed, once per execution."""
        event = "workflow.completed" if finished.status == "completed" else "workflow.failed"
        data: dict[str, Any] = {
            "workflowId": str(finished.workflow_id),
            "executionId": str(finished.execution_id),
            "status": finished.status,
            "output": finished.output,
        }
        if finished.error is not None:
            data["error"] = finished.error
        await self.announce(finished.owner_id, event, data, dedupe_key=f"{event}:{finished.execution_id}")

    async def connection_moved(self, connection: ConnectionRecord, previous: str) -> None:
        """A Connections status listener: connection.<status>, once per move."""
        event = f"connection.{connection.status}"
        data = {
            "connectionId": str(connection.id),
            "connector": connection.connector_slug,
            "label": connection.label,
            "status": str(connection.status),
            "previousStatus": str(previous),
        }
        key = f"{event}:{connection.id}:{connection.updated_at.isoformat()}"
        await self._announce_quietly(connection.owner_id, event, data, dedupe_key=key)

    async def job_dead(self, job: JobRecord) -> None:
        """A job queue listener: job.dead, once per death (a retried job can die again)."""
        data = {
            "jobId": str(job.id),
            "agentId": str(job.agent_id),
            "provider": job.provider,
            "eventKey": job.event_key,
            "attempts": job.attempts,
            "lastError": job.last_error,
        }
        key = f"job.dead:{job.id}:{job.attempts}"
        await self._announce_quietly(job.owner_id, "job.dead", data, dedupe_key=key)

    async def _announce_quietly(self, owner_id: UUID, event: str, data: Any, *, dedupe_key: str) -> None:
        """For listeners whose own work (a status move, a job's end) must go on whatever happens here."""
        try:
            await self.announce(owner_id, event, data, dedupe_key=dedupe_key)
        except Exception:
            logger.exception("could not queue outgoing %s event", event)

    # -- delivering ----------------------------------------------------------------------------------
    def wake(self) -> None:
        self._nobody_until = 0.0
        self._loop.wake()

    def stop(self) -> None:
        self._loop.stop()

    async def run(self) -> None:
        async with self._sender:
            await self._loop.run()

    async def deliver_once(self) -> int:
        """One round: claim what is due, send it all concurrently; how many were claimed."""
        if time.monotonic() < self._nobody_until:
            return 0
        if not await self._store.any_owner_hooks():  # one cheap look per poll while nobody has any
            self._nobody_until = time.monotonic() + self._poll
            return 0
        batch = await self._store.claim(lease_seconds=LEASE_SECONDS, limit=BATCH)
        async with anyio.create_task_group() as group:
            for delivery, hook in batch:
                group.start_soon(self._deliver, delivery, hook)
        return len(batch)

    async def _deliver(self, delivery: OutgoingDeliveryRecord, hook: OutgoingWebhookRecord) -> None:
        secret = self._vault.open(hook.id, hook.sealed_secret, kind="outgoing_webhook")["secret"]
        extra = (
            self._vault.open(hook.id, hook.sealed_headers, kind="outgoing_headers")
            if hook.sealed_headers
            else {}
        )
        body = delivery.body.encode()
        headers = outbound.signed_headers(
            secret, body, event=delivery.event, delivery_id=str(delivery.id), extra=extra
        )
        outcome = await self._sender.post(hook.url, body, headers)
        if outcome.delivered:
            status, after = DeliveryStatus.DELIVERED, None
        elif outcome.final or delivery.attempts >= hook.max_attempts:
            status, after = DeliveryStatus.DEAD, None
        else:
            wait = outbound.Backoff(hook.backoff_ms / 1000, BACKOFF_CAP_SECONDS).delay(delivery.attempts)
            status, after = DeliveryStatus.FAILED, self._clock() + timedelta(seconds=wait)
        await self._store.finish(
            delivery.id,
            attempt=delivery.attempts,
            status=status,
            status_code=outcome.status_code,
            error=outcome.error,
            next_attempt_at=after,
        )

    # -- helpers -------------------------------------------------------------------------------------
    async def _record(self, owner_id: UUID, webhook_id: UUID) -> OutgoingWebhookRecord:
        record = await self._store.get(owner_id, webhook_id)
        if record is None:
            raise NotFound("webhook not found")
        return record

    def _view(self, record: OutgoingWebhookRecord) -> OutgoingWebhook:
        names: list[str] = []
        if record.sealed_headers:
            names = list(self._vault.open(record.id, record.sealed_headers, kind="outgoing_headers"))
        return OutgoingWebhook(record, names)

    def _seal_headers(self, webhook_id: UUID, headers: Mapping[str, str] | None) -> str | None:
        cleaned = _clean_headers(headers or {})
        return self._vault.seal(webhook_id, cleaned, kind="outgoing_headers") if cleaned else None

    async def _check_url(self, url: str) -> str:
        """An absolute http(s) URL without credentials in it, to an address the egress guard lets
        through (checked again at every attempt: DNS may change)."""
        if len(url) > URL_MAX:
            raise Invalid(f"url must be at most {URL_MAX} characters", field="url")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise Invalid("url must be an absolute http(s) URL", field="url")
        if parts.username or parts.password:
            raise Invalid(
                "url must not hold credentials: put them in headers, which are kept sealed", field="url"
            )
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise Invalid("url has an invalid port", field="url") from None
        try:
            with anyio.fail_after(RESOLVE_SECONDS):
                await vetted_addresses(parts.hostname, port, allow=self._allow)
        except BlockedDestination as exc:
            raise Invalid(f"url: {exc}", field="url") from None
        except (OSError, TimeoutError):
            pass  # not resolvable now: every attempt checks again, and fails (retried) until it is
        return url
