"""The OpenAPI 3.1 document, made from the route table: each route's `@api` declaration (permission,
path ids, models, statuses, docstring) and the pydantic models' own JSON Schemas, plus the browser
pages under /api/v1 (the OAuth start and callback) from their `@signed_in` declarations. Only the
words about the API as a whole and the statuses' meanings are written here; a route joins the
document by being in the table.
"""

from __future__ import annotations

import importlib.metadata
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaMode, models_json_schema
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from server.web.api.endpoint import ApiSpec
from server.web.errors import ErrorBody, HttpProblem
from server.web.pages.session import COOKIE, PageSpec
from server.web.quotas import keyless

OPENAPI_PATH = "/api/v1/openapi"

ABOUT = """\
Tendril lets LLM agents act on their users' accounts. This API is for the owners of those accounts
and the applications they build: connections (an account at a provider, with its credential sealed
inside Tendril), credentials as objects of their own, agents and their MCP keys, API keys, webhook
endpoints and the jobs their events become, and uploaded files and bucket folders.

**Authentication.** Send an API key as `Authorization: Bearer <key>` or `X-Api-Key: <key>`. A key
holds permissions (`read`, `write`, `execute`, `admin`); each operation names the one it needs
(`x-permission`). Agent keys are for MCP only and are refused here.

**Errors.** Every failure answers `{"error": "<message>", "code": "<CODE>"}` with the status below;
a request refused for its input changes nothing.
"""

# What each failure status means, for every operation that can answer it.
STATUS_MEANINGS = {
    400: "The request is malformed: a bad id, query parameter or body (the message names the field).",
    401: "No API key, or one Tendril does not know.",
    403: "The key lacks the permission this operation needs (or a provider refused the action).",
    404: "Nothing by that id among the key owner's things.",
    405: "This path takes other methods (the Allow header lists them).",
    409: "Not possible in the current state (a connection not connected yet, a name taken).",
    413: "The body is larger than the server accepts.",
    415: "The body is not JSON.",
    429: "Too many requests; Retry-After says how many seconds to wait.",
    500: "An unexpected failure; the answer carries only the reference it was logged under.",
    502: "The provider failed or answered something Tendril could not use.",
    503: "A service Tendril needs is unavailable; try again later.",
    504: "The provider did not answer in time.",
}
SUCCESS_MEANINGS = {200: "OK.", 201: "Created.", 204: "Done; no content."}

# The tag of an operation, by the first segment of its path after the API prefix.
TAGS = {
    "connectors": ("Connectors", "The connector catalog, connector instances and Alloy-style action calls."),
    "connections": ("Connections", "Connections to providers: start, credential, OAuth, actions, revoke."),
    "connect": ("One-shot calls", "An action run with a credential used once and never stored."),
    "credentials": ("Credentials", "Credentials as objects: one can back several connections."),
    "agents": ("Agents", "Agents, their MCP keys, allowed connectors and job delivery."),
    "keys": ("API keys", "The owner's API keys and their permissions."),
    "webhook-endpoints": ("Webhooks", "Endpoints that receive a provider's events."),
    "jobs": ("Jobs", "Provider events turned into durable jobs for agents."),
    "webhooks": (
        "Outgoing webhooks",
        "URLs of the owner's that Tendril tells about events (workflow.completed, ...), signed, "
        "with their deliveries.",
    ),
    "workflows": ("Workflows", "The owner's workflows: steps (actions, HTTP requests, delays, conditions)."),
    "executions": (
        "Executions",
        "Runs of the owner's workflows: status, each step's output and error, cancel.",
    ),
    "audit": ("Audit", "The owner's audit trail: who did what, on which connection, and how it ended."),
    "openapi": ("Contract", "This document."),
    "pages": ("Browser pages", "Pages a person opens in a browser tab, signed in with an API key."),
    "files": ("Files", "Uploaded files and GCS bucket folders that agents read as MCP resources."),
}
SECURITY = [{"bearerAuth": []}, {"apiKeyHeader": []}]


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    name: str
    spec: ApiSpec


