"""The pages people open in a browser: sign-in, the dashboard (connections, agents with their MCP
host configs, API keys, workflows and their executions), connect, the OAuth start and callback,
the connector-events admin view, and the API docs (Swagger UI). Server-rendered Jinja2 templates,
a few lines of script, no build step. Every page that touches a connection, an agent, a key or a
workflow requires a signed-in owner."""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from server.core.links import CONNECT_PAGE_PATH, OAUTH_CALLBACK_PATH, OAUTH_START_PATH
from server.web.pages import admin, agents, audit, connect, dashboard, docs, executions, home, keys, signin


def page_routes() -> list[BaseRoute]:
    return [
        Route(home.PATH, home.home, methods=["GET"]),
        Route("/signin", signin.signin, methods=["GET", "POST"]),
        Route("/signout", signin.signout, methods=["POST"]),
        Route("/dashboard", dashboard.dashboard, methods=["GET"]),
        Route("/dashboard/connections.json", dashboard.dashboard_connections, methods=["GET"]),
        Route("/dashboard/connections", dashboard.dashboard_add, methods=["POST"]),
        Route("/dashboard/connections/{id}/revoke", dashboard.dashboard_revoke, methods=["POST"]),
        Route(agents.PATH, agents.agents_page, methods=["GET"]),
        Route(agents.PATH, agents.create_agent, methods=["POST"]),
        Route(agents.PATH + "/{agent_id}", agents.agent_page, methods=["GET"]),
        Route(agents.PATH + "/{agent_id}", agents.update_agent, methods=["POST"]),
        Route(agents.PATH + "/{agent_id}/key", agents.new_key_page, methods=["GET"]),
        Route(agents.PATH + "/{agent_id}/key", agents.rotate_agent_key, methods=["POST"]),
        Route(agents.PATH + "/{agent_id}/delete", agents.confirm_delete_agent, methods=["GET"]),
        Route(agents.PATH + "/{agent_id}/delete", agents.delete_agent, methods=["POST"]),
        Route(keys.PATH, keys.keys_page, methods=["GET"]),
        Route(keys.PATH, keys.create_key, methods=["POST"]),
        Route(keys.PATH + "/{key_id}/created", keys.created_key_page, methods=["GET"]),
        Route(keys.PATH + "/{key_id}/revoke", keys.revoke_key, methods=["POST"]),
        Route(audit.PATH, audit.audit_trail, methods=["GET"]),
        Route(executions.WORKFLOWS_PATH, executions.workflows_page, methods=["GET"]),
        Route(executions.PATH, executions.executions_page, methods=["GET"]),
        Route(executions.PATH + "/{execution_id}", executions.execution_page, methods=["GET"]),
        Route(executions.PATH + "/{execution_id}/cancel", executions.cancel_execution, methods=["POST"]),
        Route(CONNECT_PAGE_PATH, connect.connect_page, methods=["GET"]),
        Route(CONNECT_PAGE_PATH, connect.connect_submit, methods=["POST"]),
        Route(OAUTH_START_PATH, connect.oauth_start, methods=["GET"]),
        Route(OAUTH_CALLBACK_PATH, connect.oauth_callback, methods=["GET"]),
        Route(admin.PATH, admin.connector_events, methods=["GET"]),
        Route(admin.PATH + "/jobs/{job_id}/retry", admin.retry_dead_letter, methods=["POST"]),
        Route(admin.PATH + "/endpoints/{endpoint_id}/delete", admin.delete_endpoint, methods=["POST"]),
        *docs.docs_routes(),
    ]
