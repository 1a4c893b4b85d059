"""Outgoing webhooks as the Integration Layer documents them: made and managed over REST, events
delivered signed (checked by Node running the seed's own verifySignature), with custom headers,
retried as the retry policy says, then dead; redelivered; never to internal addresses; never shown
to another owner; the secret and header values never in answers or logs."""

from __future__ import annotations

import base64
import json
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from server.logs import install_redaction
from server.settings import ConnectorSettings, Settings
from storage import db
from storage.outgoing import NewOutgoingDelivery, OutgoingStore
from tests.conftest import TELEGRAM_TOKEN, Fakes, Owner, Tendril, running_tendril
from tests.fakes.loopback import run_asgi_on_loopback
from tests.support.core import prepared_core
from tests.support.node_tools import node_bin, node_env

pytestmark = pytest.mark.anyio

HEADER_CANARY = "receiver-credential-Canary-77aa19"

# The Integration Layer API document's snippet ("Verifying Webhook Signatures"), verbatim.
VERIFY_SIGNATURE_JS = """
const crypto = require('crypto');

function verifySignature(payload, signature, secret) {
  const expectedSignature = crypto
    .createHmac('sha256', secret)
    .update(payload)
    .digest('hex');
  
  return crypto.timingSafeEqual(
    Buffer.from(signature),
    Buffer.from(expectedSignature)
  );
}
"""
# Reads {body (base64 of the raw bytes), signature, secret} on stdin; prints valid or invalid.
NODE_CHECK = (
    VERIFY_SIGNATURE_JS
    + """
const input = JSON.parse(require('fs').readFileSync(0, 'utf8'));
const payload = Buffer.from(input.body, 'base64');
console.log(verifySignature(payload, input.signature, input.secret) ? 'valid' : 'invalid');
"""
)


@dataclass
class Received:
    body: bytes
    headers: dict[str, str]


@dataclass
class Receiver:
    """The owner's app: records every request; answers `answers` in turn, then 200."""

    answers: list[int] = field(default_factory=list[int])
    received: list[Received] = field(default_factory=list[Received])

    async def endpoint(self, request: Request) -> Response:
        self.received.append(Received(await request.body(), dict(request.headers)))
        status = self.answers.pop(0) if self.answers else 200
        return JSONResponse({"status": status}, status_code=status)


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    app_side = Receiver()
    with run_asgi_on_loopback(
        Starlette(routes=[Route("/webhook", app_side.endpoint, methods=["POST"])])
    ) as url:
        yield app_side, f"{url}/webhook"


def allowing_loopback(settings: Settings) -> Settings:
    """The receiver runs on loopback, which the egress guard opens only when told to."""
    return settings.model_copy(update={"push_allowed_hosts": "127.0.0.1", "push_poll_seconds": 0.1})


@pytest.fixture
async def hub(settings: Settings) -> AsyncIterator[Tendril]:
    async with running_tendril(allowing_loopback(settings)) as tendril:
        yield tendril


@pytest.fixture
async def owner(hub: Tendril) -> Owner:
    return await hub.new_owner()


@pytest.fixture
async def http(hub: Tendril, owner: Owner) -> AsyncIterator[httpx.AsyncClient]:
    async with hub.raw() as client:
        client.headers["X-Api-Key"] = owner.api_key
        yield client


def seed_request(url: str, **changes: Any) -> dict[str, Any]:
    """The seed's Create Webhook body, host changed."""
    return {
        "name": "Workflow Completed Hook",
        "url": url,
        "events": ["workflow.completed", "workflow.failed"],
        "headers": {"X-Custom-Header": "value", "Authorization": f"Bearer {HEADER_CANARY}"},
        "retryPolicy": {"maxAttempts": 3, "backoffMs": 1000},
    } | changes


@dataclass(frozen=True)
class Finished:
    owner_id: uuid.UUID
    workflow_id: uuid.UUID
    execution_id: uuid.UUID
    status: str
    output: Any
    error: Any = None