def operations(routes: Iterable[BaseRoute]) -> list[Operation]:
    """Every `@api` route of the table, one per method."""
    found = []
    for route in routes:
        spec = getattr(getattr(route, "endpoint", None), "api", None)
        if isinstance(route, Route) and isinstance(spec, ApiSpec):
            for method in sorted((route.methods or set()) - {"HEAD"}):
                found.append(Operation(method, route.path, route.endpoint.__name__, spec))
    return found


@dataclass(frozen=True)
class Page:
    method: str
    path: str
    name: str
    spec: PageSpec


def pages(routes: Iterable[BaseRoute]) -> list[Page]:
    """The signed-in browser pages that live under the API's prefix."""
    found = []
    for route in routes:
        spec = getattr(getattr(route, "endpoint", None), "page", None)
        if isinstance(route, Route) and isinstance(spec, PageSpec) and route.path.startswith("/api/"):
            for method in sorted((route.methods or set()) - {"HEAD"}):
                found.append(Page(method, route.path, route.endpoint.__name__, spec))
    return found


def failure_statuses(op: Operation) -> list[int]:
    """What an operation can fail with: what every route answers, what its inputs add, and what it
    declares beyond those (a provider's failures, a conflict)."""
    spec = op.spec
    statuses = {401, 403, 429, 500}
    if spec.ids or spec.path or "{" in op.path:
        statuses |= {400, 404}
    if spec.query is not None:
        statuses.add(400)
    if spec.body is not None:
        statuses |= {400, 413, 415}
    if spec.upload:
        statuses |= {400, 413}
    return sorted(statuses | set(spec.errors))


def _tag(path: str) -> str:
    segment = path.removeprefix("/api/v1/").split("/", 1)[0] if path.startswith("/api/v1/") else "files"
    return TAGS[segment][0]


def _schema_ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _component_schemas(ops: list[Operation]) -> dict[str, Any]:
    pairs: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {(ErrorBody, "serialization"): None}
    for op in ops:
        for model in (op.spec.body, op.spec.query):
            if model is not None:
                pairs[(model, "validation")] = None
        if op.spec.response is not None:
            pairs[(op.spec.response, "serialization")] = None
        for model in op.spec.error_models:
            pairs[(model, "serialization")] = None
    _, schemas = models_json_schema(list(pairs), ref_template="#/components/schemas/{model}")
    return dict(sorted(schemas.get("$defs", {}).items()))


def _query_parameters(model: dict[str, Any]) -> list[dict[str, Any]]:
    required = set(model.get("required", ()))
    parameters = []
    for name, prop in model.get("properties", {}).items():
        prop = dict(prop)
        description = prop.pop("description", "")
        prop.pop("title", None)
        parameters.append(
            {
                "name": name,
                "in": "query",
                "required": name in required,
                "description": description,
                "schema": prop,
            }
        )
    return parameters


def _parameters(op: Operation, schemas: dict[str, Any]) -> list[dict[str, Any]]:
    spec, parameters = op.spec, []
    for name, what in spec.ids.items():
        parameters.append(
            {
                "name": name,
                "in": "path",
                "required": True,
                "description": f"The {what}.",
                "schema": {"type": "string", "format": "uuid"},
            }
        )
    for name, description in spec.path.items():
        schema: dict[str, Any] = {"type": "string", "minLength": 1}
        if name in spec.patterns:
            schema["pattern"] = spec.patterns[name]
        parameters.append(
            {"name": name, "in": "path", "required": True, "description": description, "schema": schema}
        )
    if spec.query is not None:
        parameters += _query_parameters(schemas[spec.query.__name__])
    return parameters


def _request_body(spec: ApiSpec, schemas: dict[str, Any]) -> dict[str, Any] | None:
    if spec.upload:
        return {
            "required": True,
            "description": "The file's content, as raw bytes (any content type).",
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        }
    if spec.body is None:
        return None
    schema = schemas[spec.body.__name__]
    return {
        "required": bool(schema.get("required")),
        "content": {"application/json": {"schema": _schema_ref(spec.body)}},
    }


