"""The REST API: every route, its permission and its models, in one table."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route, request_response
from starlette.types import Receive, Scope, Send

from server.web import openapi
from server.web.api import (
    actions,
    agents,
    audit,
    catalog,
    connections,
    credentials,
    executions,
    files,
    outgoing_webhooks,
    webhooks,
    workflow_triggers,
    workflows,
)
from server.web.errors import HttpProblem
from server.web.quotas import keyless


def api_routes() -> list[BaseRoute]:
    return [
        Route(openapi.OPENAPI_PATH, openapi.openapi_document, methods=["GET"]),
        Route("/api/v1/connectors", catalog.list_connectors, methods=["GET"]),
        Route("/api/v1/connectors", credentials.create_connector_instance, methods=["POST"]),
        Route("/api/v1/credentials", credentials.create_credential, methods=["POST"]),
        Route("/api/v1/credentials", credentials.list_credentials, methods=["GET"]),
        Route("/api/v1/credentials/{id}", credentials.get_credential, methods=["GET"]),
        Route("/api/v1/credentials/{id}", credentials.update_credential, methods=["PATCH"]),
        Route("/api/v1/credentials/{id}", credentials.delete_credential, methods=["DELETE"]),
        Route("/api/v1/workflows", workflows.list_workflows, methods=["GET"]),
        Route("/api/v1/workflows", workflows.create_workflow, methods=["POST"]),
        Route("/api/v1/workflows/{id}", workflows.get_workflow, methods=["GET"]),
        Route("/api/v1/workflows/{id}", workflows.update_workflow, methods=["PATCH"]),
        Route("/api/v1/workflows/{id}", workflows.delete_workflow, methods=["DELETE"]),
        Route("/api/v1/workflows/{id}/execute", executions.execute_workflow, methods=["POST"]),
        Route("/api/v1/workflows/{id}/triggers", workflow_triggers.list_triggers, methods=["GET"]),
        Route("/api/v1/workflows/{id}/triggers", workflow_triggers.create_trigger, methods=["POST"]),
        Route("/api/v1/workflows/{id}/triggers/{triggerId}", workflow_triggers.get_trigger, methods=["GET"]),
        Route(
            "/api/v1/workflows/{id}/triggers/{triggerId}", workflow_triggers.update_trigger, methods=["PATCH"]
        ),
        Route(
            "/api/v1/workflows/{id}/triggers/{triggerId}",
            workflow_triggers.delete_trigger,
            methods=["DELETE"],
        ),
        Route("/api/v1/executions", executions.list_executions, methods=["GET"]),
        Route("/api/v1/executions/{id}", executions.get_execution, methods=["GET"]),
        Route("/api/v1/executions/{id}", executions.act_on_execution, methods=["POST"]),
        Route("/api/v1/connections", connections.create_connection, methods=["POST"]),
        Route("/api/v1/connections", connections.list_connections, methods=["GET"]),
        Route("/api/v1/connections/{id}", connections.get_connection, methods=["GET"]),
        Route("/api/v1/connections/{id}", connections.delete_connection, methods=["DELETE"]),
        Route("/api/v1/connections/{id}", connections.update_connection, methods=["PATCH"]),
        Route(
            "/api/v1/connectors/{connector}/actions/{action}", actions.run_connector_action, methods=["POST"]
        ),
        Route("/api/v1/connections/{id}/credentials", connections.submit_credentials, methods=["POST"]),
        Route("/api/v1/connections/{id}/oauth", connections.get_oauth_status, methods=["GET"]),
        Route("/api/v1/connections/{id}/oauth", connections.restart_oauth, methods=["POST"]),
        Route(
            "/api/v1/connections/{id}/actions/{action}", connections.run_connection_action, methods=["POST"]
        ),
        Route("/api/v1/connect/{connector}", actions.connect_once, methods=["POST"]),
        Route("/api/v1/agents", agents.create_agent, methods=["POST"]),
        Route("/api/v1/agents", agents.list_agents, methods=["GET"]),
        Route("/api/v1/agents/{id}", agents.get_agent, methods=["GET"]),
        Route("/api/v1/agents/{id}", agents.update_agent, methods=["PATCH"]),
        Route("/api/v1/agents/{id}", agents.delete_agent, methods=["DELETE"]),
        Route("/api/v1/agents/{id}/key", agents.rotate_agent_key, methods=["POST"]),
        Route("/api/v1/keys", agents.create_key, methods=["POST"]),
        Route("/api/v1/keys", agents.list_keys, methods=["GET"]),
        Route("/api/v1/keys/{id}", agents.update_key, methods=["PATCH"]),
        Route("/api/v1/keys/{id}", agents.revoke_key, methods=["DELETE"]),
        Route("/api/v1/connections/{connection_id}/webhooks", webhooks.set_up_webhook, methods=["POST"]),
        Route("/api/v1/webhook-endpoints", webhooks.list_webhook_endpoints, methods=["GET"]),
        Route(
            "/api/v1/webhook-endpoints/{endpoint_id}", webhooks.delete_webhook_endpoint, methods=["DELETE"]
        ),
        Route("/api/v1/jobs", webhooks.list_jobs, methods=["GET"]),
        Route("/api/v1/audit", audit.list_audit_events, methods=["GET"]),
        Route("/api/v1/jobs/{job_id}/retry", webhooks.retry_job, methods=["POST"]),
        Route("/api/v1/agents/{agent_id}/delivery", webhooks.set_agent_delivery, methods=["PUT"]),
        Route("/api/v1/agents/{agent_id}/delivery", webhooks.clear_agent_delivery, methods=["DELETE"]),
        Route("/api/v1/webhooks", outgoing_webhooks.create_webhook, methods=["POST"]),
        Route("/api/v1/webhooks", outgoing_webhooks.list_webhooks, methods=["GET"]),
        Route("/api/v1/webhooks/{id}", outgoing_webhooks.get_webhook, methods=["GET"]),
        Route("/api/v1/webhooks/{id}", outgoing_webhooks.update_webhook, methods=["PATCH"]),
        Route("/api/v1/webhooks/{id}", outgoing_webhooks.delete_webhook, methods=["DELETE"]),
        Route("/api/v1/webhooks/{id}/deliveries", outgoing_webhooks.list_webhook_deliveries, methods=["GET"]),
        Route(
            "/api/v1/webhooks/{id}/deliveries/{delivery_id}/redeliver",
            outgoing_webhooks.redeliver_webhook_delivery,
            methods=["POST"],
        ),
        Route("/connectors", files.list_file_connectors, methods=["GET"]),
        Route("/connectors", files.create_file_connector, methods=["POST"]),
        Route("/connectors/{ref}", files.get_file_connector, methods=["GET"]),
        Route("/connectors/{ref}:upload", files.upload_file_content, methods=["POST"]),
        Route("/connectors/{ref}", files.delete_file_connector, methods=["DELETE"]),
        Route("/connectors/{ref}/content", files.get_file_content, methods=["GET"]),
    ]


async def api_not_found(request: Request) -> Response:
    """JSON for unknown API paths, and 405 with Allow when only the method is wrong."""
    return await keyless(request, lambda: _not_found(request))


async def _not_found(request: Request) -> Response:
    allowed = sorted(
        method
        for route in request.app.router.routes
        if isinstance(route, Route)
        and route.endpoint is not api_not_found
        and route.methods
        and route.matches(request.scope)[0] is Match.PARTIAL
        for method in route.methods
    )
    where = f"{request.method} {request.url.path}"
    if allowed:
        raise HttpProblem(
            405,
            f"{request.method} is not allowed on {request.url.path}; use {', '.join(allowed)}",
            headers={"Allow": ", ".join(allowed)},
        )
    raise HttpProblem(404, f"no API route {where}")


class _EveryMethod:
    """An endpoint Starlette routes for every method: given a plain function, a Route without
    `methods` would take only GET, and a list cannot name methods nobody has thought of."""

    def __init__(self, endpoint: Callable[[Request], Awaitable[Response]]) -> None:
        self._app = request_response(endpoint)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)


def fallback_routes() -> list[BaseRoute]:
    """After every real route: the API's own 404 and 405 under its prefixes, for every method (one
    it does not know must not fall through to /mcp, which would take the owner's key for an agent's)."""
    return [
        Route(prefix, _EveryMethod(api_not_found))
        for prefix in (
            "/api/{path:path}",
            "/connectors",
            "/connectors/{ref}",
            "/connectors/{ref}/{path:path}",
        )
    ]