async def finish_workflow(hub: Tendril, owner: Owner, status: str = "completed", **output: Any) -> Finished:
    """What the executions use case tells its on_finished listeners when an execution ends."""
    finished = Finished(
        uuid.UUID(owner.id),
        uuid.uuid4(),
        uuid.uuid4(),
        status,
        output or {"ok": True},
        {"message": "step1 failed"} if status == "failed" else None,
    )
    await hub.core.outgoing.workflow_finished(finished)
    return finished


async def deliveries(http: httpx.AsyncClient, webhook_id: str) -> list[dict[str, Any]]:
    answer = await http.get(f"/api/v1/webhooks/{webhook_id}/deliveries")
    assert answer.status_code == 200, answer.text
    return answer.json()["deliveries"]


async def settled(http: httpx.AsyncClient, webhook_id: str, count: int = 1) -> list[dict[str, Any]]:
    """Once `count` deliveries are delivered or dead."""
    with anyio.fail_after(30):
        while True:
            found = await deliveries(http, webhook_id)
            if len(found) >= count and all(d["status"] in ("delivered", "dead") for d in found):
                return found
            await anyio.sleep(0.05)


async def node_verifies(body: bytes, signature: str, secret: str) -> str:
    given = json.dumps({"body": base64.b64encode(body).decode(), "signature": signature, "secret": secret})
    with anyio.fail_after(30):
        done = await anyio.run_process(
            [str(node_bin()), "-e", NODE_CHECK], input=given.encode(), env=node_env(), check=True
        )
    return done.stdout.decode().strip()


# -- managing --------------------------------------------------------------------------------------
@pytest.mark.timeout(60)
async def test_the_seed_request_makes_a_webhook_whose_secret_is_shown_once(
    http: httpx.AsyncClient, receiver: tuple[Receiver, str]
) -> None:
    _, url = receiver
    made = await http.post("/api/v1/webhooks", json=seed_request(url))
    assert made.status_code == 201, made.text
    webhook, secret = made.json()["webhook"], made.json()["secret"]
    assert secret.startswith("whsec_") and len(secret) > 40
    assert webhook["events"] == ["workflow.completed", "workflow.failed"]
    assert webhook["retryPolicy"] == {"maxAttempts": 3, "backoffMs": 1000}
    assert webhook["headers"] == {"X-Custom-Header": "****", "Authorization": "****"}
    assert webhook["active"] is True

    shown = [
        await http.get("/api/v1/webhooks"),
        await http.get(f"/api/v1/webhooks/{webhook['id']}"),
        await http.patch(
            f"/api/v1/webhooks/{webhook['id']}", json={"name": "renamed", "events": ["workflow.*"]}
        ),
    ]
    for answer in shown:
        assert answer.status_code == 200, answer.text
        assert secret not in answer.text and HEADER_CANARY not in answer.text
    assert shown[2].json()["name"] == "renamed" and shown[2].json()["events"] == ["workflow.*"]
    assert shown[2].json()["headers"] == {"X-Custom-Header": "****", "Authorization": "****"}  # kept

    cleared = await http.patch(
        f"/api/v1/webhooks/{webhook['id']}",
        json={"headers": None, "retryPolicy": {"maxAttempts": 5, "backoffMs": 10}, "active": False},
    )
    assert cleared.json()["headers"] == {} and cleared.json()["active"] is False
    assert cleared.json()["retryPolicy"] == {"maxAttempts": 5, "backoffMs": 10}
    assert (await http.get("/api/v1/webhooks")).json()["webhooks"][0]["id"] == webhook["id"]

    assert (await http.delete(f"/api/v1/webhooks/{webhook['id']}")).json() == {"deleted": True}
    assert (await http.get(f"/api/v1/webhooks/{webhook['id']}")).status_code == 404
    assert (await http.get(f"/api/v1/webhooks/{webhook['id']}/deliveries")).status_code == 404
    assert (await http.get("/api/v1/webhooks")).json() == {"webhooks": []}


