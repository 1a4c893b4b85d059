"""The isolation matrix, generated from the app's route table: every REST route (the ones `@api`
declares) and every page (the ones `@signed_in` declares), driven at Alice's things with Bob's key,
with an Alice key that lacks the route's permission, with Alice's agent key, and with nothing.

None of them may read or change what is Alice's. A new route joins by existing: if the matrix
cannot fill one of its path parameters or has no sample body for its model, it fails, saying which.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from starlette.routing import Route

from auth.api_keys import Permission
from server.web.api.actions import AlloyCall, ConnectOnce
from server.web.api.agents import AgentChanges, ApiKeyChanges, NewAgent, NewApiKey
from server.web.api.connections import CredentialSubmission, RunAction, StartConnection, UpdateConnection
from server.web.api.credentials import CREDENTIAL_ID, CredentialChanges, NewConnectorInstance, NewCredential
from server.web.api.endpoint import ApiSpec
from server.web.api.executions import ExecuteWorkflow, ExecutionAction
from server.web.api.files import NewFileConnector
from server.web.api.outgoing_webhooks import NewOutgoingWebhook, OutgoingWebhookChanges
from server.web.api.webhooks import DeliveryTarget, NewEndpoint
from server.web.api.workflow_triggers import NewTrigger, TriggerChanges
from server.web.api.workflows import NewWorkflow, WorkflowChanges
from tests.conftest import TELEGRAM_TOKEN, Fakes, Tendril
from tests.security.world import SENTINEL, World, build_world
from tests.support.browser_http import BrowserLike, csrf_of

pytestmark = pytest.mark.anyio

# A key of Alice's that lacks each permission (admin is only ever held whole).
LACKING: dict[Permission, str] = {"read": "write", "write": "read", "execute": "read", "admin": "basic"}


def sample_bodies(world: World) -> dict[type[Any], Any]:
    """A valid body per request model: what an honest owner would send, aimed at Alice's things."""
    ids = world.ids
    return {
        StartConnection: {"connectorSlug": "telegram", "label": "from the matrix"},
        UpdateConnection: {"label": "renamed by the matrix"},
        CredentialSubmission: {"bot_token": TELEGRAM_TOKEN},
        RunAction: {"parameters": {"chat_id": 123456789, "text": "from the matrix"}},
        AlloyCall: {"credentialId": ids["connection"], "parameters": {}},
        ConnectOnce: {"action": "get_me", "token": TELEGRAM_TOKEN},
        NewAgent: {"name": "matrix-agent", "allowedConnectors": ["telegram"]},
        AgentChanges: {"name": "renamed-by-matrix"},
        NewApiKey: {"name": "matrix-key", "permissions": ["read"]},
        ApiKeyChanges: {"rateLimit": 1},
        NewEndpoint: {"provider": "github", "secrets": {"secret": "matrix-secret"}},
        DeliveryTarget: {"url": "https://push.example/jobs", "secret": "matrix-secret-0123456789"},
        NewFileConnector: {"name": "matrix file", "type": "local_file"},
        NewCredential: {
            "name": "matrix credential",
            "provider": "telegram",
            "data": {"bot_token": TELEGRAM_TOKEN},
        },
        CredentialChanges: {"name": "renamed by the matrix"},
        NewWorkflow: {
            "name": "matrix workflow",
            "definition": {
                "steps": [
                    {
                        "name": "notify",
                        "type": "action",
                        "config": {"connectionId": ids["connection"], "action": "send_message"},
                    }
                ]
            },
            "isPublic": True,
        },
        WorkflowChanges: {"name": "renamed by the matrix", "isPublic": False},
        ExecuteWorkflow: {"input": {"text": "from the matrix"}},
        ExecutionAction: {"action": "cancel"},
        NewTrigger: {"kind": "event", "eventKey": "github.issues.opened", "endpointId": ids["endpoint"]},
        TriggerChanges: {"active": True, "eventKey": "github.issues.closed"},
        NewOutgoingWebhook: {
            "name": "matrix hook",
            "url": "https://matrix-hooks.example/in",
            "events": ["workflow.completed", "workflow.failed"],
            "headers": {"X-Custom-Header": "value"},
            "retryPolicy": {"maxAttempts": 3, "backoffMs": 1000},
        },
        OutgoingWebhookChanges: {"name": "renamed by the matrix", "headers": None, "active": False},
        NewConnectorInstance: {
            "name": "matrix instance",
            "type": "telegram",
            "credentialId": ids["credential"],
        },
    }


