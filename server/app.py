"""The composition root: builds the hub, the REST sidecar and /mcp into one Starlette app."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx
from mcp.server.auth.settings import AuthSettings
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Mount, Route

from auth.credentials import CredentialVault
from connectors import ActionRunner, RetryPolicy, load_catalog
from server.errors import ApiError, error_response
from server.hub import Hub
from server.keys import load_keyring
from server.mcp_app import AgentKeyVerifier, build_mcp_server, caller_from_http
from server.push import JobPusher
from server.settings import Settings
from server.web import pages
from server.web.admin import admin_routes
from server.web.files_api import files_routes
from server.web.routes import api_routes
from server.web.webhook_ingress import WebhookIngress
from server.web.webhooks_api import webhook_routes
from storage import db
from storage.flows import FlowStore
from storage.repositories import Store

# At shutdown the job pusher and the delivery writer finish their current round; past this, cancelled.
BACKGROUND_STOP_SECONDS = 10


def build_hub(settings: Settings, *, http_transport: httpx.AsyncBaseTransport | None = None) -> Hub:
    catalog = load_catalog()
    api_bases = {slug: o.api_base for slug, o in settings.connectors.items() if o.api_base}
    allowed = {
        slug: (o.allowed_hosts or "").split(",") for slug, o in settings.connectors.items() if o.allowed_hosts
    }
    runner = ActionRunner(
        allowed_hosts=allowed,
        api_bases=api_bases,
        timeout=settings.action_timeout_seconds,
        retry=RetryPolicy(max_wait=settings.max_retry_wait_seconds),
        http_transport=http_transport,
    )
    engine = db.create_engine(settings.resolved_database_url)
    vault = CredentialVault(load_keyring(settings).keyring)
    return Hub(
        settings=settings,
        store=Store(engine),
        flows=FlowStore(engine),
        vault=vault,
        catalog=catalog,
        runner=runner,
    )


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


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def api_not_found(request: Request) -> Response:
    """JSON for unknown API paths, and 405 with Allow when only the method is wrong."""
    allowed = sorted(
        method
        for route in request.app.router.routes
        if isinstance(route, Route)
        and route.endpoint is not api_not_found
        and route.methods
        and route.matches(request.scope)[0] is Match.PARTIAL
        for method in route.methods
    )
    if allowed:
        return error_response(
            ApiError(
                405,
                f"{request.method} is not allowed on {request.url.path}; use {', '.join(allowed)}",
                headers={"Allow": ", ".join(allowed)},
            )
        )
    return error_response(ApiError(404, f"no API route {request.method} {request.url.path}"))


def build_app(settings: Settings, *, hub: Hub | None = None) -> Starlette:
    hub = hub or build_hub(settings)
    mcp_server = build_mcp_server(hub, caller_from_http)
    mcp_http = mcp_server.streamable_http_app(
        streamable_http_path="/mcp",
        transport_security=_transport_security(settings),
        max_request_body_size=settings.max_body_bytes,
        auth=AuthSettings(
            issuer_url=settings.public_url,  # type: ignore[arg-type]
            resource_server_url=f"{settings.public_url}/mcp",  # type: ignore[arg-type]
            # Agent keys are minted by this server for this server; the verifier is the audience check.
            validate_token_resource=False,
        ),
        token_verifier=AgentKeyVerifier(hub),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        try:
            await db.upgrade(hub.store.engine)
            await hub.check_master_key()
            pusher = JobPusher(settings, hub.store, hub.vault, hub.webhooks.jobs)
            hub.webhooks.listeners.append(pusher.wake_for)
            async with mcp_server.session_manager.run(), anyio.create_task_group() as background:
                background.start_soon(pusher.run)
                background.start_soon(hub.webhooks.run_writer)
                background.start_soon(hub.notices.listen)
                yield {}
                # Ask the loops to finish their current round; cancel only those that overstay.
                pusher.stop()
                hub.webhooks.stop_writer()
                hub.notices.stop()
                background.cancel_scope.deadline = anyio.current_time() + BACKGROUND_STOP_SECONDS
        finally:
            hub.webhooks.hooks.close()
            await hub.runner.aclose()
            await hub.store.engine.dispose()

    app = Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            *api_routes(),
            *webhook_routes(),
            *files_routes(),
            *pages.page_routes(),
            *admin_routes(),
            *(
                Route(prefix, api_not_found, methods=["GET", "POST", "PATCH", "PUT", "DELETE", "OPTIONS"])
                for prefix in ("/api/{path:path}", "/connectors/{ref}/{path:path}")
            ),
            Mount("/", app=mcp_http),
        ],
        # The provider webhook receiver answers before the router: see server/web/webhook_ingress.
        middleware=[Middleware(WebhookIngress, service=hub.webhooks)],
        lifespan=lifespan,
    )
    app.state.hub = hub
    app.state.settings = settings
    return app