@pytest.mark.timeout(60)
async def test_bad_webhooks_are_refused_naming_what_is_wrong(http: httpx.AsyncClient) -> None:
    url = "https://hooks.example/in"
    cases: list[tuple[dict[str, Any], str]] = [
        (
            seed_request(url, events=["workflow.completd"]),
            "'workflow.completd' (did you mean 'workflow.completed'?)",
        ),
        (seed_request(url, events=[]), "events must name at least one event"),
        (seed_request("ftp://hooks.example/in"), "absolute http(s) URL"),
        (seed_request("https://user:pw@hooks.example/in"), "must not hold credentials"),
        (seed_request("https://hooks.example/" + "a" * 2000), "at most 2000 characters"),
        (seed_request(url, headers={"X-Webhook-Signature": "forged"}), "set by Tendril itself"),
        (seed_request(url, headers={"Bad Name": "x"}), "not a valid HTTP header name"),
        (seed_request(url, headers={"X-Split": f"a\r\nX-Injected: {HEADER_CANARY}"}), "on one line"),
        (seed_request(url, headers={f"X-H{i}": "v" for i in range(21)}), "at most 20 headers"),
        (seed_request(url, headers={"X-Big": "v" * 1001}), "at most 1000 characters"),
        (seed_request(url, retryPolicy={"maxAttempts": 0, "backoffMs": 1000}), "retryPolicy must be"),
        (seed_request(url, retryPolicy={"maxAttempts": 21, "backoffMs": 1000}), "retryPolicy must be"),
        (seed_request(url, retryPolicy={"maxAttempts": 3, "backoffMs": -1}), "retryPolicy must be"),
        (seed_request(url, retryPolicy={"maxAttempts": 3, "backoffMs": 3_600_001}), "retryPolicy must be"),
        (seed_request(url, name=""), "name must be 1-200 characters"),
    ]
    for body, expected in cases:
        answer = await http.post("/api/v1/webhooks", json=body)
        assert answer.status_code == 400, (body, answer.text)
        assert expected in answer.json()["error"], answer.json()["error"]
        assert HEADER_CANARY not in answer.text
    assert (await http.get("/api/v1/webhooks")).json() == {"webhooks": []}


@pytest.mark.timeout(60)
async def test_internal_addresses_are_refused_unless_allow_listed(settings: Settings) -> None:
    async with running_tendril(settings) as tendril:  # no TENDRIL_PUSH_ALLOWED_HOSTS
        owner = await tendril.new_owner()
        async with tendril.raw() as http:
            http.headers["X-Api-Key"] = owner.api_key
            for url in (
                "http://127.0.0.1:8080/hook",
                "http://localhost/hook",
                "http://10.0.0.7/hook",
                "http://169.254.169.254/latest/meta-data",
                "http://[::1]/hook",
            ):
                answer = await http.post("/api/v1/webhooks", json=seed_request(url))
                assert answer.status_code == 400, (url, answer.text)
                assert "refused to connect" in answer.json()["error"]
            made = (await http.post("/api/v1/webhooks", json=seed_request("https://hooks.example/in"))).json()
            moved = await http.patch(
                f"/api/v1/webhooks/{made['webhook']['id']}", json={"url": "http://127.0.0.1/"}
            )
            assert moved.status_code == 400 and "loopback" in moved.json()["error"]


@pytest.mark.timeout(60)
async def test_another_owner_s_webhook_is_not_found(
    hub: Tendril, owner: Owner, http: httpx.AsyncClient
) -> None:
    made = (await http.post("/api/v1/webhooks", json=seed_request("https://hooks.example/in"))).json()
    webhook_id = made["webhook"]["id"]
    await finish_workflow(hub, owner)
    [delivery] = await deliveries(http, webhook_id)
    stranger = await hub.new_owner()
    async with hub.raw() as other:
        other.headers["X-Api-Key"] = stranger.api_key
        for method, path, body in (
            ("GET", f"/api/v1/webhooks/{webhook_id}", None),
            ("PATCH", f"/api/v1/webhooks/{webhook_id}", {"name": "taken"}),
            ("DELETE", f"/api/v1/webhooks/{webhook_id}", None),
            ("GET", f"/api/v1/webhooks/{webhook_id}/deliveries", None),
            ("POST", f"/api/v1/webhooks/{webhook_id}/deliveries/{delivery['id']}/redeliver", None),
        ):
            answer = await other.request(method, path, json=body)
            assert answer.status_code == 404, (method, path, answer.text)
        assert (await other.get("/api/v1/webhooks")).json() == {"webhooks": []}
    assert (await http.get(f"/api/v1/webhooks/{webhook_id}")).json()["name"] == "Workflow Completed Hook"
    assert [d["id"] for d in await deliveries(http, webhook_id)] == [delivery["id"]]


