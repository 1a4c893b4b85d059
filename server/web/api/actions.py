"""Running actions the way two other APIs' users expect to:

- `POST /api/v1/connectors/{connector}/actions/{action}` `{credentialId, parameters}`, answered
  `{data, has_more, next_cursor}` with errors as `{"error": {code, message}}` (Alloy's shape);
- `POST /api/v1/connect/{connector}` `{action, token | credentials, params}`: a one-shot call with
  a credential used once and never stored (the shape one-shot connector guides use).
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, Field, JsonValue
from starlette.responses import JSONResponse, Response

from connectors.errors import ConnectorError, InvalidInput
from server.core.errors import DomainError, Invalid, NotFound
from server.web.api.endpoint import (
    PROVIDER_ERRORS,
    ApiRequest,
    ApiResponse,
    Call,
    RequestModel,
    api,
    examples,
)
from server.web.errors import provider_error_parts
from server.web.reading import uuid_of


class AlloyCall(ApiRequest):
    model_config = examples(
        {"credentialId": "0190b5f3-8c1e-7c4a-9d2e-5b8f3a1c2d4e", "parameters": {"query": "Meeting Notes"}}
    )
    credential_id: JsonValue = Field(
        None, description="The connection to run on (Alloy calls it a credential)."
    )
    parameters: JsonValue = Field(None, description="The action's parameters, a JSON object.")


class AlloyPage(BaseModel):  # snake_case, as Alloy answers
    data: Any = Field(description="The result; for a list, its items.")
    has_more: bool = Field(description="Whether there is another page.")
    next_cursor: str | int | None = Field(description="Pass back to get the next page.")


class AlloyErrorDetail(BaseModel):
    code: str = Field(description="INVALID_INPUT, NOT_FOUND, RATE_LIMITED, ...")
    message: str = Field(description="What went wrong.")


class AlloyError(BaseModel):
    """Alloy's error shape, answered by its action route for what the route itself refuses."""

    error: AlloyErrorDetail


def _alloy_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = AlloyError(error=AlloyErrorDetail(code=code, message=message))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def alloy_page(result: dict[str, Any]) -> AlloyPage:
    """A list result as Alloy pages it; anything else as `data`."""
    if "has_more" not in result:
        return AlloyPage(data=result, has_more=False, next_cursor=None)
    items = next((v for v in result.values() if isinstance(v, list)), [])
    return AlloyPage(data=items, has_more=bool(result["has_more"]), next_cursor=result.get("next_cursor"))


@api(
    "execute",
    body=AlloyCall,
    response=AlloyPage,
    path={"connector": "The connector's slug.", "action": "The action's name, or Alloy's id for it."},
    errors=PROVIDER_ERRORS,
    error_models=(AlloyError,),
)
async def run_connector_action(call: Call) -> AlloyPage | Response:
    """Run an action (Alloy's shape)
    `{credentialId, parameters}` answered `{data, has_more, next_cursor}`; credentialId is the
    connection's id. What the route refuses is answered in Alloy's error shape."""
    core, path, body = call.core, call.request.path_params, call.body
    assert isinstance(body, AlloyCall)
    connector = core.catalog.get(path["connector"])
    if connector is None:
        return _alloy_error(404, "NOT_FOUND", f"unknown connector: {path['connector']}")
    action = connector.find_action(path["action"])
    if action is None:
        return _alloy_error(400, "INVALID_INPUT", f"unknown action: {path['action']}")
    try:
        record = await core.connections.get(call.owner_id, uuid_of(str(body.credential_id), "credential id"))
        if record.connector_slug != connector.slug:
            raise NotFound("wrong connector")
    except DomainError:
        return _alloy_error(400, "INVALID_INPUT", "Credential not found")
    parameters = body.parameters or {}
    if not isinstance(parameters, dict):
        return _alloy_error(400, "INVALID_INPUT", "parameters must be a JSON object")
    try:
        result = await core.connections.run(record, action, parameters)
    except ConnectorError as error:
        status, code, headers, _ = provider_error_parts(error)
        return _alloy_error(status, code, error.message, headers)
    return alloy_page(result.model_dump(mode="json"))


class ConnectOnce(RequestModel):
    model_config = examples(
        {"action": "search", "token": "secret_...", "params": {"query": "Meeting Notes"}},
        {"action": "list_labels", "credentials": {"token": "ya29..."}, "params": {}},
    )
    action: str | None = Field(None, description="The action, as `post_message` or `slack_post_message`.")
    token: JsonValue = Field(None, description="The credential's main secret (a bot token, an access token).")
    credentials: dict[str, JsonValue] | None = Field(
        None, description="The credential's fields, instead of token."
    )
    params: JsonValue = Field(None, description="The action's parameters.")
    field_messages: ClassVar[dict[str, str]] = {
        "action": "action must be a string",
        "credentials": "credentials must be a JSON object",
    }


class ConnectOnceResult(ApiResponse):
    status: str = Field(description="Always ok.")
    connector: str = Field(description="The connector called.")
    result: dict[str, Any] = Field(description="The action's result.")


@api(
    "execute",
    body=ConnectOnce,
    response=ConnectOnceResult,
    path={"connector": "The connector's slug."},
    errors=PROVIDER_ERRORS,
)
async def connect_once(call: Call) -> ConnectOnceResult:
    """Run an action once with a credential that is never stored
    Send the credential's main secret as `token`, or its fields as `credentials`."""
    core, body = call.core, call.body
    assert isinstance(body, ConnectOnce)
    slug = call.request.path_params["connector"]
    connector = core.catalog.get(slug)
    if connector is None:
        raise NotFound(f"unknown connector: {slug}")
    if not body.action:
        raise Invalid("action required", field="action")
    credentials: dict[str, JsonValue]
    if not connector.spec.credential_fields:
        # OAuth-only (Gmail): the guide passes the access token as `token` or in `credentials`.
        given = (
            (body.credentials.get("token") or body.credentials.get("access_token"))
            if body.credentials
            else body.token
        )
        if not given:
            raise Invalid("token required", field="token")
        credentials = {"access_token": given}
    elif body.credentials is None:
        if not body.token:
            raise Invalid("token required", field="token")
        primary = (connector.spec.secret_keys or (connector.spec.credential_fields[0].key,))[0]
        credentials = {primary: body.token}
    else:
        credentials = body.credentials
    action = core.connections.action(connector, body.action)  # `post_message` or `slack_post_message`
    params = {} if body.params is None else body.params
    try:
        if not isinstance(params, dict):
            raise InvalidInput("params must be a JSON object", field="params")
        result = await core.connections.run_inline(call.owner_id, connector, action, credentials, params)
    except ConnectorError as error:
        # The guide names every execution failure `connector_error: ...`; status and code stay specific.
        error.message = f"connector_error: {error.message}"
        raise
    return ConnectOnceResult(status="ok", connector=slug, result=result.model_dump(mode="json"))
