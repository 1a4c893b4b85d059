"""REST: bad input anywhere is a 4xx with `{"error", "code"}` and a clear message, never a 500.

Each POST/PATCH endpoint gets malformed JSON, non-object JSON, wrong types, missing fields, oversized
bodies (declared and streamed), and non-JSON content types; each {id} route gets malformed UUIDs.
The targets are real: an active Slack connection and an agent exist, so id lookups succeed and the
body is what gets judged.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.conftest import SLACK_TOKEN, Fakes, Owner, Tendril

pytestmark = pytest.mark.anyio

LIMIT = 1_048_576  # Settings.max_body_bytes default: 1 MiB

# name -> (method, path template); {connection} and {agent} are filled with live ids.
BODY_ENDPOINTS: dict[str, tuple[str, str]] = {
    "create_connection": ("POST", "/api/v1/connections"),
    "submit_credentials": ("POST", "/api/v1/connections/{connection}/credentials"),
    "run_action": ("POST", "/api/v1/connections/{connection}/actions/post_message"),
    "connect_once": ("POST", "/api/v1/connect/slack"),
    "create_agent": ("POST", "/api/v1/agents"),
    "update_agent": ("PATCH", "/api/v1/agents/{agent}"),
    "create_key": ("POST", "/api/v1/keys"),
}

# Every route with an {id}, and what the id names in the error message.
ID_ROUTES: list[tuple[str, str, str]] = [
    ("GET", "/api/v1/connections/{id}", "connection id"),
    ("DELETE", "/api/v1/connections/{id}", "connection id"),
    ("POST", "/api/v1/connections/{id}/credentials", "connection id"),
    ("POST", "/api/v1/connections/{id}/actions/post_message", "connection id"),
    ("GET", "/api/v1/agents/{id}", "agent id"),
    ("PATCH", "/api/v1/agents/{id}", "agent id"),
    ("DELETE", "/api/v1/agents/{id}", "agent id"),
    ("DELETE", "/api/v1/keys/{id}", "key id"),
]

MALFORMED_IDS = [
    "not-a-uuid",
    "1234",
    "6f1c3c55-2f4e-4d8e-9a61-0c7cf0d7c1a",  # one digit short
    "6f1c3c55-2f4e-4d8e-9a61-0c7cf0d7c1a1x",  # one character long
    "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz",
    "%27%20OR%201%3D1--",
    "%C3%BC%E2%9C%93",
    "%00",
    "null",
    "a" * 2000,
]

# Bodies that are not a JSON object at all; each must be a 400 whatever the endpoint.
NOT_A_JSON_OBJECT: dict[str, tuple[bytes, str]] = {
    "truncated": (b'{"connectorSlug": "slack"', "not valid JSON"),
    "trailing garbage": (b"{} {}", "not valid JSON"),
    "single quotes": (b"{'name': 'x'}", "not valid JSON"),
    "bare word": (b"hello", "not valid JSON"),
    "invalid utf-8": (b'{"name": "\xff\xfe"}', "not valid JSON"),
    "NaN literal": (b'{"name": NaN}', "not valid JSON"),
    "Infinity literal": (b'{"name": -Infinity}', "not valid JSON"),
    "huge integer": (b'{"name": ' + b"9" * 5000 + b"}", "not valid JSON"),
    "deeply nested array": (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
    "deeply nested object": (b'{"a":' * 60_000 + b"1" + b"}" * 60_000, "not valid JSON"),
    "lone surrogate": (b'{"name": "\\ud800"}', "surrogate"),
    "array": (b'[{"name": "x"}]', "must be a JSON object"),
    "empty array": (b"[]", "must be a JSON object"),
    "string": (b'"name"', "must be a JSON object"),
    "number": (b"42", "must be a JSON object"),
    "null": (b"null", "must be a JSON object"),
    "true": (b"true", "must be a JSON object"),
}

# Missing required fields, per endpoint: (body, status, code, message fragment).
MISSING_FIELDS: dict[str, list[tuple[dict[str, Any], int, str, str]]] = {
    "create_connection": [
        ({}, 400, "BAD_REQUEST", "connectorSlug is required"),
        ({"label": "Work"}, 400, "BAD_REQUEST", "connectorSlug is required"),
    ],
    "submit_credentials": [
        ({}, 400, "BAD_REQUEST", "credential field 'bot_token' is required"),
        ({"credentials": {}}, 400, "BAD_REQUEST", "credential field 'bot_token' is required"),
    ],
    "run_action": [
        ({}, 400, "INVALID_INPUT", "'channel'"),
        ({"parameters": {"channel": "#general"}}, 400, "INVALID_INPUT", "'text'"),
    ],
    "connect_once": [
        ({}, 400, "BAD_REQUEST", "action required"),
        ({"token": SLACK_TOKEN}, 400, "BAD_REQUEST", "action required"),
        ({"action": "post_message"}, 400, "BAD_REQUEST", "token required"),
        ({"action": "post_message", "token": SLACK_TOKEN}, 400, "INVALID_INPUT", "'channel'"),
    ],
    "create_agent": [
        ({}, 400, "BAD_REQUEST", "agent name must be"),
        ({"allowedConnectors": ["slack"]}, 400, "BAD_REQUEST", "agent name must be"),
    ],
    # PATCH and key creation have no required field: {} is a no-op / a default-named key.
    "update_agent": [],
    "create_key": [],
}

# Fields of the right name but the wrong type, per endpoint: (body, status, code, message fragment).
WRONG_TYPES: dict[str, list[tuple[dict[str, Any], int, str, str]]] = {
    "create_connection": [
        ({"connectorSlug": 1}, 400, "BAD_REQUEST", "connectorSlug"),
        ({"connectorSlug": ["slack"]}, 400, "BAD_REQUEST", "connectorSlug"),
        ({"connectorSlug": {"slug": "slack"}}, 400, "BAD_REQUEST", "connectorSlug"),
        ({"connectorSlug": True}, 400, "BAD_REQUEST", "connectorSlug"),
        ({"connectorSlug": "slack", "label": ["x"]}, 400, "BAD_REQUEST", "'label' must be a string"),
        ({"connectorSlug": "slack", "label": 3.5}, 400, "BAD_REQUEST", "'label' must be a string"),
    ],
    "submit_credentials": [
        ({"bot_token": {"value": SLACK_TOKEN}}, 400, "BAD_REQUEST", "'bot_token' must be a string"),
        ({"bot_token": [SLACK_TOKEN]}, 400, "BAD_REQUEST", "'bot_token' must be a string"),
        ({"bot_token": 12345}, 400, "BAD_REQUEST", "does not look like a Bot token"),
        ({"bot_token": True}, 400, "BAD_REQUEST", "does not look like a Bot token"),
        ({"bot_token": 1.5}, 400, "BAD_REQUEST", "'bot_token' must be a string"),
        ({"credentials": [SLACK_TOKEN]}, 400, "BAD_REQUEST", "credentials must be a JSON object"),
        ({"credentials": SLACK_TOKEN}, 400, "BAD_REQUEST", "credentials must be a JSON object"),
    ],
    "run_action": [
        ({"parameters": "channel=#general"}, 400, "BAD_REQUEST", "'parameters' must be a JSON object"),
        ({"parameters": ["#general", "hi"]}, 400, "BAD_REQUEST", "'parameters' must be a JSON object"),
        ({"parameters": None}, 400, "BAD_REQUEST", "'parameters' must be a JSON object"),
        ({"parameters": {"channel": 5, "text": "hi"}}, 400, "INVALID_INPUT", "'channel'"),
        ({"parameters": {"channel": "#general", "text": ["hi"]}}, 400, "INVALID_INPUT", "'text'"),
        (
            {"parameters": {"channel": "#general", "text": "hi", "thread_ts": "yesterday"}},
            400,
            "INVALID_INPUT",
            "'thread_ts'",
        ),
    ],
    "connect_once": [
        ({"action": 5, "token": SLACK_TOKEN}, 400, "BAD_REQUEST", "action must be a string"),
        (
            {"action": {"name": "post_message"}, "token": SLACK_TOKEN},
            400,
            "BAD_REQUEST",
            "action must be a string",
        ),
        (
            {"action": "post_message", "token": [SLACK_TOKEN]},
            400,
            "BAD_REQUEST",
            "'bot_token' must be a string",
        ),
        (
            {"action": "post_message", "token": {"t": SLACK_TOKEN}},
            400,
            "BAD_REQUEST",
            "'bot_token' must be a string",
        ),
        (
            {"action": "post_message", "credentials": SLACK_TOKEN},
            400,
            "BAD_REQUEST",
            "credentials must be a JSON object",
        ),
        (
            {"action": "post_message", "token": SLACK_TOKEN, "params": []},
            400,
            "INVALID_INPUT",
            "params must be a JSON object",
        ),
        (
            {"action": "post_message", "token": SLACK_TOKEN, "params": "x"},
            400,
            "INVALID_INPUT",
            "params must be a JSON object",
        ),
    ],
    "create_agent": [
        ({"name": 5}, 400, "BAD_REQUEST", "agent name must be"),
        ({"name": ["bot"]}, 400, "BAD_REQUEST", "agent name must be"),
        (
            {"name": "bot", "allowedConnectors": "slack"},
            400,
            "BAD_REQUEST",
            "allowedConnectors must be a list",
        ),
        (
            {"name": "bot", "allowedConnectors": {"slack": True}},
            400,
            "BAD_REQUEST",
            "allowedConnectors must be a list",
        ),
        (
            {"name": "bot", "allowedConnectors": [["slack"]]},
            400,
            "BAD_REQUEST",
            "allowedConnectors must be a list",
        ),
        ({"name": "bot", "allowedConnectors": None}, 400, "BAD_REQUEST", "allowedConnectors must be a list"),
    ],
    "update_agent": [
        ({"name": 5}, 400, "BAD_REQUEST", "agent name must be"),
        ({"name": {"first": "x"}}, 400, "BAD_REQUEST", "agent name must be"),
        ({"allowedConnectors": "slack"}, 400, "BAD_REQUEST", "allowedConnectors must be a list"),
        ({"allowedConnectors": [None]}, 400, "BAD_REQUEST", "allowedConnectors must be a list"),
        ({"allowedConnectors": 1}, 400, "BAD_REQUEST", "allowedConnectors must be a list"),
        ({"keyPrefix": "tdl_"}, 400, "BAD_REQUEST", "unknown field(s): keyPrefix"),
    ],
    "create_key": [
        ({"name": 5}, 400, "BAD_REQUEST", "key name must be"),
        ({"name": ["ci"]}, 400, "BAD_REQUEST", "key name must be"),
        ({"name": "ci", "permissions": "read"}, 400, "BAD_REQUEST", "permissions must be a list of strings"),
        ({"name": "ci", "permissions": [None]}, 400, "BAD_REQUEST", "permissions must be a list of strings"),
        (
            {"name": "ci", "permissions": {"read": True}},
            400,
            "BAD_REQUEST",
            "permissions must be a list of strings",
        ),
        ({"name": "ci", "permissions": ["superuser"]}, 400, "BAD_REQUEST", "unknown permission(s)"),
    ],
}

# A valid body per endpoint; the type sweep below swaps one field at a time for an odd value.
VALID_BODIES: dict[str, dict[str, Any]] = {
    "create_connection": {"connectorSlug": "slack", "label": "Sweep"},
    "submit_credentials": {"bot_token": SLACK_TOKEN},
    "run_action": {"parameters": {"channel": "#general", "text": "sweep"}},
    "connect_once": {
        "action": "post_message",
        "token": SLACK_TOKEN,
        "params": {"channel": "#general", "text": "x"},
    },
    "create_agent": {"name": "sweep", "allowedConnectors": ["slack"]},
    "update_agent": {"name": "target", "allowedConnectors": ["slack"]},
    "create_key": {"name": "sweep", "permissions": ["read"]},
}
# Fields each endpoint reads, including optional ones a valid body leaves out.
FIELDS: dict[str, list[str]] = {
    "create_connection": ["connectorSlug", "label"],
    "submit_credentials": ["bot_token", "credentials"],
    "run_action": ["parameters"],
    "connect_once": ["action", "token", "params", "credentials"],
    "create_agent": ["name", "allowedConnectors"],
    "update_agent": ["name", "allowedConnectors"],
    "create_key": ["name", "permissions"],
}
ODD_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1.5,
    10**30,
    "",
    " ",
    "x",
    "\u0000",
    "\u202e\U0001f600",
    "x" * 100_000,
    [],
    [None],
    ["x", 1, {}],
    {},
    {"x": None},
    {"bot_token": SLACK_TOKEN},
    {"channel": "#general", "text": {"nested": True}},
]


@dataclass
class Target:
    owner: Owner
    connection_id: str
    agent_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.owner.api_key}"}

    def path(self, endpoint: str) -> tuple[str, str]:
        method, template = BODY_ENDPOINTS[endpoint]
        return method, template.format(connection=self.connection_id, agent=self.agent_id)


@pytest.fixture
async def target(tendril: Tendril, fakes: Fakes) -> Target:
    owner = await tendril.new_owner()
    client = tendril.client(owner.api_key)
    started = await client.create_connection("slack")
    await client.submit_credentials(started.connection.id, {"bot_token": SLACK_TOKEN})
    agent = await client.create_agent("target", ["slack"])
    return Target(owner, started.connection.id, agent.agent.id)


def problems_with(response: httpx.Response, status: int | None = None, code: str | None = None) -> list[str]:
    """Why `response` is not a proper client error (empty when it is)."""
    found: list[str] = []
    if not 400 <= response.status_code < 500:
        found.append(f"status {response.status_code}")
    if status is not None and response.status_code != status:
        found.append(f"status {response.status_code} != {status}")
    try:
        body = response.json()
    except ValueError:
        return [*found, f"not JSON: {response.text[:120]!r}"]
    if not isinstance(body, dict):
        return [*found, f"not an object: {body!r}"]
    if not isinstance(body.get("error"), str) or not body["error"]:
        found.append(f"no readable error: {body}")
    if not isinstance(body.get("code"), str) or not body["code"]:
        found.append(f"no code: {body}")
    if code is not None and body.get("code") != code:
        found.append(f"code {body.get('code')} != {code}")
    return found


def assert_client_error(
    response: httpx.Response, status: int | None = None, code: str | None = None, fragment: str | None = None
) -> None:
    problems = problems_with(response, status, code)
    assert not problems, (response.request.method, response.request.url.path, problems, response.text[:300])
    if fragment is not None:
        assert fragment in response.json()["error"], response.json()


async def send(
    http: httpx.AsyncClient,
    target: Target,
    endpoint: str,
    content: Any,
    content_type: str = "application/json",
) -> httpx.Response:
    method, path = target.path(endpoint)
    return await http.request(
        method, path, content=content, headers={**target.headers, "Content-Type": content_type}
    )


# -- bodies that are not a JSON object --------------------------------------------------------------
@pytest.mark.parametrize("endpoint", BODY_ENDPOINTS)
async def test_every_body_endpoint_refuses_malformed_or_non_object_json_with_a_400(
    tendril: Tendril, target: Target, endpoint: str
) -> None:
    failures: list[str] = []
    async with tendril.raw() as http:
        for case, (body, fragment) in NOT_A_JSON_OBJECT.items():
            response = await send(http, target, endpoint, body)
            problems = problems_with(response, 400, "BAD_REQUEST")
            if not problems and fragment not in response.json()["error"]:
                problems.append(f"message {response.json()['error']!r} lacks {fragment!r}")
            if problems:
                failures.append(f"{case}: {problems}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("endpoint", BODY_ENDPOINTS)
@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/xml"],
)
async def test_every_body_endpoint_refuses_a_non_json_content_type_with_a_415(
    tendril: Tendril, target: Target, endpoint: str, content_type: str
) -> None:
    async with tendril.raw() as http:
        response = await send(http, target, endpoint, b'{"name": "x"}', content_type)
    assert_client_error(response, 415, "UNSUPPORTED_MEDIA_TYPE", "application/json")


async def test_json_content_types_with_parameters_or_a_json_suffix_are_accepted(
    tendril: Tendril, target: Target
) -> None:
    async with tendril.raw() as http:
        charset = await send(
            http, target, "create_key", b'{"name": "one"}', "application/json; charset=utf-8"
        )
        upper = await send(http, target, "create_key", b'{"name": "two"}', "Application/JSON")
        merge_patch = await send(
            http, target, "update_agent", b'{"name": "renamed"}', "application/merge-patch+json"
        )
    assert charset.status_code == 201, charset.text
    assert upper.status_code == 201, upper.text
    assert merge_patch.status_code == 200, merge_patch.text


# -- oversized bodies ---------------------------------------------------------------------------
def oversized_body() -> bytes:
    return b'{"name": "' + b"x" * LIMIT + b'"}'


async def streamed(data: bytes, chunk: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), chunk):
        yield data[start : start + chunk]


@pytest.mark.parametrize("endpoint", BODY_ENDPOINTS)
async def test_every_body_endpoint_refuses_a_body_over_1_mib_declared_by_content_length(
    tendril: Tendril, target: Target, endpoint: str
) -> None:
    async with tendril.raw() as http:
        response = await send(http, target, endpoint, oversized_body())
    assert response.request.headers["content-length"] == str(LIMIT + 12)
    assert_client_error(response, 413, "PAYLOAD_TOO_LARGE", f"larger than {LIMIT} bytes")


@pytest.mark.parametrize("endpoint", BODY_ENDPOINTS)
async def test_every_body_endpoint_refuses_a_streamed_body_over_1_mib_without_content_length(
    tendril: Tendril, target: Target, endpoint: str
) -> None:
    async with tendril.raw() as http:
        response = await send(http, target, endpoint, streamed(oversized_body()))
    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert_client_error(response, 413, "PAYLOAD_TOO_LARGE", f"larger than {LIMIT} bytes")


async def test_a_streamed_body_that_is_not_json_and_too_large_is_still_413(
    tendril: Tendril, target: Target
) -> None:
    async with tendril.raw() as http:
        response = await send(
            http, target, "create_connection", streamed(b"\x00" * (3 * LIMIT)), "text/plain"
        )
    assert_client_error(response, 413, "PAYLOAD_TOO_LARGE")


async def test_a_body_of_exactly_1_mib_is_accepted_and_one_byte_more_is_not(
    tendril: Tendril, target: Target
) -> None:
    payload = b'{"connectorSlug": "telegram"}'
    exact = payload + b" " * (LIMIT - len(payload))
    assert len(exact) == LIMIT
    async with tendril.raw() as http:
        over = await send(http, target, "create_connection", exact + b" ")
        over_streamed = await send(http, target, "create_connection", streamed(exact + b" "))
        accepted = await send(http, target, "create_connection", exact)
        accepted_streamed = await send(http, target, "create_connection", streamed(exact))
    assert_client_error(over, 413, "PAYLOAD_TOO_LARGE")
    assert_client_error(over_streamed, 413, "PAYLOAD_TOO_LARGE")
    assert accepted.status_code == 201, accepted.text
    assert accepted_streamed.status_code == 200, accepted_streamed.text  # the same pending connection


# -- missing fields and wrong types -------------------------------------------------------------------
@pytest.mark.parametrize("endpoint", BODY_ENDPOINTS)
async def test_every_body_endpoint_names_a_missing_required_field(
    tendril: Tendril, target: Target, fakes: Fakes, endpoint: str
) -> None:
    failures: list[str] = []
    async with tendril.raw() as http:
        for body, status, code, fragment in MISSING_FIELDS[endpoint]:
            response = await send(http, target, endpoint, json.dumps(body).encode())
            problems = problems_with(response, status, code)
            if not problems and fragment not in response.json()["error"]:
                problems.append(f"message {response.json()['error']!r} lacks {fragment!r}")
            if problems:
                failures.append(f"{body}: {problems}")
    assert not failures, "\n".join(failures)
    assert fakes.slack.messages == []


@pytest.mark.parametrize("endpoint", BODY_ENDPOINTS)
async def test_every_body_endpoint_refuses_fields_of_the_wrong_type_saying_which(
    tendril: Tendril, target: Target, fakes: Fakes, endpoint: str
) -> None:
    failures: list[str] = []
    async with tendril.raw() as http:
        for body, status, code, fragment in WRONG_TYPES[endpoint]:
            response = await send(http, target, endpoint, json.dumps(body).encode())
            problems = problems_with(response, status, code)
            if not problems and fragment not in response.json()["error"]:
                problems.append(f"message {response.json()['error']!r} lacks {fragment!r}")
            if problems:
                failures.append(f"{body}: {problems}")
            # A token sent in the wrong place is never echoed back.
            if SLACK_TOKEN in response.text:
                failures.append(f"{body}: response echoes the token")
    assert not failures, "\n".join(failures)
    assert fakes.slack.messages == []


@pytest.mark.parametrize("endpoint", BODY_ENDPOINTS)
async def test_no_value_of_any_type_in_any_field_causes_a_server_error(
    tendril: Tendril, target: Target, endpoint: str
) -> None:
    failures: list[str] = []
    async with tendril.raw() as http:
        for field in FIELDS[endpoint]:
            for value in ODD_VALUES:
                for alone in (True, False):
                    body = {field: value} if alone else {**VALID_BODIES[endpoint], field: value}
                    response = await send(http, target, endpoint, json.dumps(body).encode())
                    if response.status_code >= 400:
                        problems = problems_with(response)
                    elif response.status_code >= 300:
                        problems = [f"status {response.status_code}"]
                    else:
                        problems = []
                    if problems:
                        failures.append(f"{field}={str(value)[:40]!r} alone={alone}: {problems}")
    assert not failures, "\n".join(failures)


# -- malformed ids ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("method", "template", "what"), ID_ROUTES, ids=[f"{m} {t}" for m, t, _ in ID_ROUTES])
async def test_every_id_route_answers_a_malformed_uuid_with_400_bad_request(
    tendril: Tendril, target: Target, method: str, template: str, what: str
) -> None:
    failures: list[str] = []
    async with tendril.raw() as http:
        for bad in MALFORMED_IDS:
            body = {} if method in ("POST", "PATCH") else None
            response = await http.request(method, template.format(id=bad), json=body, headers=target.headers)
            problems = problems_with(response, 400, "BAD_REQUEST")
            if not problems and f"malformed {what}" not in response.json()["error"]:
                problems.append(f"message {response.json()['error']!r} does not say 'malformed {what}'")
            if problems:
                failures.append(f"{bad[:40]!r}: {problems}")
    assert not failures, "\n".join(failures)


async def test_a_malformed_id_is_reported_before_the_body_is_judged(tendril: Tendril, target: Target) -> None:
    async with tendril.raw() as http:
        credentials = await http.post(
            "/api/v1/connections/nope/credentials", content=b"[not json", headers=target.headers
        )
        action = await http.post(
            "/api/v1/connections/nope/actions/post_message", content=b"[not json", headers=target.headers
        )
        agent = await http.patch("/api/v1/agents/nope", content=b"[not json", headers=target.headers)
    for response in (credentials, action, agent):
        assert_client_error(response, 400, "BAD_REQUEST", "malformed")


# -- unknown slugs ---------------------------------------------------------------------------------
UNKNOWN_SLUGS = [
    "fax",
    "Slack",
    "slack ",
    " slack",
    "slack_",
    "../slack",
    "sl%ck",
    "x" * 300,
    "\u00e9t\u00e9",
]


async def test_an_unknown_connector_slug_is_a_clear_4xx_everywhere_a_slug_is_taken(
    tendril: Tendril, target: Target
) -> None:
    failures: list[str] = []
    async with tendril.raw() as http:
        for slug in UNKNOWN_SLUGS:
            checks = [
                (
                    await http.post(
                        "/api/v1/connections", json={"connectorSlug": slug}, headers=target.headers
                    ),
                    400,
                    "BAD_REQUEST",
                    "unknown connector slug",
                ),
                (
                    await http.post(
                        "/api/v1/agents",
                        json={"name": "x", "allowedConnectors": [slug]},
                        headers=target.headers,
                    ),
                    400,
                    "BAD_REQUEST",
                    "unknown connector slug(s)",
                ),
                (
                    await http.patch(
                        f"/api/v1/agents/{target.agent_id}",
                        json={"allowedConnectors": [slug]},
                        headers=target.headers,
                    ),
                    400,
                    "BAD_REQUEST",
                    "unknown connector slug(s)",
                ),
            ]
            if "/" not in slug and "%" not in slug:
                checks.append(
                    (
                        await http.post(
                            f"/api/v1/connect/{slug}",
                            json={"action": "post_message", "token": SLACK_TOKEN},
                            headers=target.headers,
                        ),
                        404,
                        "NOT_FOUND",
                        "unknown connector",
                    )
                )
            for response, status, code, fragment in checks:
                problems = problems_with(response, status, code)
                if not problems and fragment not in response.json()["error"]:
                    problems.append(f"message {response.json()['error']!r} lacks {fragment!r}")
                if problems:
                    failures.append(
                        f"{response.request.method} {response.request.url.path} {slug[:20]!r}: {problems}"
                    )
    assert not failures, "\n".join(failures)
    agent = await tendril.client(target.owner.api_key).agent(target.agent_id)
    assert agent.allowed_connectors == ["slack"]


async def test_an_unknown_action_on_a_connection_is_a_400_naming_it(tendril: Tendril, target: Target) -> None:
    async with tendril.raw() as http:
        response = await http.post(
            f"/api/v1/connections/{target.connection_id}/actions/delete_workspace",
            json={"parameters": {}},
            headers=target.headers,
        )
    assert_client_error(response, 400, "BAD_REQUEST", "unknown action: delete_workspace")


# -- routes that do not exist --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/nothing-here"),
        ("GET", "/api/v2/connections"),
        ("OPTIONS", "/api/v1/whatever"),
    ],
)
async def test_an_unknown_api_route_is_a_json_404(
    tendril: Tendril, target: Target, method: str, path: str
) -> None:
    async with tendril.raw() as http:
        response = await http.request(method, path, headers=target.headers)
    assert_client_error(response, 404, "NOT_FOUND", "no API route")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/api/v1/connections", "GET, HEAD, POST"),
        ("PUT", "/api/v1/connections/6f1c3c55-2f4e-4d8e-9a61-0c7cf0d7c1a1", "DELETE, GET, HEAD, PATCH"),
        ("GET", "/api/v1/connections/6f1c3c55-2f4e-4d8e-9a61-0c7cf0d7c1a1/credentials", "POST"),
        ("DELETE", "/api/v1/connectors", "GET, HEAD, POST"),
        # Methods no route takes stay in the API too (they once fell through to /mcp).
        ("TRACE", "/api/v1/connections", "GET, HEAD, POST"),
        ("QUERY", "/api/v1/agents", "GET, HEAD, POST"),
        ("PUT", "/connectors", "GET, HEAD, POST"),
        ("PATCH", "/connectors", "GET, HEAD, POST"),
    ],
)
async def test_a_wrong_method_on_a_real_route_is_a_json_405_naming_the_allowed_ones(
    tendril: Tendril, target: Target, method: str, path: str, allowed: str
) -> None:
    async with tendril.raw() as http:
        response = await http.request(method, path, headers=target.headers)
    assert_client_error(response, 405, "METHOD_NOT_ALLOWED", f"use {allowed}")
    assert response.headers["allow"] == allowed


async def test_bad_input_never_leaves_the_owner_with_stray_records(tendril: Tendril, target: Target) -> None:
    async with tendril.raw() as http:
        for body, _ in NOT_A_JSON_OBJECT.values():
            await send(http, target, "create_connection", body)
            await send(http, target, "create_agent", body)
            await send(http, target, "create_key", body)
        await send(http, target, "create_connection", streamed(oversized_body()))
    client = tendril.client(target.owner.api_key)
    assert [c.id for c in await client.connections()] == [target.connection_id]
    assert [a.id for a in await client.agents()] == [target.agent_id]
    assert len(await client.keys()) == 1