def fill(template: str, spec: ApiSpec | None, world: World) -> str:
    """Alice's thing for each path parameter (the id's kind comes from the route's declaration)."""
    kinds = {
        "connection id": world.ids["connection"],
        "agent id": world.ids["agent"],
        "key id": world.ids["key"],
        "endpoint id": world.ids["endpoint"],
        "job id": world.ids["job"],
        "workflow id": world.ids["workflow"],
        "execution id": world.ids["execution"],
        "trigger id": world.ids["trigger"],
        "webhook id": world.ids["outgoing_webhook"],
        "delivery id": world.ids["outgoing_delivery"],
    }
    values = {name: kinds[what] for name, what in (spec.ids.items() if spec else ())}
    if spec and spec.path.get("id") == CREDENTIAL_ID:
        values["id"] = world.ids["credential"]
    values |= {
        "action": "send_message",
        "connector": "telegram",
        "ref": world.ids["file"],
    }
    path = template
    while "{" in path:
        name = path.split("{", 1)[1].split("}", 1)[0]
        assert name in values, f"the matrix has no value for path parameter {{{name}}} of {template}"
        path = path.replace(f"{{{name}}}", values[name])
    return path


@dataclass(frozen=True)
class Probe:
    method: str
    path: str
    template: str
    permission: Permission
    body: Any
    targets_alice: bool  # the route names one of Alice's things


def api_probes(world: World) -> list[Probe]:
    probes = []
    bodies = sample_bodies(world)
    for route in world.tendril.app.router.routes:
        spec: ApiSpec | None = getattr(getattr(route, "endpoint", None), "api", None)
        if not isinstance(route, Route) or spec is None:
            continue
        for method in sorted((route.methods or set()) - {"HEAD"}):
            if spec.body is not None:
                assert spec.body in bodies, (
                    f"the matrix has no sample body for {spec.body.__name__} ({route.path})"
                )
            body = bodies.get(spec.body) if spec.body else None
            targets = (
                bool(spec.ids)
                or "{ref}" in route.path
                or spec.path.get("id") == CREDENTIAL_ID
                or spec.body in (AlloyCall, NewConnectorInstance, NewWorkflow)
            )
            probes.append(
                Probe(method, fill(route.path, spec, world), route.path, spec.permission, body, targets)
            )
    assert len(probes) > 30
    return probes


async def send(http: httpx.AsyncClient, probe: Probe, headers: dict[str, str]) -> httpx.Response:
    if probe.path.endswith(":upload"):
        return await http.request(probe.method, probe.path, content=b"matrix upload\n", headers=headers)
    return await http.request(probe.method, probe.path, json=probe.body, headers=headers)


@pytest.fixture
async def world(hub_app: Tendril, fakes: Fakes) -> AsyncIterator[World]:
    yield await build_world(hub_app)


async def test_every_api_route_keeps_alice_s_things_from_bob(world: World) -> None:
    before = await world.alice_state()
    problems = []
    async with world.tendril.raw() as http:
        for probe in api_probes(world):
            answer = await send(http, probe, {"X-Api-Key": world.bob.api_key})
            if leaked := world.leaked(answer.text):
                problems.append(f"{probe.method} {probe.template}: Bob saw {leaked}")
            if probe.targets_alice and answer.status_code not in (400, 404):
                problems.append(f"{probe.method} {probe.template}: Bob got {answer.status_code}")
    assert problems == []
    assert await world.alice_state() == before


async def test_every_api_route_refuses_an_alice_key_without_its_permission(world: World) -> None:
    before = await world.alice_state()
    problems = []
    async with world.tendril.raw() as http:
        for probe in api_probes(world):
            key = world.keys[LACKING[probe.permission]]
            answer = await send(http, probe, {"X-Api-Key": key})
            if answer.status_code != 403 or answer.json().get("code") != "FORBIDDEN":
                problems.append(f"{probe.method} {probe.template} ({probe.permission}): {answer.status_code}")
    assert problems == []
    assert await world.alice_state() == before


