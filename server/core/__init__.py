"""Tendril's use cases, shared by both edges (server/web for HTTP, server/mcp for MCP) and the CLI.

Nothing here knows HTTP or MCP: use cases take typed values, return records, and refuse with the
domain errors of `server.core.errors`. `Core` holds them together with the background work they
need (the delivery writer, the job pusher, change notices between replicas); `server/app.py`
builds it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
from sqlalchemy.ext.asyncio import AsyncEngine

from connectors import ActionRunner, Catalog
from server.core.audit import Audit
from server.core.connections import Connections
from server.core.credentials import Credentials
from server.core.events import ChangeEvents
from server.core.files import FileService
from server.core.identity import Identity
from server.core.jobs import Jobs
from server.core.keys_at_rest import KeysAtRest
from server.core.links import Links
from server.core.metrics import Metrics
from server.core.oauth import OAuthFlow
from server.core.outgoing import OutgoingWebhooks
from server.core.push import JobPusher, PushSettings
from server.core.rate_limits import RateLimits
from server.core.readiness import Readiness
from server.core.waiters import ConnectionWaiters
from server.core.webhooks.endpoints import WebhookEndpoints
from server.core.webhooks.ingest import WebhookIngest
from server.core.webhooks.writer import DeliveryWriter
from server.core.workflows.executions import Executions
from server.core.workflows.service import Workflows
from server.core.workflows.triggers import Triggers
from server.settings import Settings
from storage import db
from storage.jobs import WebhookStore

# At shutdown the job pusher and the delivery writer finish their current round; past this, cancelled.
BACKGROUND_STOP_SECONDS = 10


@dataclass
class Core:
    settings: Settings
    catalog: Catalog
    links: Links
    identity: Identity
    connections: Connections
    credentials: Credentials
    oauth: OAuthFlow
    files: FileService
    jobs: Jobs
    push: PushSettings
    workflows: Workflows  # the owner's workflow definitions: CRUD, and which an agent may run
    outgoing: OutgoingWebhooks  # outgoing webhooks: managed over REST, announced by the use cases
    webhooks: WebhookEndpoints
    ingest: WebhookIngest
    events: ChangeEvents
    waiters: ConnectionWaiters
    rate_limits: RateLimits
    audit: Audit  # the audit trail: recorded by the use cases, read by GET /api/v1/audit
    metrics: Metrics  # what /metrics shows: counted by the use cases and the edges
    readiness: Readiness  # what /readyz answers
    # Workflow executions on the durable engine (DBOS): started, read, cancelled; on_finished hooks.
    executions: Executions
    # What starts workflows besides a request: provider events and schedules (DBOS's scheduler).
    triggers: Triggers
    keys_at_rest: KeysAtRest  # the master key: checked at start, rotated by `tendril crypto rotate`
    # Keys derived from the master key for other purposes (sealing MCP request state).
    derive_key: Callable[[bytes], bytes]
    # Machinery the use cases run on, started and stopped by `running()`.
    _engine: AsyncEngine
    _hooks: WebhookStore
    _runner: ActionRunner
    _writer: DeliveryWriter
    _pusher: JobPusher

    async def prepare(self) -> None:
        """Bring the database schema up to date and check the master key opens what is stored."""
        await db.upgrade(self._engine)
        await self.keys_at_rest.check()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Core]:
        """Prepared, with the delivery writer, the job pusher and the change-notice listener at
        work; at exit they finish their current round and everything is closed."""
        try:
            await self.prepare()
            await self.executions.resume()  # DBOS recovers unfinished executions at its launch
            await self.triggers.resume()  # active schedules launch DBOS, in step with the table
            self.events.on_jobs(self._pusher.wake_for)
            async with anyio.create_task_group() as background:
                background.start_soon(self._pusher.run)
                background.start_soon(self.outgoing.run)
                background.start_soon(self._writer.run)
                background.start_soon(self.events.run)
                background.start_soon(self.rate_limits.run, self.settings.rate_limit_sync_seconds)
                background.start_soon(self.audit.run)
                background.start_soon(self.triggers.run)
                yield self
                # Ask the loops to finish their current round; cancel only those that overstay.
                self._pusher.stop()
                self.outgoing.stop()
                self._writer.stop()
                self.events.stop()
                self.rate_limits.stop()
                self.audit.stop()
                self.triggers.stop()
                background.cancel_scope.deadline = anyio.current_time() + BACKGROUND_STOP_SECONDS
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        await self.triggers.aclose()
        await self.executions.aclose()  # executions in flight stay unfinished, resumed at next start
        await self.audit.flush()  # what was recorded without the loop (the CLI), or after it stopped
        self._hooks.close()
        await self._runner.aclose()
        await self._engine.dispose()
