"""The composition root: builds the core, mounts the two edges (the HTTP sidecar and /mcp) into
one Starlette app, and wires the core's change events to the MCP notifications."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from mcp.server.auth.settings import AuthSettings
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount

from auth.credentials import CredentialVault
from connectors import ActionRunner, Backoff, RetryPolicy, load_catalog
from server.core import Core
from server.core.audit import Audit
from server.core.connections import Connections
from server.core.credentials import Credentials
from server.core.events import ChangeEvents
from server.core.files import FileService
from server.core.gcs_grants import GcsGrants, parse_setting
from server.core.identity import Identity
from server.core.jobs import Jobs
from server.core.keys_at_rest import KeysAtRest
from server.core.links import MCP_PATH, Links
from server.core.metrics import Metrics
from server.core.oauth import OAuthFlow
from server.core.oauth_clients import OAuthClients
from server.core.outgoing import OutgoingWebhooks
from server.core.push import JobPusher, PushSettings
from server.core.rate_limits import LocalWindows, RateLimits, SharedWindows
from server.core.readiness import Readiness
from server.core.throttle import AuthThrottle
from server.core.waiters import ConnectionWaiters
from server.core.webhooks.endpoints import WebhookEndpoints
from server.core.webhooks.ingest import WebhookIngest
from server.core.webhooks.writer import DeliveryWriter
from server.core.workflows.engine import SystemDatabase
from server.core.workflows.executions import Executions, FinishedExecution
from server.core.workflows.service import Workflows
from server.core.workflows.steps import Steps
from server.core.workflows.triggers import Triggers
from server.keys import load_keyring, private_data_dir
from server.mcp.caller import AgentKeyVerifier, CallerResolver, McpGate, caller_from_http
from server.mcp.server import McpServer, build_mcp_server
from server.settings import Settings
from server.web.access import AccessLog
from server.web.api import api_routes, fallback_routes
from server.web.ingress import WebhookIngress
from server.web.openapi import build_document
from server.web.pages import page_routes
from server.web.probes import probe_routes
from storage import db
from storage.audit import AuditStore
from storage.credentials import CredentialStore
from storage.executions import ExecutionStore
from storage.flows import FlowStore
from storage.jobs import JobQueue, WebhookStore
from storage.notices import ChangeNotices
from storage.outgoing import OutgoingStore
from storage.rate_windows import RateWindowStore
from storage.repositories import Store, utcnow
from storage.sealed import SealedValues
from storage.workflow_triggers import TriggerStore
from storage.workflows import WorkflowStore

JOB_RETRY_CAP_SECONDS = 600


def build_core(
    settings: Settings,
    *,
    http_transport: httpx.AsyncBaseTransport | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> Core:
    """Every use case on one database; `clock` is what stored times (expiries, leases) are read off."""
    catalog = load_catalog()
    api_bases = {slug: o.api_base for slug, o in settings.connectors.items() if o.api_base}
    allowed = {
        slug: (o.allowed_hosts or "").split(",") for slug, o in settings.connectors.items() if o.allowed_hosts
    }
    private_data_dir(settings)
    engine = db.create_engine(settings.resolved_database_url)
    job_backoff = Backoff(settings.job_retry_base_seconds, JOB_RETRY_CAP_SECONDS)
    queue = JobQueue(engine, clock, backoff=job_backoff.delay)
    metrics = Metrics(
        census=queue.census, pool_usage=lambda: db.pool_usage(engine), clock=lambda: clock().timestamp()
    )
    runner = ActionRunner(
        allowed_hosts=allowed,
        api_bases=api_bases,
        timeout=settings.action_timeout_seconds,
        retry=RetryPolicy(max_wait=settings.max_retry_wait_seconds),
        http_transport=http_transport,
        on_failure=metrics.provider_failed,
    )
    store, flows, hooks = Store(engine, clock), FlowStore(engine, clock), WebhookStore(engine, clock)
    keyring = load_keyring(settings).keyring
    vault = CredentialVault(keyring)
    links = Links(settings.public_url, settings.webhook_base_url)
    waiters = ConnectionWaiters()
    events = ChangeEvents(ChangeNotices(engine))
    oauth_clients = OAuthClients(settings, links)
    audit = Audit(AuditStore(engine), clock=clock, retention_days=settings.audit_retention_days)
    connections = Connections(
        store=store,
        vault=vault,
        catalog=catalog,
        runner=runner,
        oauth=oauth_clients,
        links=links,
        waiters=waiters,
        metrics=metrics,
        audit=audit,
    )
    throttle = AuthThrottle(
        per_client=settings.auth_failures_per_client, per_key_prefix=settings.auth_failures_per_key_prefix
    )
    identity = Identity(store, flows, catalog, throttle, audit=audit)
    workflows = Workflows(
        store=WorkflowStore(engine, clock), catalog=catalog, connections=connections, audit=audit
    )
    timestamp = lambda: clock().timestamp()  # noqa: E731
    rate_limits = RateLimits(
        SharedWindows(RateWindowStore(engine), timestamp)
        if engine.dialect.name == "postgresql"
        else LocalWindows(),
        api_default=settings.api_rate_limit,
        tool_call_default=settings.agent_tool_call_rate_limit,
        clock=timestamp,
    )
    writer = DeliveryWriter(hooks, events)
    outgoing = OutgoingWebhooks(
        OutgoingStore(engine, clock),
        vault,
        allowed_hosts=settings.push_allowed_hosts,
        poll_seconds=settings.push_poll_seconds,
        clock=clock,
    )
    connections.on_status(outgoing.connection_moved)
    queue.on_dead(outgoing.job_dead)
    executions = Executions(
        store=ExecutionStore(engine, clock),
        steps=Steps(connections=connections, identity=identity, catalog=catalog, runner=runner),
        database=SystemDatabase.of(settings),
        clock=clock,
    )
    triggers = Triggers(
        store=TriggerStore(engine, clock),
        workflows=workflows,
        executions=executions,
        hooks=hooks,
        catalog=catalog,
        audit=audit,
    )
    writer.on_firings(triggers.wake)

    async def announce_end(finished: FinishedExecution) -> None:
        await events.execution_ended(finished.execution_id)

    executions.on_finished(announce_end)  # MCP subscribers of the execution hear it, on any replica
    ingest = WebhookIngest(
        hooks=hooks,
        vault=vault,
        catalog=catalog,
        identity=identity,
        writer=writer,
        max_attempts=settings.job_max_attempts,
        signing_key_urls={"gmail": settings.google_certs_url} if settings.google_certs_url else None,
        metrics=metrics,
        event_triggers=triggers.matcher_for,
    )
    triggers.on_change(ingest.forget_all)
    core = Core(
        settings=settings,
        catalog=catalog,
        links=links,
        identity=identity,
        connections=connections,
        credentials=Credentials(
            store=CredentialStore(engine, clock),
            vault=vault,
            catalog=catalog,
            connections=connections,
            audit=audit,
        ),
        oauth=OAuthFlow(
            catalog=catalog,
            clients=oauth_clients,
            connections=connections,
            flows=flows,
            vault=vault,
            links=links,
            audit=audit,
        ),
        files=FileService(
            settings,
            catalog,
            connections,
            events,
            GcsGrants(store, parse_setting(settings.gcs_grants)),
            vault,
        ),
        jobs=Jobs(queue, catalog, events, lease_seconds=settings.job_lease_seconds),
        push=PushSettings(store, vault),
        workflows=workflows,
        outgoing=outgoing,
        webhooks=WebhookEndpoints(
            hooks=hooks,
            vault=vault,
            catalog=catalog,
            connections=connections,
            identity=identity,
            ingest=ingest,
            links=links,
            allow_insecure_urls=settings.webhook_allow_insecure_urls,
        ),
        ingest=ingest,
        events=events,
        waiters=waiters,
        rate_limits=rate_limits,
        audit=audit,
        metrics=metrics,
        executions=executions,
        triggers=triggers,
        readiness=Readiness(lambda: db.migration_state(engine)),
        keys_at_rest=KeysAtRest(vault, SealedValues(engine)),
        derive_key=keyring.derive,
        _engine=engine,
        _hooks=hooks,
        _runner=runner,
        _writer=writer,
        _pusher=JobPusher(settings, store, vault, queue),
    )
    core.executions.on_finished(outgoing.workflow_finished)  # workflow.completed / workflow.failed
    return core


def build_mcp(core: Core, resolve_caller: CallerResolver) -> McpServer:
    """The MCP server, told of the core's changes (new jobs, re-uploaded files) on every replica."""
    mcp = build_mcp_server(core, resolve_caller)
    core.events.on_jobs(mcp.resources.notify_jobs)
    core.events.on_file(mcp.resources.notify_file)
    core.events.on_execution(mcp.resources.notify_execution)
    return mcp