def _links(op: Operation, ops: list[Operation]) -> dict[str, Any]:
    """From a route that makes something to every route under `<collection>/{param}`, with the
    new id as that parameter: clients (and the fuzzer) follow them from create to get, change and
    delete."""
    if op.spec.creates is None:
        return {}
    collection = (op.spec.collection or op.path) + "/{"
    links = {}
    for target in ops:
        if target.path.startswith(collection):
            parameter = target.path[len(collection) :].split("}", 1)[0]
            links[to_camel(target.name)] = {
                "operationId": to_camel(target.name),
                "parameters": {parameter: f"$response.body#{op.spec.creates}"},
                "description": f"The new thing's id as `{parameter}`.",
            }
    return dict(sorted(links.items()))


def _responses(op: Operation, ops: list[Operation]) -> dict[str, Any]:
    spec, responses = op.spec, {}
    for status in spec.success:
        answer: dict[str, Any] = {"description": SUCCESS_MEANINGS.get(status, "OK.")}
        if spec.response is not None and status != 204:
            answer["content"] = {"application/json": {"schema": _schema_ref(spec.response)}}
        answer["headers"] = dict(RATE_HEADERS)
        if links := _links(op, ops):
            answer["links"] = links
        responses[str(status)] = answer
    error_models = (ErrorBody, *spec.error_models)
    error_schema = (
        _schema_ref(ErrorBody)
        if len(error_models) == 1
        else {"anyOf": [_schema_ref(model) for model in error_models]}
    )
    for status in failure_statuses(op):
        answer = {
            "description": STATUS_MEANINGS[status],
            "content": {"application/json": {"schema": error_schema}},
            "headers": dict(RATE_HEADERS),
        }
        if status == 429:
            answer["headers"]["Retry-After"] = {"$ref": "#/components/headers/RetryAfter"}
        responses[str(status)] = answer
    return responses


def _operation(op: Operation, ops: list[Operation], schemas: dict[str, Any]) -> dict[str, Any]:
    spec = op.spec
    needs = f"Needs an API key with the `{spec.permission}` permission."
    operation: dict[str, Any] = {
        "operationId": to_camel(op.name),
        "summary": spec.summary,
        "description": "\n\n".join(part for part in (spec.description, needs) if part),
        "tags": [_tag(op.path)],
        "security": SECURITY,
        "x-permission": spec.permission,
        "parameters": _parameters(op, schemas),
        "responses": _responses(op, ops),
    }
    body = _request_body(spec, schemas)
    if body is not None:
        operation["requestBody"] = body
    if not operation["parameters"]:
        del operation["parameters"]
    return operation


def _page_operation(page: Page) -> dict[str, Any]:
    spec = page.spec
    html = {"text/html": {"schema": {"type": "string"}}}
    about = (
        f"A page for a person's browser, not for API clients: it needs a signed-in session (sign "
        f"in at /signin with an API key holding `{spec.permission}`); without one it sends the "
        "browser to sign in and back."
    )
    operation: dict[str, Any] = {
        "operationId": to_camel(page.name),
        "summary": spec.summary,
        "description": "\n\n".join(part for part in (spec.description, about) if part),
        "tags": [TAGS["pages"][0]],
        "security": [{"sessionCookie": []}],
        "x-permission": spec.permission,
        "responses": {
            "200": {"description": "The page.", "content": html},
            "302": {"description": "On to the provider's consent screen.", "headers": _LOCATION},
            "303": {"description": "Not signed in: on to /signin, and back after.", "headers": _LOCATION},
            **{
                str(status): {"description": STATUS_MEANINGS[status], "content": html}
                for status in (400, 403, 404, 409, 429, 502)
            },
            "500": {
                "description": STATUS_MEANINGS[500],
                "content": {"application/json": {"schema": _schema_ref(ErrorBody)}},
            },
        },
    }
    if spec.query is not None:
        _, defs = models_json_schema(
            [(spec.query, "validation")], ref_template="#/components/schemas/{model}"
        )
        operation["parameters"] = _query_parameters(defs["$defs"][spec.query.__name__])
    return operation


