"""REST routes under /api/v1. Each is thin: authenticate, parse, call the hub, render."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from connectors.errors import ConnectorError
from server.errors import ApiError, api_error_from_connector
from server.hub import Hub, OwnerPrincipal, parse_uuid
from server.web import render
from server.web._http import endpoint, hub_of, json_object, optional_str
from storage.repositories import AgentRecord, ConnectionRecord


# -- catalog --------------------------------------------------------------------------------
@endpoint("read")
async def list_connectors(request: Request, principal: OwnerPrincipal) -> Response:
    hub = hub_of(request)
    available_only = request.query_params.get("available", "").lower() in ("1", "true", "yes")
    items = [render.connector(hub, c) for c in hub.catalog.values()]
    if available_only:
        items = [item for item in items if item["availability"] == "available"]
    return JSONResponse(items)


# -- connections ----------------------------------------------------------------------------
@endpoint("write")
async def create_connection(request: Request, principal: OwnerPrincipal) -> Response:
    hub = hub_of(request)
    body = await json_object(request)
    connector = hub.connector(body.get("connectorSlug"))
    record, created = await hub.start_connection(
        principal.owner_id, connector, optional_str(body, "label"), body.get("config")
    )
    is_oauth = record.auth_method == "oauth"
    payload = {
        "connection": render.connection(hub, record),
        "oauthUrl": hub.oauth.start_url(record) if is_oauth and record.status != "active" else None,
        "credentialSubmitUrl": None if is_oauth else hub.credential_submit_url(record),
    }
    active = record.status == "active"
    return JSONResponse(payload, status_code=200 if active or not created else 201)


@endpoint("read")
async def list_connections(request: Request, principal: OwnerPrincipal) -> Response:
    hub = hub_of(request)
    records = await hub.store.list_connections(principal.owner_id)
    return JSONResponse([render.connection(hub, r) for r in records])


@endpoint("read")
async def get_connection(request: Request, principal: OwnerPrincipal) -> Response:
    hub = hub_of(request)
    record = await hub.get_connection(principal.owner_id, request.path_params["id"])
    return JSONResponse(render.connection(hub, record))


@endpoint("write")
async def update_connection(request: Request, principal: OwnerPrincipal) -> Response:
    hub = hub_of(request)
    body = await json_object(request)
    unknown = sorted(set(body) - {"label", "config"})
    if unknown:
        raise ApiError(400, f"unknown field(s): {', '.join(unknown)}; PATCH takes label and config")
    record = await hub.update_connection(
        principal.owner_id, request.path_params["id"], label=body.get("label"), config=body.get("config")
    )
    return JSONResponse(render.connection(hub, record))


@endpoint("write")
async def delete_connection(request: Request, principal: OwnerPrincipal) -> Response:
    await hub_of(request).revoke_connection(principal.owner_id, request.path_params["id"])
    return JSONResponse({"deleted": True})


def _oauth_status(hub: Hub, record: ConnectionRecord) -> dict[str, object]:
    active = record.status == "active"
    return {
        "connectionId": str(record.id),
        "status": record.status,
        "authMethod": record.auth_method,
        "oauthUrl": hub.oauth.start_url(record) if record.auth_method == "oauth" and not active else None,
        "scopes": list(record.scopes) if record.scopes is not None else None,
        "lastError": record.last_error,
    }


@endpoint("read")
async def oauth_status(request: Request, principal: OwnerPrincipal) -> Response:
    hub = hub_of(request)
    record = await hub.get_connection(principal.owner_id, request.path_params["id"])
    return JSONResponse(_oauth_status(hub, record))


@endpoint("write")
async def oauth_restart(request: Request, principal: OwnerPrincipal) -> Response:
    """A fresh handshake: earlier states stop working, the connection waits for the new one."""
    hub = hub_of(request)
    record = await hub.get_connection(principal.owner_id, request.path_params["id"])
    if record.auth_method != "oauth":
        raise ApiError(400, "this connection does not use OAuth; submit its credentials instead")
    if hub.oauth.provider(hub.catalog[record.connector_slug]) is None:
        raise ApiError(400, f"connector {record.connector_slug} has no OAuth client configured")
    await hub.flows.expire_states(record.id)
    body = _oauth_status(hub, record)
    body["oauthUrl"] = hub.oauth.start_url(record)
    return JSONResponse(body)


@endpoint("write")
async def submit_credentials(request: Request, principal: OwnerPrincipal) -> Response:
    hub = hub_of(request)
    connection_id = request.path_params["id"]
    parse_uuid(connection_id, "connection id")
    body = await json_object(request)
    # Accept both {"credentials": {...}} and the bare field object.
    submitted = body["credentials"] if set(body) == {"credentials"} else body
    record = await hub.submit_credentials(principal.owner_id, connection_id, submitted)
    return JSONResponse({"connection": render.connection(hub, record)})


@endpoint("execute")
async def run_connection_action(request: Request, principal: OwnerPrincipal) -> Response:
    hub = hub_of(request)
    record = await hub.get_connection(principal.owner_id, request.path_params["id"])
    body = await json_object(request)
    params = body.get("parameters", {})
    if not isinstance(params, dict):
        raise ApiError(400, "'parameters' must be a JSON object")
    action = hub.action(hub.catalog[record.connector_slug], request.path_params["action"])
    result = await hub.run_on_connection(record, action, params)
    return JSONResponse({"data": result.model_dump(mode="json"), "connectionId": str(record.id)})


# -- Alloy-style calls (alloy-connectivity-api.md) -------------------------------------------
def _alloy_error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


@endpoint("execute")
async def alloy_action(request: Request, principal: OwnerPrincipal) -> Response:
    """`{credentialId, parameters}` -> `{data, has_more, next_cursor}`, with Alloy's error shape."""
    hub = hub_of(request)
    body = await json_object(request)
    connector = hub.catalog.get(request.path_params["connector"])
    if connector is None:
        return _alloy_error(404, "NOT_FOUND", f"unknown connector: {request.path_params['connector']}")
    action = connector.find_action(request.path_params["action"])
    if action is None:
        return _alloy_error(400, "INVALID_INPUT", f"unknown action: {request.path_params['action']}")
    credential_id = body.get("credentialId")
    try:
        record = await hub.get_connection(principal.owner_id, str(credential_id))
    except ApiError:
        return _alloy_error(400, "INVALID_INPUT", "Credential not found")
    if record.connector_slug != connector.slug:
        return _alloy_error(400, "INVALID_INPUT", "Credential not found")
    parameters = body.get("parameters") or {}
    if not isinstance(parameters, dict):
        return _alloy_error(400, "INVALID_INPUT", "parameters must be a JSON object")
    try:
        result = (await hub.run_on_connection(record, action, parameters)).model_dump(mode="json")
    except ConnectorError as error:
        failure = api_error_from_connector(error)
        response = _alloy_error(failure.status, failure.code, failure.message)
        response.headers.update(failure.headers)
        return response
    return JSONResponse(alloy_page(result))