def _transport_security(settings: Settings) -> TransportSecuritySettings:
    """DNS-rebinding protection: only our own host names, plus loopback for local clients."""
    public = urlsplit(settings.public_url)
    hosts = {"127.0.0.1:*", "localhost:*", "[::1]:*", public.netloc, f"{public.hostname}:*"}
    origins = {
        "http://127.0.0.1:*",
        "http://localhost:*",
        "http://[::1]:*",
        f"{public.scheme}://{public.netloc}",
    }
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=sorted(hosts), allowed_origins=sorted(origins)
    )


def web_routes() -> list[BaseRoute]:
    """The HTTP edge's routes, in matching order (the API's own 404/405 after the real ones)."""
    return [*probe_routes(), *api_routes(), *page_routes(), *fallback_routes()]


def openapi_document(settings: Settings) -> dict[str, Any]:
    """The same document GET /api/v1/openapi serves, without a running server (`tendril openapi`)."""
    return build_document(web_routes(), server_url=settings.public_url)


def build_app(settings: Settings, *, core: Core | None = None) -> Starlette:
    core = core or build_core(settings)
    mcp = build_mcp(core, caller_from_http)
    mcp_http = mcp.server.streamable_http_app(
        streamable_http_path=MCP_PATH,
        transport_security=_transport_security(settings),
        max_request_body_size=settings.max_body_bytes,
        auth=AuthSettings(
            issuer_url=settings.public_url,  # type: ignore[arg-type]
            resource_server_url=core.links.mcp,  # type: ignore[arg-type]
            # Agent keys are minted by this server for this server; the verifier is the audience check.
            validate_token_resource=False,
        ),
        token_verifier=AgentKeyVerifier(core.identity),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        async with core.running(), mcp.server.session_manager.run():
            yield {}

    app = Starlette(
        routes=[*web_routes(), Mount("/", app=McpGate(mcp_http, core.identity))],
        # The provider webhook receiver answers before the router: see server/web/ingress.py.
        middleware=[
            # Outermost: it times the whole answer and logs every request, webhook deliveries too.
            Middleware(
                AccessLog,
                metrics=core.metrics,
                log=settings.access_log,
                log_probes=settings.access_log_probes,
            ),
            Middleware(
                WebhookIngress,
                ingest=core.ingest,
                links=core.links,
                max_body_bytes=settings.webhook_max_body_bytes,
            ),
        ],
        lifespan=lifespan,
    )
    app.state.core = core
    app.state.settings = settings
    return app