async def test_every_api_route_refuses_an_agent_key_and_no_key(world: World) -> None:
    before = await world.alice_state()
    problems = []
    async with world.tendril.raw() as http:
        for probe in api_probes(world):
            for who, headers in (
                ("agent key", {"Authorization": f"Bearer {world.agent_key}"}),
                ("no key", {}),
            ):
                answer = await send(http, probe, headers)
                if answer.status_code != 401 or world.leaked(answer.text):
                    problems.append(f"{probe.method} {probe.template} with {who}: {answer.status_code}")
    assert problems == []
    assert await world.alice_state() == before


# -- pages -------------------------------------------------------------------------------------------
def page_probes(world: World) -> list[Probe]:
    forms = {
        "/dashboard/connections": {"connector": "telegram"},
        "/connect/{id}": {"bot_token": TELEGRAM_TOKEN},
        "/dashboard/agents": {"name": "matrix-agent", "allowed": "telegram"},
        "/dashboard/agents/{agent_id}": {"name": "renamed-by-matrix", "allowed": "telegram"},
        "/dashboard/keys": {"name": "matrix-key", "permissions": "read"},
    }
    probes = []
    for route in world.tendril.app.router.routes:
        permission = getattr(getattr(route, "endpoint", None), "permission", None)
        if not isinstance(route, Route) or permission is None:
            continue
        for method in sorted((route.methods or set()) - {"HEAD"}):
            path = route.path
            for name, value in (
                ("{id}", world.ids["connection"]),
                ("{job_id}", world.ids["job"]),
                ("{endpoint_id}", world.ids["endpoint"]),
                ("{agent_id}", world.ids["agent"]),
                ("{key_id}", world.ids["key"]),
                ("{execution_id}", world.ids["execution"]),
            ):
                path = path.replace(name, value)
            assert "{" not in path, f"the matrix has no value for a path parameter of page {route.path}"
            if route.path.endswith("/oauth/start"):
                path += f"?connector=telegram&connection={world.ids['connection']}"
            if route.path.endswith("/oauth/callback"):
                path += f"?state=matrix-{SENTINEL}-state&code=matrix-code"
            body = forms.get(route.path, {}) if method == "POST" else None
            probes.append(Probe(method, path, route.path, permission, body, "{" in route.path))
    assert len(probes) >= 10
    return probes


async def page_request(browser: BrowserLike, probe: Probe, csrf: str) -> httpx.Response:
    if probe.method == "POST":
        return await browser.tendril.post(probe.path, data={**probe.body, "csrf": csrf})
    return await browser.tendril.get(probe.path)


async def test_every_page_keeps_alice_s_things_from_bob_s_session(world: World) -> None:
    before = await world.alice_state()
    problems = []
    async with BrowserLike(world.tendril.transport()) as browser:
        await browser.sign_in(world.bob.api_key)
        csrf = csrf_of((await browser.get("/dashboard")).text)
        for probe in page_probes(world):
            answer = await page_request(browser, probe, csrf)
            leaked = [v for v in world.leaked(answer.text) if v != f"matrix-{SENTINEL}-state"]
            if leaked:
                problems.append(f"{probe.method} {probe.template}: Bob saw {leaked}")
            if probe.targets_alice and answer.status_code < 400:
                problems.append(f"{probe.method} {probe.template}: Bob got {answer.status_code}")
    assert problems == []
    assert await world.alice_state() == before


async def test_every_page_refuses_a_session_whose_key_lacks_its_permission(world: World) -> None:
    before = await world.alice_state()
    problems = []
    for probe in page_probes(world):
        async with BrowserLike(world.tendril.transport()) as browser:
            await browser.sign_in(world.keys[LACKING[probe.permission]])
            answer = await page_request(browser, probe, "refused-before-it-is-read")
            if answer.status_code != 403:
                problems.append(f"{probe.method} {probe.template} ({probe.permission}): {answer.status_code}")
    assert problems == []
    assert await world.alice_state() == before


async def test_every_page_sends_a_stranger_to_sign_in(world: World) -> None:
    problems = []
    async with BrowserLike(world.tendril.transport()) as browser:
        for probe in page_probes(world):
            answer = await page_request(browser, probe, "none")
            if answer.status_code != 303 or not answer.headers["location"].startswith("/signin"):
                problems.append(f"{probe.method} {probe.template}: {answer.status_code}")
    assert problems == []