def alloy_page(result: dict[str, object]) -> dict[str, object]:
    """A list result as Alloy pages it; anything else as `data`."""
    if "has_more" not in result:
        return {"data": result, "has_more": False, "next_cursor": None}
    items = next((v for v in result.values() if isinstance(v, list)), [])
    return {"data": items, "has_more": result["has_more"], "next_cursor": result.get("next_cursor")}


# -- one-shot connector calls (levqor-connectors-guide.md) ------------------------------------
@endpoint("execute")
async def connect_once(request: Request, principal: OwnerPrincipal) -> Response:
    hub = hub_of(request)
    slug = request.path_params["connector"]
    connector = hub.catalog.get(slug)
    if connector is None:
        raise ApiError(404, f"unknown connector: {slug}")
    body = await json_object(request)
    action_name = body.get("action")
    if not action_name:
        raise ApiError(400, "action required")
    if not isinstance(action_name, str):
        raise ApiError(400, "action must be a string")
    credentials = body.get("credentials")
    token = body.get("token")
    if not connector.spec.credential_fields:
        # OAuth-only (Gmail): the guide passes the access token as `token` or in `credentials`.
        given = (
            credentials.get("token") or credentials.get("access_token")
            if isinstance(credentials, dict)
            else token
        )
        if not given:
            raise ApiError(400, "token required")
        credentials = {"access_token": given}
    elif credentials is None:
        if not token:
            raise ApiError(400, "token required")
        primary = (connector.spec.secret_keys or (connector.spec.credential_fields[0].key,))[0]
        credentials = {primary: token}
    action = hub.action(connector, action_name)  # `post_message` or `slack_post_message`
    try:
        params = body.get("params")
        result = await hub.run_inline(connector, action, credentials, {} if params is None else params)
    except ConnectorError as error:
        # The guide names every execution failure `connector_error: ...`; status and code stay specific.
        failure = api_error_from_connector(error)
        failure.message = f"connector_error: {failure.message}"
        raise failure from None
    return JSONResponse({"status": "ok", "connector": slug, "result": result.model_dump(mode="json")})


# -- agents ----------------------------------------------------------------------------------
@endpoint("write")
async def create_agent(request: Request, principal: OwnerPrincipal) -> Response:
    hub = hub_of(request)
    body = await json_object(request)
    created = await hub.create_agent(
        principal.owner_id, name=body.get("name"), allowed_connectors=body.get("allowedConnectors", [])
    )
    return JSONResponse(
        {"agent": render.agent(created.record), "apiKey": created.plaintext_key}, status_code=201
    )


