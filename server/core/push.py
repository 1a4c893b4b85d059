"""Push delivery: agents with a delivery URL get their jobs POSTed to it, signed like the
Integration Layer's outbound webhooks (`X-Webhook-Signature`: hex HMAC-SHA256 of the body with the
agent's secret; `X-Webhook-Event`; `X-Webhook-Delivery`: the job id; body `{event, timestamp,
data}`). A 2xx completes the job; anything else is a failed attempt, retried with the job queue's
backoff until the attempt limit, then dead-lettered. Every replica runs a pusher; claims never overlap.

Signing, the egress guard (no private or metadata addresses unless TENDRIL_PUSH_ALLOWED_HOSTS opens
a host), the timeout and the loop are the outbound delivery mechanism's (server/core/outbound.py),
shared with outgoing webhooks.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit
from uuid import UUID

import anyio

from auth.credentials import CredentialVault
from server.core import outbound
from server.core.errors import Invalid, NotFound
from server.settings import Settings
from storage.jobs import JobQueue, JobRecord
from storage.repositories import Store

LEASE_SECONDS = 60.0
BATCH = 10
sign = outbound.sign  # kept for callers that sign like a push


def delivery_secret_key(agent_id: UUID) -> UUID:
    """Sealed delivery secrets are bound to their agent (associated data)."""
    return agent_id


@dataclass(frozen=True, slots=True)
class Delivery:
    url: str | None
    generated_secret: str | None  # shown once, when Tendril made the secret


class PushSettings:
    """Where an agent wants its jobs pushed (instead of claiming them over MCP)."""

    def __init__(self, store: Store, vault: CredentialVault) -> None:
        self._store = store
        self._vault = vault

    async def set(self, owner_id: UUID, agent_id: UUID, *, url: str, secret: str | None) -> Delivery:
        """Push to `url`, signed with `secret` (generated when not given)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise Invalid("url must be an absolute http(s) URL", field="url")
        if secret is not None and len(secret) < 16:
            raise Invalid("secret must be a string of at least 16 characters", field="secret")
        chosen = secret or secrets.token_urlsafe(32)
        sealed = self._vault.seal(delivery_secret_key(agent_id), {"secret": chosen})
        if not await self._store.set_agent_delivery(owner_id, agent_id, url=url, sealed_secret=sealed):
            raise NotFound("agent not found")
        return Delivery(url, chosen if secret is None else None)

    async def clear(self, owner_id: UUID, agent_id: UUID) -> Delivery:
        """Back to pulling over MCP."""
        if not await self._store.set_agent_delivery(owner_id, agent_id, url=None, sealed_secret=None):
            raise NotFound("agent not found")
        return Delivery(None, None)


class JobPusher:
    def __init__(self, settings: Settings, store: Store, vault: CredentialVault, jobs: JobQueue) -> None:
        self.settings = settings
        self.store = store
        self.vault = vault
        self.jobs = jobs
        self.worker = outbound.worker_name("push")
        self._nobody_until = 0.0  # monotonic time before which no agent had a delivery URL
        self._sender = outbound.Sender(settings.push_allowed_hosts)
        self._loop = outbound.DeliveryLoop("push", self.push_once, poll_seconds=settings.push_poll_seconds)

    def wake(self) -> None:
        self._loop.wake()

    def stop(self) -> None:
        """Finish the round in progress, then return."""
        self._loop.stop()

    async def wake_for(self, _agent_id: UUID) -> None:
        """A webhook listener: a job just arrived (for someone who may want it pushed)."""
        if time.monotonic() >= self._nobody_until:  # else the round would find nobody to push to
            self.wake()

    async def run(self) -> None:
        """Push until stopped: whenever woken, and every poll interval for retries and leases."""
        async with self._sender:
            await self._loop.run()

    async def push_once(self) -> int:
        # Nobody wants pushes: no claim (a write) per new job, and only one look per poll interval,
        # so a burst of deliveries does not turn into a burst of queries.
        if time.monotonic() < self._nobody_until:
            return 0
        if not await self.store.any_agent_delivery():
            self._nobody_until = time.monotonic() + self.settings.push_poll_seconds
            return 0
        batch = await self.jobs.claim(
            worker=self.worker, lease_seconds=LEASE_SECONDS, limit=BATCH, push_only=True
        )
        async with anyio.create_task_group() as group:
            for job in batch:
                group.start_soon(self._push, job)
        return len(batch)

    async def _push(self, job: JobRecord) -> None:
        target = await self.store.agent_delivery(job.agent_id)
        if target is None:  # the agent stopped asking for pushes: leave the job for MCP
            await self.jobs.fail(job.id, agent_id=job.agent_id, error="agent has no delivery URL", retry=True)
            return
        url, sealed = target
        secret = self.vault.open(delivery_secret_key(job.agent_id), sealed)["secret"]
        data = {
            "jobId": str(job.id),
            "provider": job.provider,
            "attempt": job.attempts,
            "payload": job.payload,
        }
        body = outbound.envelope(job.event_key, data, datetime.now(UTC))
        headers = outbound.signed_headers(secret, body, event=job.event_key, delivery_id=str(job.id))
        outcome = await self._sender.post(url, body, headers)
        if outcome.delivered:
            await self.jobs.complete(job.id, agent_id=job.agent_id, result={"pushed": outcome.status_code})
        else:  # every answer but a 2xx is retried (an agent's receiver may be deploying); a blocked URL never
            await self.jobs.fail(
                job.id,
                agent_id=job.agent_id,
                error=outcome.error or "not delivered",
                retry=not outcome.blocked,
            )