# Every answer of an API route says where its caller stands in the current rate-limit window.
RATE_HEADERS = {
    name: {"$ref": f"#/components/headers/{name.replace('-', '')}"}
    for name in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
}
_LOCATION = {"Location": {"description": "Where the browser goes next.", "schema": {"type": "string"}}}


def _document_operation() -> dict[str, Any]:
    return {
        "operationId": "getOpenApiDocument",
        "summary": "This document",
        "description": "The API's contract, as JSON or (`format=yaml`) YAML. Needs no key.",
        "tags": [TAGS["openapi"][0]],
        "security": [],
        "parameters": [
            {
                "name": "format",
                "in": "query",
                "required": False,
                "description": "json (the default) or yaml.",
                "schema": {"type": "string", "enum": ["json", "yaml"]},
            }
        ],
        "responses": {
            "200": {
                "description": "The OpenAPI document.",
                "headers": dict(RATE_HEADERS),
                # The same mapping either way: a YAML answer parses to the object the JSON one is.
                "content": {
                    "application/json": {"schema": {"type": "object"}},
                    "application/yaml": {"schema": {"type": "object"}},
                },
            },
            "400": {
                "description": STATUS_MEANINGS[400],
                "content": {"application/json": {"schema": _schema_ref(ErrorBody)}},
                "headers": dict(RATE_HEADERS),
            },
        },
    }


def build_document(routes: Iterable[BaseRoute], *, server_url: str) -> dict[str, Any]:
    routes = list(routes)
    ops = operations(routes)
    schemas = _component_schemas(ops)
    paths: dict[str, dict[str, Any]] = {OPENAPI_PATH: {"get": _document_operation()}}
    for op in ops:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, ops, schemas)
    for page in pages(routes):
        paths.setdefault(page.path, {})[page.method.lower()] = _page_operation(page)
    used_tags = {op["tags"][0] for item in paths.values() for op in item.values()}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Tendril API",
            "version": importlib.metadata.version("tendril"),
            "description": ABOUT,
        },
        "servers": [{"url": server_url.rstrip("/")}],
        "tags": [
            {"name": name, "description": description}
            for name, description in TAGS.values()
            if name in used_tags
        ],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "description": "An API key."},
                "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
                "sessionCookie": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": COOKIE,
                    "description": "A browser session, opened at /signin with an API key.",
                },
            },
            "headers": {
                "RetryAfter": {
                    "description": "Seconds to wait before trying again.",
                    "schema": {"type": "integer", "minimum": 0},
                },
                "XRateLimitLimit": {
                    "description": (
                        "Requests allowed per minute (per API key; per client address without one)."
                    ),
                    "schema": {"type": "integer", "minimum": 1},
                },
                "XRateLimitRemaining": {
                    "description": "Requests left in the current minute's window.",
                    "schema": {"type": "integer", "minimum": 0},
                },
                "XRateLimitReset": {
                    "description": "When the current window ends, as Unix time in seconds.",
                    "schema": {"type": "integer", "minimum": 0},
                },
            },
        },
    }


async def openapi_document(request: Request) -> Response:
    """GET /api/v1/openapi: the document, built once per app from its own route table."""

    async def work() -> Response:
        state = request.app.state
        document = getattr(state, "openapi", None)
        if document is None:
            document = build_document(request.app.router.routes, server_url=state.settings.public_url)
            state.openapi = document
        wanted = request.query_params.get("format", "json")
        if wanted == "json":
            return JSONResponse(document)
        if wanted == "yaml":
            text = yaml.safe_dump(json.loads(json.dumps(document)), sort_keys=False, allow_unicode=True)
            return Response(text, media_type="application/yaml")
        raise HttpProblem(400, "format must be json or yaml")

    return await keyless(request, work)