# -- delivering ------------------------------------------------------------------------------------
@pytest.mark.timeout(90)
async def test_a_finished_workflow_is_delivered_signed_as_the_seed_verifies_it(
    hub: Tendril,
    owner: Owner,
    http: httpx.AsyncClient,
    receiver: tuple[Receiver, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    install_redaction(caplog.handler)
    app_side, url = receiver
    made = (await http.post("/api/v1/webhooks", json=seed_request(url))).json()
    webhook_id, secret = made["webhook"]["id"], made["secret"]
    finished = await finish_workflow(hub, owner, report={"rows": 3, "note": "naïve ✓"})
    await finish_workflow(hub, owner, "failed")
    # Told twice about the same execution (a listener run again): still one delivery.
    await hub.core.outgoing.workflow_finished(finished)

    listed = await settled(http, webhook_id, count=2)
    assert [d["status"] for d in listed] == ["delivered", "delivered"]
    assert len(app_side.received) == 2
    # Both were sent at once, in either order.
    by_event = {r.headers["x-webhook-event"]: r for r in app_side.received}
    first = by_event["workflow.completed"]
    completed = next(d for d in listed if d["event"] == "workflow.completed")
    body = json.loads(first.body)
    assert list(body) == ["event", "timestamp", "data"]
    assert body["event"] == "workflow.completed" and body["timestamp"].endswith("Z")
    assert body["data"] == {
        "workflowId": str(finished.workflow_id),
        "executionId": str(finished.execution_id),
        "status": "completed",
        "output": {"report": {"rows": 3, "note": "naïve ✓"}},
    }
    failed = json.loads(by_event["workflow.failed"].body)
    assert failed["event"] == "workflow.failed" and failed["data"]["status"] == "failed"
    assert failed["data"]["error"] == {"message": "step1 failed"}

    headers = first.headers
    assert headers["x-webhook-event"] == "workflow.completed"
    assert headers["x-webhook-delivery"] == completed["id"]
    assert headers["content-type"] == "application/json"
    assert headers["x-custom-header"] == "value" and headers["authorization"] == f"Bearer {HEADER_CANARY}"
    assert completed["attempts"] == 1 and completed["lastStatusCode"] == 200 and completed["deliveredAt"]

    # The seed's JavaScript, run by Node on the bytes that arrived.
    assert await node_verifies(first.body, headers["x-webhook-signature"], secret) == "valid"
    tampered = first.body.replace(b"completed", b"cancelled")
    assert await node_verifies(tampered, headers["x-webhook-signature"], secret) == "invalid"
    assert await node_verifies(first.body, headers["x-webhook-signature"], "whsec_wrong") == "invalid"

    for answer in (
        await http.get(f"/api/v1/webhooks/{webhook_id}/deliveries"),
        await http.get("/api/v1/webhooks"),
    ):
        assert secret not in answer.text and HEADER_CANARY not in answer.text
    assert secret not in caplog.text and HEADER_CANARY not in caplog.text


@pytest.mark.timeout(90)
async def test_500s_are_retried_as_the_policy_says_then_dead_and_redelivery_sends_the_same_body(
    hub: Tendril, owner: Owner, http: httpx.AsyncClient, receiver: tuple[Receiver, str]
) -> None:
    app_side, url = receiver
    app_side.answers = [500, 503, 500]
    policy = {"maxAttempts": 3, "backoffMs": 50}
    made = (await http.post("/api/v1/webhooks", json=seed_request(url, retryPolicy=policy))).json()
    webhook_id = made["webhook"]["id"]
    await finish_workflow(hub, owner)

    [dead] = await settled(http, webhook_id)
    assert dead["status"] == "dead" and dead["attempts"] == 3
    assert dead["lastStatusCode"] == 500 and "answered 500" in dead["lastError"]
    assert dead["nextAttemptAt"] is None and dead["deliveredAt"] is None
    assert len(app_side.received) == 3
    assert {r.headers["x-webhook-delivery"] for r in app_side.received} == {dead["id"]}
    assert len({r.body for r in app_side.received}) == 1  # every attempt sends the same bytes

    again = await http.post(f"/api/v1/webhooks/{webhook_id}/deliveries/{dead['id']}/redeliver")
    assert again.status_code == 201, again.text
    redelivery = again.json()["delivery"]
    assert redelivery["id"] != dead["id"] and redelivery["status"] == "pending"
    newest, oldest = await settled(http, webhook_id, count=2)
    assert newest["id"] == redelivery["id"] and newest["status"] == "delivered" and newest["attempts"] == 1
    assert oldest["status"] == "dead"
    last = app_side.received[-1]
    assert last.body == app_side.received[0].body and last.headers["x-webhook-delivery"] == redelivery["id"]

    # Pages, newest first, with a cursor.
    page = (await http.get(f"/api/v1/webhooks/{webhook_id}/deliveries", params={"limit": 1})).json()
    assert [d["id"] for d in page["deliveries"]] == [redelivery["id"]] and page["nextCursor"]
    rest = await http.get(
        f"/api/v1/webhooks/{webhook_id}/deliveries", params={"limit": 1, "cursor": page["nextCursor"]}
    )
    assert [d["id"] for d in rest.json()["deliveries"]] == [dead["id"]] and rest.json()["nextCursor"] is None
    only_dead = await http.get(f"/api/v1/webhooks/{webhook_id}/deliveries", params={"status": "dead"})
    assert [d["id"] for d in only_dead.json()["deliveries"]] == [dead["id"]]
    bad = await http.get(f"/api/v1/webhooks/{webhook_id}/deliveries", params={"cursor": "nope"})
    assert bad.status_code == 400 and "cursor" in bad.json()["error"]


@pytest.mark.timeout(60)
async def test_a_4xx_other_than_408_or_429_ends_the_delivery_at_once(
    hub: Tendril, owner: Owner, http: httpx.AsyncClient, receiver: tuple[Receiver, str]
) -> None:
    app_side, url = receiver
    app_side.answers = [429, 410]
    made = (
        await http.post(
            "/api/v1/webhooks", json=seed_request(url, retryPolicy={"maxAttempts": 5, "backoffMs": 10})
        )
    ).json()
    await finish_workflow(hub, owner)
    [dead] = await settled(http, made["webhook"]["id"])
    assert dead["status"] == "dead" and dead["attempts"] == 2 and dead["lastStatusCode"] == 410
    assert len(app_side.received) == 2


@pytest.mark.timeout(60)
async def test_deliveries_to_an_address_the_guard_refuses_are_never_sent(
    settings: Settings, receiver: tuple[Receiver, str]
) -> None:
    """A URL accepted while allow-listed (or whose DNS changed since): every attempt is checked."""
    app_side, url = receiver
    async with prepared_core(allowing_loopback(settings)) as core:  # no delivery loop
        made_owner = await core.identity.create_owner("guarded")
        key = await core.identity.create_api_key(made_owner.id, name="test", permissions=["admin"])
        made = await core.outgoing.create(made_owner.id, name="hook", url=url, events=["workflow.completed"])
        await core.outgoing.workflow_finished(
            Finished(made_owner.id, uuid.uuid4(), uuid.uuid4(), "completed", {"ok": True})
        )
    guarded = settings.model_copy(update={"push_poll_seconds": 0.1})  # no allow list
    async with running_tendril(guarded) as tendril, tendril.raw() as http:
        http.headers["X-Api-Key"] = key.plaintext
        [dead] = await settled(http, str(made.webhook.record.id))
    assert dead["status"] == "dead" and dead["attempts"] == 1 and "loopback" in dead["lastError"]
    assert app_side.received == []


@pytest.mark.timeout(60)
async def test_only_subscribed_active_webhooks_get_an_event(
    hub: Tendril, owner: Owner, http: httpx.AsyncClient
) -> None:
    url = "https://hooks.example/in"
    completed = (
        await http.post("/api/v1/webhooks", json=seed_request(url, events=["workflow.completed"]))
    ).json()
    family = (await http.post("/api/v1/webhooks", json=seed_request(url, events=["workflow.*"]))).json()
    paused = (await http.post("/api/v1/webhooks", json=seed_request(url))).json()
    await http.patch(f"/api/v1/webhooks/{paused['webhook']['id']}", json={"active": False})
    await finish_workflow(hub, owner, "failed")
    assert await deliveries(http, completed["webhook"]["id"]) == []
    assert [d["event"] for d in await deliveries(http, family["webhook"]["id"])] == ["workflow.failed"]
    assert await deliveries(http, paused["webhook"]["id"]) == []
    with pytest.raises(ValueError, match="unknown outgoing event"):
        await hub.core.outgoing.announce(uuid.UUID(owner.id), "workflow.exploded", {}, dedupe_key="z")


# -- leases ------------------------------------------------------------------------------------------
@pytest.mark.timeout(60)
async def test_replicas_claiming_at_once_never_take_the_same_attempt(settings: Settings) -> None:
    async with prepared_core(settings) as core:  # no delivery loop: only the replicas below claim
        owner = await core.identity.create_owner("leases")
        made = await core.outgoing.create(
            owner.id, name="leases", url="https://hooks.example/in", events=["job.dead"]
        )
    webhook_id = made.webhook.record.id
    engines = [db.create_engine(settings.resolved_database_url) for _ in range(4)]
    replicas = [OutgoingStore(engine) for engine in engines]
    try:
        await replicas[0].add_deliveries(
            [NewOutgoingDelivery(webhook_id, owner.id, "job.dead", "{}", f"lease-{i}") for i in range(40)]
        )
        taken: list[list[uuid.UUID]] = [[] for _ in replicas]

        async def claim_all(index: int) -> None:
            while batch := await replicas[index].claim(lease_seconds=60, limit=3):
                taken[index] += [delivery.id for delivery, _ in batch]

        async with anyio.create_task_group() as group:
            for index in range(len(replicas)):
                group.start_soon(claim_all, index)
        every = [delivery_id for ids in taken for delivery_id in ids]
        assert len(every) == len(set(every)) == 40
        stored = await replicas[0].deliveries(owner.id, webhook_id, limit=100)
        assert {(d.status, d.attempts) for d in stored} == {("sending", 1)}
        assert sum(1 for ids in taken if ids) >= 1
    finally:
        for engine in engines:
            await engine.dispose()


# -- connection.* and job.dead -----------------------------------------------------------------------
@pytest.mark.timeout(60)
async def test_connection_moves_and_dead_jobs_are_announced(
    hub: Tendril, owner: Owner, http: httpx.AsyncClient, fakes: Fakes
) -> None:
    made = (
        await http.post(
            "/api/v1/webhooks",
            json=seed_request("https://hooks.example/in", events=["connection.*", "job.dead"]),
        )
    ).json()
    webhook_id = made["webhook"]["id"]
    started = (
        await http.post("/api/v1/connections", json={"connectorSlug": "telegram", "label": "bot"})
    ).json()
    connection_id = started["connection"]["id"]
    submitted = await http.post(
        f"/api/v1/connections/{connection_id}/credentials", json={"bot_token": TELEGRAM_TOKEN}
    )
    assert submitted.status_code == 200, submitted.text
    assert (await http.delete(f"/api/v1/connections/{connection_id}")).status_code == 200

    # A provider event's job for an agent, which fails for good.
    owner_id = uuid.UUID(owner.id)
    agent = await hub.core.identity.create_agent(owner_id, name="worker", allowed_connectors=["github"])
    hooks = hub.core._hooks  # pyright: ignore[reportPrivateUsage]
    queue = hub.core.jobs._queue  # pyright: ignore[reportPrivateUsage]
    endpoint = await hooks.create_endpoint(
        owner_id, provider="github", connection_id=None, sealed_secrets="unused", agent_ids=None
    )
    await hooks.record_delivery(
        endpoint,
        event_id="gh-1",
        event_key="github.issues.opened",
        payload={},
        agent_ids=[agent.record.id],
        max_attempts=1,
    )
    [job] = await queue.claim(worker="test", lease_seconds=60, agent_id=agent.record.id)
    await queue.fail(job.id, agent_id=agent.record.id, error="the agent gave up", retry=False)

    found = await deliveries(http, webhook_id)
    bodies = [json.loads(await _body_of(hub, owner_id, webhook_id, d["id"]))["data"] for d in reversed(found)]
    assert [d["event"] for d in reversed(found)] == ["connection.active", "connection.revoked", "job.dead"]
    assert bodies[0] == {
        "connectionId": connection_id,
        "connector": "telegram",
        "label": "bot",
        "status": "active",
        "previousStatus": "pending",
    }
    assert bodies[1]["status"] == "revoked" and bodies[1]["previousStatus"] == "active"
    assert bodies[2] == {
        "jobId": str(job.id),
        "agentId": str(agent.record.id),
        "provider": "github",
        "eventKey": "github.issues.opened",
        "attempts": 1,
        "lastError": "the agent gave up",
    }
    assert TELEGRAM_TOKEN not in json.dumps(bodies)


async def _body_of(hub: Tendril, owner_id: uuid.UUID, webhook_id: str, delivery_id: str) -> str:
    store = OutgoingStore(hub.core._engine)  # pyright: ignore[reportPrivateUsage]
    found = await store.delivery(owner_id, uuid.UUID(webhook_id), uuid.UUID(delivery_id))
    assert found is not None
    return found.body


# -- a real workflow ---------------------------------------------------------------------------------
@pytest.mark.timeout(120)
async def test_an_executed_workflow_reaches_the_webhook_verified_by_the_seed_snippet(
    settings: Settings, receiver: tuple[Receiver, str]
) -> None:
    """The README's example: define, execute, poll, and the webhook received and verified."""
    app_side, url = receiver
    connectors = {**settings.connectors, "http": ConnectorSettings(allowed_hosts="127.0.0.1")}
    configured = allowing_loopback(settings).model_copy(update={"connectors": connectors})
    async with running_tendril(configured) as tendril, tendril.raw() as http:
        owner = await tendril.new_owner()
        http.headers["Authorization"] = f"Bearer {owner.api_key}"
        made = (await http.post("/api/v1/webhooks", json=seed_request(url))).json()
        definition = {
            "steps": [
                {
                    "name": "step1",
                    "type": "http_request",
                    "config": {"method": "POST", "url": url, "body": {"n": 1}},
                }
            ]
        }
        workflow = await http.post("/api/v1/workflows", json={"name": "Ping", "definition": definition})
        assert workflow.status_code == 201, workflow.text
        started = await http.post(f"/api/v1/workflows/{workflow.json()['id']}/execute", json={"input": {}})
        assert started.status_code == 202, started.text
        execution_id = started.json()["executionId"]
        with anyio.fail_after(60):  # polled as the seed's clients do
            while True:
                polled = (await http.get(f"/api/v1/executions/{execution_id}")).json()
                if polled["status"] in ("completed", "failed"):
                    break
                await anyio.sleep(0.1)
        assert polled["status"] == "completed", polled
        [delivered] = await settled(http, made["webhook"]["id"])
    assert delivered["status"] == "delivered"
    [hook] = [r for r in app_side.received if "x-webhook-signature" in r.headers]
    body = json.loads(hook.body)
    assert body["event"] == "workflow.completed"
    assert body["data"]["executionId"] == execution_id and body["data"]["status"] == "completed"
    assert body["data"]["workflowId"] == workflow.json()["id"]
    assert await node_verifies(hook.body, hook.headers["x-webhook-signature"], made["secret"]) == "valid"
