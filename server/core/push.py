"""Push delivery: agents with a delivery URL get their jobs POSTed to it, signed like the
Integration Layer's outbound webhooks (`X-Webhook-Signature`: hex HMAC-SHA256 of the body with the
agent's secret; `X-Webhook-Event`; `X-Webhook-Delivery`: the job id; body `{event, timestamp,
data}`). A 2xx completes the job; anything else is a failed attempt, retried with backoff until
the attempt limit, then dead-lettered. Every replica runs a pusher; claims never overlap.

The delivery URL is the owner's choice, so requests go through the same egress guard as the http
connector: no private or metadata addresses unless TENDRIL_PUSH_ALLOWED_HOSTS opens a host.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit
from uuid import UUID

import anyio
import httpx

from auth.credentials import CredentialVault
from connectors import AllowList, BlockedDestination, GuardedTransport
from server.core.errors import Invalid, NotFound
from server.settings import Settings
from storage.jobs import JobQueue, JobRecord
from storage.repositories import Store

logger = logging.getLogger(__name__)
LEASE_SECONDS = 60.0
BATCH = 10


def sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


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
        self.worker = f"push:{socket.gethostname()}:{os.getpid()}"
        self._wake = anyio.Event()
        self._stopping = False
        self._nobody_until = 0.0  # monotonic time before which no agent had a delivery URL
        allow = AllowList.parse((settings.push_allowed_hosts or "").split(","))
        self._transport = GuardedTransport(httpx.AsyncHTTPTransport(), allow=allow)

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        """Finish the round in progress, then return (cancelling a DB call midway can wedge
        aiosqlite's worker thread at shutdown)."""
        self._stopping = True
        self._wake.set()

    async def wake_for(self, _agent_id: UUID) -> None:
        """A webhook listener: a job just arrived (for someone who may want it pushed)."""
        if time.monotonic() >= self._nobody_until:  # else the round would find nobody to push to
            self.wake()

    async def run(self) -> None:
        """Push until cancelled: whenever woken, and every poll interval for retries and leases."""
        async with httpx.AsyncClient(transport=self._transport, timeout=10, follow_redirects=False) as client:
            while not self._stopping:
                try:
                    while not self._stopping and await self.push_once(client):
                        pass
                except Exception:  # keep pushing; the job stays leased and comes back
                    logger.exception("push round failed")
                with anyio.move_on_after(self.settings.push_poll_seconds):
                    await self._wake.wait()
                if not self._stopping:
                    self._wake = anyio.Event()

    async def push_once(self, client: httpx.AsyncClient) -> int:
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
                group.start_soon(self._push, client, job)
        return len(batch)

    async def _push(self, client: httpx.AsyncClient, job: JobRecord) -> None:
        target = await self.store.agent_delivery(job.agent_id)
        if target is None:  # the agent stopped asking for pushes: leave the job for MCP
            await self.jobs.fail(job.id, agent_id=job.agent_id, error="agent has no delivery URL", retry=True)
            return
        url, sealed = target
        secret = self.vault.open(delivery_secret_key(job.agent_id), sealed)["secret"]
        body = json.dumps(
            {
                "event": job.event_key,
                "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "data": {
                    "jobId": str(job.id),
                    "provider": job.provider,
                    "attempt": job.attempts,
                    "payload": job.payload,
                },
            },
            separators=(",", ":"),
        ).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Webhook-Signature": sign(secret, body),
            "X-Webhook-Event": job.event_key,
            "X-Webhook-Delivery": str(job.id),
        }
        try:
            reply = await client.post(url, content=body, headers=headers)
        except BlockedDestination as exc:
            await self.jobs.fail(job.id, agent_id=job.agent_id, error=str(exc), retry=False)
            return
        except httpx.HTTPError as exc:
            await self.jobs.fail(
                job.id, agent_id=job.agent_id, error=f"could not reach {url}: {exc!r}", retry=True
            )
            return
        if 200 <= reply.status_code < 300:
            await self.jobs.complete(job.id, agent_id=job.agent_id, result={"pushed": reply.status_code})
        else:
            await self.jobs.fail(
                job.id, agent_id=job.agent_id, error=f"{url} answered {reply.status_code}", retry=True
            )