@endpoint("read")
async def list_agents(request: Request, principal: OwnerPrincipal) -> Response:
    records = await hub_of(request).store.list_agents(principal.owner_id)
    return JSONResponse([render.agent(r) for r in records])


async def _agent_or_404(request: Request, principal: OwnerPrincipal) -> AgentRecord:
    agent_id = parse_uuid(request.path_params["id"], "agent id")
    record = await hub_of(request).store.get_agent(principal.owner_id, agent_id)
    if record is None:
        raise ApiError(404, "agent not found")
    return record


@endpoint("read")
async def get_agent(request: Request, principal: OwnerPrincipal) -> Response:
    return JSONResponse(render.agent(await _agent_or_404(request, principal)))


@endpoint("write")
async def update_agent(request: Request, principal: OwnerPrincipal) -> Response:
    hub = hub_of(request)
    record = await _agent_or_404(request, principal)
    body = await json_object(request)
    unknown = sorted(set(body) - {"name", "allowedConnectors"})
    if unknown:
        raise ApiError(400, f"unknown field(s): {', '.join(unknown)}; PATCH takes name and allowedConnectors")
    allowed = body.get("allowedConnectors")
    name = body.get("name")
    updated = await hub.update_agent(
        principal.owner_id,
        record.id,
        name=name,
        allowed_connectors=hub.check_allowed_connectors(allowed) if allowed is not None else None,
    )
    return JSONResponse(render.agent(updated))


@endpoint("write")
async def delete_agent(request: Request, principal: OwnerPrincipal) -> Response:
    record = await _agent_or_404(request, principal)
    await hub_of(request).store.delete_agent(principal.owner_id, record.id)
    return JSONResponse({"deleted": True})


# -- API keys --------------------------------------------------------------------------------
@endpoint("admin")
async def create_key(request: Request, principal: OwnerPrincipal) -> Response:
    body = await json_object(request)
    permissions = body.get("permissions")
    if permissions is not None and (
        not isinstance(permissions, list) or not all(isinstance(p, str) for p in permissions)
    ):
        raise ApiError(400, "permissions must be a list of strings")
    created = await hub_of(request).create_api_key(
        principal.owner_id, name=body.get("name", "api key"), permissions=permissions
    )
    return JSONResponse({"key": render.api_key(created.record), "apiKey": created.plaintext}, status_code=201)


@endpoint("admin")
async def list_keys(request: Request, principal: OwnerPrincipal) -> Response:
    records = await hub_of(request).store.list_api_keys(principal.owner_id)
    return JSONResponse([render.api_key(r) for r in records])


@endpoint("admin")
async def revoke_key(request: Request, principal: OwnerPrincipal) -> Response:
    key_id = parse_uuid(request.path_params["id"], "key id")
    if not await hub_of(request).store.revoke_api_key(principal.owner_id, key_id):
        raise ApiError(404, "API key not found")
    return JSONResponse({"revoked": True})


def api_routes() -> list[BaseRoute]:
    return [
        Route("/api/v1/connectors", list_connectors, methods=["GET"]),
        Route("/api/v1/connections", create_connection, methods=["POST"]),
        Route("/api/v1/connections", list_connections, methods=["GET"]),
        Route("/api/v1/connections/{id}", get_connection, methods=["GET"]),
        Route("/api/v1/connections/{id}", delete_connection, methods=["DELETE"]),
        Route("/api/v1/connections/{id}", update_connection, methods=["PATCH"]),
        Route("/api/v1/connectors/{connector}/actions/{action}", alloy_action, methods=["POST"]),
        Route("/api/v1/connections/{id}/credentials", submit_credentials, methods=["POST"]),
        Route("/api/v1/connections/{id}/oauth", oauth_status, methods=["GET"]),
        Route("/api/v1/connections/{id}/oauth", oauth_restart, methods=["POST"]),
        Route("/api/v1/connections/{id}/actions/{action}", run_connection_action, methods=["POST"]),
        Route("/api/v1/connect/{connector}", connect_once, methods=["POST"]),
        Route("/api/v1/agents", create_agent, methods=["POST"]),
        Route("/api/v1/agents", list_agents, methods=["GET"]),
        Route("/api/v1/agents/{id}", get_agent, methods=["GET"]),
        Route("/api/v1/agents/{id}", update_agent, methods=["PATCH"]),
        Route("/api/v1/agents/{id}", delete_agent, methods=["DELETE"]),
        Route("/api/v1/keys", create_key, methods=["POST"]),
        Route("/api/v1/keys", list_keys, methods=["GET"]),
        Route("/api/v1/keys/{id}", revoke_key, methods=["DELETE"]),
    ]
