"""The OpenAPI document at /api/v1/openapi: valid OpenAPI 3.1, public, made from the route table
(every mounted API route is in it and every operation in it is mounted), with operation ids that
read as SDK methods, every status a route can answer, request examples that fit their schemas,
and links that lead from a create to what it made."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import yaml
from openapi_spec_validator import validate
from starlette.routing import Route

from server.settings import Settings
from server.web.api import api_not_found
from server.web.api.endpoint import ApiSpec
from tests.conftest import Tendril
from tests.support.cli import run_cli

pytestmark = pytest.mark.anyio

API_PREFIXES = ("/api/", "/connectors")
RATE_HEADERS = {"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"}


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """The document does not depend on the engine: one is enough here."""
    return f"sqlite+aiosqlite:///{tmp_path / 'tendril.db'}"


async def fetch_document(tendril: Tendril, **params: str) -> httpx.Response:
    async with tendril.raw() as http:
        return await http.get("/api/v1/openapi", params=params)


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]


def mounted_api_routes(tendril: Tendril) -> dict[tuple[str, str], Route]:
    found = {}
    for route in tendril.app.router.routes:  # type: ignore[attr-defined]
        if isinstance(route, Route) and route.path.startswith(API_PREFIXES):
            if route.endpoint is api_not_found:
                continue
            for method in (route.methods or set()) - {"HEAD"}:
                found[(method, route.path)] = route
    return found


async def test_the_document_is_valid_openapi_3_1_served_without_a_key_as_json_or_yaml(
    tendril: Tendril,
) -> None:
    answer = await fetch_document(tendril)
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    document = answer.json()
    assert document["openapi"] == "3.1.0"
    validate(document)

    as_yaml = await fetch_document(tendril, format="yaml")
    assert as_yaml.status_code == 200 and as_yaml.headers["content-type"].startswith("application/yaml")
    assert yaml.safe_load(as_yaml.text) == document

    wrong = await fetch_document(tendril, format="xml")
    assert wrong.status_code == 400
    assert wrong.json() == {"error": "format must be json or yaml", "code": "BAD_REQUEST"}


async def test_the_document_describes_its_own_answers_in_either_format(tendril: Tendril) -> None:
    # Found by fuzzing: the YAML answer was declared a string, but a client (schemathesis among
    # them) parses application/yaml into the same mapping the JSON answer is.
    document = (await fetch_document(tendril)).json()
    content = document["paths"]["/api/v1/openapi"]["get"]["responses"]["200"]["content"]
    as_yaml = yaml.safe_load((await fetch_document(tendril, format="yaml")).text)
    for media_type, parsed in (("application/json", document), ("application/yaml", as_yaml)):
        jsonschema.validate(parsed, content[media_type]["schema"], cls=jsonschema.Draft202012Validator)


async def test_every_mounted_route_is_documented_and_every_operation_is_mounted(tendril: Tendril) -> None:
    document = (await fetch_document(tendril)).json()
    documented = {(method, path) for method, path, _ in operations(document)}
    mounted = mounted_api_routes(tendril)
    assert documented == set(mounted)

    # And each documented path really reaches its operation: a call without a key is refused by
    # the operation (401), not answered by the API's 404/405 for unknown routes.
    async with tendril.raw() as http:
        for method, path, operation in operations(document):
            concrete = re.sub(r"\{[^}]+\}", "conn_" + "0" * 32, path)
            answer = await http.request(method, concrete)
            expected = 200 if operation["operationId"] == "getOpenApiDocument" else 401
            if operation["security"] == [{"sessionCookie": []}]:
                expected = 303  # a browser page sends a stranger to sign in
            assert answer.status_code == expected, f"{method} {path}: {answer.status_code} {answer.text}"


async def test_operations_read_as_sdk_methods_and_say_what_they_need(tendril: Tendril) -> None:
    document = (await fetch_document(tendril)).json()
    mounted = mounted_api_routes(tendril)
    ids = [operation["operationId"] for _, _, operation in operations(document)]
    assert len(ids) == len(set(ids))
    for method, path, operation in operations(document):
        where = f"{method} {path}"
        assert re.fullmatch(r"[a-z][A-Za-z0-9]+", operation["operationId"]), where
        assert operation["summary"] and operation["tags"], where
        if operation["operationId"] == "getOpenApiDocument":
            assert operation["security"] == []
            continue
        if operation["security"] == [{"sessionCookie": []}]:
            page = mounted[(method, path)].endpoint.page  # type: ignore[attr-defined]
            assert operation["x-permission"] == page.permission, where
            continue
        spec: ApiSpec = mounted[(method, path)].endpoint.api  # type: ignore[attr-defined]
        assert operation["x-permission"] == spec.permission, where
        assert f"`{spec.permission}` permission" in operation["description"], where
        assert operation["security"] == [{"bearerAuth": []}, {"apiKeyHeader": []}], where
        statuses = set(operation["responses"])
        assert {"401", "403", "429", "500"} <= statuses, where
        assert "Retry-After" in operation["responses"]["429"]["headers"], where
        for status, response in operation["responses"].items():
            assert set(response["headers"]) >= RATE_HEADERS, f"{where} {status}"
        if "{" in path:
            assert {"400", "404"} <= statuses, where
        if "requestBody" in operation and "application/json" in operation["requestBody"]["content"]:
            assert {"400", "413", "415"} <= statuses, where
        assert any(status.startswith("2") for status in statuses), where


async def test_request_examples_fit_their_schemas(tendril: Tendril) -> None:
    document = (await fetch_document(tendril)).json()
    schemas = document["components"]["schemas"]
    checked = 0
    for name, schema in schemas.items():
        for example in schema.get("examples", []):
            resolver_root = {"components": {"schemas": schemas}, **schema}
            jsonschema.validate(example, resolver_root, cls=jsonschema.Draft202012Validator)
            checked += 1
        assert name  # every schema is named
    assert checked >= 8


async def test_links_lead_from_a_create_to_get_update_and_delete(tendril: Tendril) -> None:
    document = (await fetch_document(tendril)).json()
    created = document["paths"]["/api/v1/connections"]["post"]["responses"]["201"]["links"]
    by_operation = {link["operationId"]: link["parameters"] for link in created.values()}
    for operation_id in ("getConnection", "updateConnection", "deleteConnection"):
        assert by_operation[operation_id] == {"id": "$response.body#/connection/id"}

    # Follow them for real: the pointer finds the id, and the linked operations accept it.
    owner = await tendril.new_owner()
    paths = {op["operationId"]: (method, path) for method, path, op in operations(document)}
    async with tendril.raw() as http:
        http.headers["X-Api-Key"] = owner.api_key
        made = await http.post("/api/v1/connections", json={"connectorSlug": "telegram"})
        assert made.status_code == 201
        new_id = made.json()["connection"]["id"]
        bodies = {"updateConnection": {"label": "renamed"}}
        for operation_id in ("getConnection", "updateConnection", "deleteConnection"):
            method, path = paths[operation_id]
            answer = await http.request(method, path.replace("{id}", new_id), json=bodies.get(operation_id))
            assert answer.status_code == 200, (operation_id, answer.text)
        assert (await http.get(f"/api/v1/connections/{new_id}")).status_code == 404


async def test_the_cli_prints_the_same_document_for_code_generators(
    tendril: Tendril, settings: Settings
) -> None:
    served = (await fetch_document(tendril)).json()
    printed = await run_cli(settings, "openapi")
    assert printed.returncode == 0, printed.stderr
    assert json.loads(printed.stdout) == served
    as_yaml = await run_cli(settings, "openapi", "--format", "yaml")
    assert yaml.safe_load(as_yaml.stdout) == served
