"""Executions on the durable engine, in-process on both engines: steps in order against the fakes
(Slack's fake and a loopback receiver for http_request), templates across steps, idempotency,
lists, cancel, isolation, errors, and the on_finished hook."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import anyio
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from server.core.errors import Unavailable
from server.core.workflows.executions import FinishedExecution
from server.settings import ConnectorSettings, Settings
from storage import schema
from tests.conftest import SLACK_TOKEN, Fakes, Tendril, running_tendril
from tests.fakes.loopback import run_asgi_on_loopback

pytestmark = pytest.mark.anyio


@dataclass
class Receiver:
    """A loopback HTTP receiver: records each request (path, Idempotency-Key, body); a path may be
    held until released."""

    url: str = ""
    seen: list[dict[str, Any]] = field(default_factory=list[dict[str, Any]])
    status: int = 200

    def app(self) -> Starlette:
        async def receive(request: Request) -> JSONResponse:
            body = await request.body()
            self.seen.append(
                {
                    "path": request.url.path,
                    "key": request.headers.get("idempotency-key"),
                    "body": json.loads(body) if body else None,
                }
            )
            return JSONResponse(
                {"id": f"r{len(self.seen)}", "echo": json.loads(body) if body else None},
                status_code=self.status,
            )

        return Starlette(routes=[Route("/{path:path}", receive, methods=["GET", "POST", "PUT"])])


@pytest.fixture(scope="module")
def _receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    with run_asgi_on_loopback(receiver.app()) as url:
        receiver.url = url
        yield receiver


@pytest.fixture
def receiver(_receiver: Receiver) -> Receiver:
    _receiver.seen.clear()
    _receiver.status = 200
    return _receiver


@pytest.fixture
async def hub(settings: Settings) -> AsyncIterator[Tendril]:
    connectors = {**settings.connectors, "http": ConnectorSettings(allowed_hosts="127.0.0.1")}
    async with running_tendril(settings.model_copy(update={"connectors": connectors})) as tendril:
        yield tendril


async def add_workflow(tendril: Tendril, owner_id: str, steps: list[dict[str, Any]]) -> UUID:
    workflow_id = schema.time_ordered_id()
    now = tendril.clock()
    async with tendril.core._engine.begin() as conn:  # pyright: ignore[reportPrivateUsage]
        await conn.execute(
            schema.workflows.insert().values(
                id=workflow_id,
                owner_id=UUID(owner_id),
                name="test",
                definition={"steps": steps},
                created_at=now,
                updated_at=now,
            )
        )
    return workflow_id


async def slack_connection(tendril: Tendril, api_key: str) -> str:
    async with tendril.client(api_key) as client:
        started = await client.create_connection("slack")
        return (await client.submit_credentials(started.connection.id, {"bot_token": SLACK_TOKEN})).id


async def finished(tendril: Tendril, owner_id: str, execution_id: UUID) -> Any:
    with anyio.fail_after(20):
        await tendril.core.executions.engine.wait(execution_id)
    return await tendril.core.executions.get(UUID(owner_id), execution_id)


async def until_step_runs(tendril: Tendril, owner_id: str, execution_id: UUID, name: str) -> None:
    """Poll the execution (what a client of GET /executions/{id} does) until step `name` runs."""
    with anyio.fail_after(10):
        while True:
            view = await tendril.core.executions.get(UUID(owner_id), execution_id)
            if any(s.name == name and s.status == "running" for s in view.steps or []):
                return
            await anyio.sleep(0.05)


@pytest.mark.timeout(60)
async def test_steps_run_in_order_with_templates_across_steps(
    hub: Tendril, fakes: Fakes, receiver: Receiver
) -> None:
    owner = await hub.new_owner()
    connection = await slack_connection(hub, owner.api_key)
    heard: list[FinishedExecution] = []

    async def listen(done: FinishedExecution) -> None:
        heard.append(done)

    hub.core.executions.on_finished(listen)
    workflow = await add_workflow(
        hub,
        owner.id,
        [
            {
                "name": "fetch",
                "type": "http_request",
                "config": {
                    "method": "POST",
                    "url": f"{receiver.url}/orders",
                    "body": {"name": "{{ input.name }}"},
                },
            },
            {
                "name": "check",
                "type": "condition",
                "config": {"if": "steps.fetch.output.json.echo.name == 'Ada'"},
            },
            {
                "name": "post",
                "type": "action",
                "config": {
                    "connectionId": connection,
                    "action": "post_message",
                    "parameters": {
                        "channel": "#general",
                        "text": "order {{ steps.fetch.output.json.id }} for {{ input.name }}",
                    },
                },
            },
        ],
    )
    view = await hub.core.executions.start(UUID(owner.id), workflow, {"name": "Ada"}, started_by="api")
    assert view.status == "pending"
    done = await finished(hub, owner.id, view.id)
    assert done.status == "completed", done
    assert [s.status for s in done.steps] == ["completed", "completed", "completed"]
    assert fakes.slack.messages[-1]["text"] == "order r1 for Ada"
    assert receiver.seen == [{"path": "/orders", "key": f"{view.id}:fetch", "body": {"name": "Ada"}}]
    assert done.input == {"name": "Ada"}
    assert done.output["status"] == "sent"
    assert all(s.started_at and s.finished_at for s in done.steps)
    assert [(h.execution_id, h.status) for h in heard] == [(view.id, "completed")]


@pytest.mark.timeout(60)
async def test_a_repeated_idempotency_key_returns_the_same_execution(
    hub: Tendril, receiver: Receiver
) -> None:
    owner = await hub.new_owner()
    workflow = await add_workflow(
        hub, owner.id, [{"name": "ping", "type": "http_request", "config": {"url": f"{receiver.url}/ping"}}]
    )
    executions = hub.core.executions
    first = await executions.start(UUID(owner.id), workflow, {}, started_by="api", idempotency_key="k-1")
    again = await executions.start(UUID(owner.id), workflow, {}, started_by="api", idempotency_key="k-1")
    other = await executions.start(UUID(owner.id), workflow, {}, started_by="api", idempotency_key="k-2")
    assert again.id == first.id and other.id != first.id
    await finished(hub, owner.id, first.id)
    await finished(hub, owner.id, other.id)
    later = await executions.start(UUID(owner.id), workflow, {}, started_by="api", idempotency_key="k-1")
    assert later.id == first.id and later.status == "completed"
    assert sorted(s["key"] for s in receiver.seen) == sorted([f"{first.id}:ping", f"{other.id}:ping"])


@pytest.mark.timeout(60)
async def test_lists_filter_by_workflow_and_status_in_cursor_pages(hub: Tendril, receiver: Receiver) -> None:
    owner, stranger = await hub.new_owner(), await hub.new_owner()
    ok = await add_workflow(
        hub, owner.id, [{"name": "a", "type": "http_request", "config": {"url": f"{receiver.url}/a"}}]
    )
    bad = await add_workflow(
        hub,
        owner.id,
        [{"name": "b", "type": "action", "config": {"connector": "slack", "action": "post_message"}}],
    )
    executions = hub.core.executions
    started = [await executions.start(UUID(owner.id), ok, {}, started_by="api") for _ in range(3)]
    failed = await executions.start(UUID(owner.id), bad, {}, started_by="api")
    for view in [*started, failed]:
        await finished(hub, owner.id, view.id)
    await executions.start(UUID(stranger.id), await add_workflow(hub, stranger.id, []), {}, started_by="api")

    page = await executions.list(UUID(owner.id), limit=2)
    assert [e.id for e in page.executions] == [failed.id, started[2].id] and page.next_cursor
    rest = await executions.list(UUID(owner.id), limit=2, cursor=page.next_cursor)
    assert [e.id for e in rest.executions] == [started[1].id, started[0].id] and rest.next_cursor is None
    assert [e.id for e in (await executions.list(UUID(owner.id), workflow_id=bad)).executions] == [failed.id]
    assert [e.id for e in (await executions.list(UUID(owner.id), status="failed")).executions] == [failed.id]
    assert len((await executions.list(UUID(owner.id), status="completed")).executions) == 3

    view = await executions.get(UUID(owner.id), failed.id)
    assert view.status == "failed"
    assert view.error == {"step": "b", "code": "not_found", "message": "step 'b': no slack connection"}
    assert view.steps and view.steps[0].status == "failed"
    assert view.steps[0].error == {"code": "not_found", "message": "step 'b': no slack connection"}


@pytest.mark.timeout(60)
async def test_a_cancelled_execution_runs_no_further_step(hub: Tendril, receiver: Receiver) -> None:
    owner = await hub.new_owner()
    workflow = await add_workflow(
        hub,
        owner.id,
        [
            {"name": "wait", "type": "delay", "config": {"seconds": 1}},
            {"name": "after", "type": "http_request", "config": {"url": f"{receiver.url}/after"}},
        ],
    )
    executions = hub.core.executions
    view = await executions.start(UUID(owner.id), workflow, {}, started_by="api")
    await until_step_runs(hub, owner.id, view.id, "wait")
    cancelled = await executions.cancel(UUID(owner.id), view.id)
    assert cancelled.status == "cancelled"
    assert [s.status for s in cancelled.steps or []] == ["cancelled", "cancelled"]
    with anyio.fail_after(10), pytest.raises(Exception, match="cancel"):
        await executions.engine.wait(view.id)
    assert receiver.seen == []
    assert (await executions.list(UUID(owner.id), status="cancelled")).executions[0].id == view.id


@pytest.mark.timeout(60)
async def test_another_owners_execution_is_not_found(hub: Tendril, receiver: Receiver) -> None:
    owner, stranger = await hub.new_owner(), await hub.new_owner()
    workflow = await add_workflow(
        hub, owner.id, [{"name": "a", "type": "http_request", "config": {"url": f"{receiver.url}/a"}}]
    )
    executions = hub.core.executions
    view = await executions.start(UUID(owner.id), workflow, {}, started_by="api")
    await finished(hub, owner.id, view.id)
    from server.core.errors import NotFound

    with pytest.raises(NotFound):
        await executions.get(UUID(stranger.id), view.id)
    with pytest.raises(NotFound):
        await executions.cancel(UUID(stranger.id), view.id)
    with pytest.raises(NotFound):
        await executions.start(UUID(stranger.id), workflow, {}, started_by="api")
    assert (await executions.list(UUID(stranger.id))).executions == []


@pytest.mark.timeout(60)
async def test_step_errors_are_mapped_and_stop_the_execution(
    hub: Tendril, fakes: Fakes, receiver: Receiver
) -> None:
    owner = await hub.new_owner()
    connection = await slack_connection(hub, owner.api_key)
    agent = await hub.core.identity.create_agent(UUID(owner.id), name="bot", allowed_connectors=["telegram"])
    from server.core.identity import AgentPrincipal

    cases: list[tuple[list[dict[str, Any]], dict[str, Any], str]] = [
        # The egress guard: an internal address not opened by the operator.
        ([{"name": "s", "type": "http_request", "config": {"url": "http://10.0.0.1/x"}}], {}, "forbidden"),
        (
            [{"name": "s", "type": "http_request", "config": {"url": f"{receiver.url}/500"}}],
            {"status": 500},
            "upstream_error",
        ),
        (
            [{"name": "s", "type": "http_request", "config": {"url": "{{ input.missing }}"}}],
            {},
            "invalid_input",
        ),
        (
            [
                {
                    "name": "s",
                    "type": "action",
                    "config": {"connectionId": connection, "action": "post_message", "parameters": {}},
                }
            ],
            {},
            "invalid_input",
        ),
    ]
    executions = hub.core.executions
    for steps, setup, code in cases:
        receiver.status = setup.get("status", 200)
        steps = [
            *steps,
            {"name": "never", "type": "http_request", "config": {"url": f"{receiver.url}/never"}},
        ]
        workflow = await add_workflow(hub, owner.id, steps)
        view = await finished(
            hub, owner.id, (await executions.start(UUID(owner.id), workflow, {}, started_by="api")).id
        )
        assert view.status == "failed" and view.error["code"] == code, (code, view.error)
        assert [s.status for s in view.steps] == ["failed", "skipped"]
    assert [s["path"] for s in receiver.seen] == ["/500"]

    # An execution an agent started uses only connectors on its allowedConnectors.
    workflow = await add_workflow(
        hub,
        owner.id,
        [
            {
                "name": "post",
                "type": "action",
                "config": {
                    "connector": "slack",
                    "action": "post_message",
                    "parameters": {"channel": "#x", "text": "hi"},
                },
            }
        ],
    )
    view = await executions.start(
        UUID(owner.id), workflow, {}, started_by="agent", agent=AgentPrincipal.of(agent.record)
    )
    view = await finished(hub, owner.id, view.id)
    assert view.status == "failed" and view.error["code"] == "forbidden"
    assert fakes.slack.messages == []


@pytest.mark.timeout(60)
async def test_conditions_skip_named_steps_or_stop_the_execution(hub: Tendril, receiver: Receiver) -> None:
    owner = await hub.new_owner()

    def ping(name: str) -> dict[str, Any]:
        return {"name": name, "type": "http_request", "config": {"url": f"{receiver.url}/{name}"}}

    workflow = await add_workflow(
        hub,
        owner.id,
        [
            {
                "name": "small",
                "type": "condition",
                "config": {"if": "input.amount > 100", "else": "skip", "skip": ["big"]},
            },
            ping("big"),
            ping("always"),
            {"name": "gate", "type": "condition", "config": {"if": "{{ input.go }}"}},
            ping("last"),
        ],
    )
    executions = hub.core.executions
    start = executions.start
    view = await finished(
        hub,
        owner.id,
        (await start(UUID(owner.id), workflow, {"amount": 5, "go": False}, started_by="api")).id,
    )
    assert view.status == "completed"
    assert [s.status for s in view.steps or []] == [
        "completed",
        "skipped",
        "completed",
        "completed",
        "skipped",
    ]
    assert view.output["json"]["id"] == "r1"  # the last step that ran
    view = await finished(
        hub,
        owner.id,
        (await start(UUID(owner.id), workflow, {"amount": 500, "go": True}, started_by="api")).id,
    )
    assert [s.status for s in view.steps or []] == ["completed"] * 5
    assert [s["path"] for s in receiver.seen] == ["/always", "/big", "/always", "/last"]


@pytest.mark.timeout(60)
async def test_rest_execute_poll_list_and_cancel_as_the_seed_writes_them(
    hub: Tendril, receiver: Receiver
) -> None:
    owner = await hub.new_owner()
    reader = await hub.core.identity.create_api_key(UUID(owner.id), name="reader", permissions=["read"])
    workflow = await add_workflow(
        hub,
        owner.id,
        [
            {
                "name": "step1",
                "type": "http_request",
                "config": {"method": "POST", "url": f"{receiver.url}/x", "body": {"key": "{{ input.key }}"}},
            }
        ],
    )
    async with hub.raw() as http:
        http.headers["Authorization"] = f"Bearer {owner.api_key}"
        answer = await http.post(f"/api/v1/workflows/{workflow}/execute", json={"input": {"key": "value"}})
        assert answer.status_code == 202, answer.text
        started = answer.json()
        assert set(started) == {"executionId", "status", "startedAt"} and started["status"] == "pending"
        await finished(hub, owner.id, UUID(started["executionId"]))

        execution = (await http.get(f"/api/v1/executions/{started['executionId']}")).json()
        assert execution["status"] == "completed" and execution["input"] == {"key": "value"}
        assert execution["steps"][0]["name"] == "step1" and execution["steps"][0]["status"] == "completed"
        assert execution["output"]["status"] == 200 and execution["startedAt"] and execution["finishedAt"]

        keyed = [
            await http.post(
                f"/api/v1/workflows/{workflow}/execute",
                json={"input": {}},
                headers={"Idempotency-Key": "same"},
            )
            for _ in range(2)
        ]
        assert [a.status_code for a in keyed] == [202, 202]
        assert keyed[0].json()["executionId"] == keyed[1].json()["executionId"] != started["executionId"]
        await finished(hub, owner.id, UUID(keyed[0].json()["executionId"]))

        listed = (
            await http.get("/api/v1/executions", params={"workflowId": str(workflow), "limit": 1})
        ).json()
        assert [e["id"] for e in listed["executions"]] == [keyed[0].json()["executionId"]] and listed[
            "nextCursor"
        ]
        rest = (
            await http.get("/api/v1/executions", params={"limit": 1, "cursor": listed["nextCursor"]})
        ).json()
        assert [e["id"] for e in rest["executions"]] == [started["executionId"]] and rest[
            "nextCursor"
        ] is None

        done = await http.post(f"/api/v1/executions/{started['executionId']}", json={"action": "cancel"})
        assert done.status_code == 200 and done.json()["status"] == "completed"  # finished stays finished
        for bad in (
            http.post(f"/api/v1/executions/{started['executionId']}", json={"action": "pause"}),
            http.get("/api/v1/executions", params={"status": "sleeping"}),
            http.get("/api/v1/executions", params={"cursor": "nope"}),
            http.post(f"/api/v1/workflows/{workflow}/execute", json={"input": [1]}),
        ):
            assert (await bad).status_code == 400
        assert (await http.get(f"/api/v1/executions/{schema.time_ordered_id()}")).status_code == 404

        http.headers["Authorization"] = f"Bearer {reader.plaintext}"
        assert (await http.get("/api/v1/executions")).status_code == 200
        assert (await http.post(f"/api/v1/workflows/{workflow}/execute", json={})).status_code == 403
        assert (
            await http.post(f"/api/v1/executions/{started['executionId']}", json={"action": "cancel"})
        ).status_code == 403


@pytest.mark.timeout(60)
async def test_two_cores_in_one_process_share_the_engine_on_one_database(
    settings: Settings, receiver: Receiver, tmp_path: Path
) -> None:
    """DBOS is one per process: in-process replicas on the same database (as tests run them) share
    it, and the last one to stop destroys it; a Core on another database is refused workflows."""
    connectors = {**settings.connectors, "http": ConnectorSettings(allowed_hosts="127.0.0.1")}
    shared = settings.model_copy(update={"connectors": connectors})
    async with running_tendril(shared) as first:
        owner = await first.new_owner()
        workflow = await add_workflow(
            first, owner.id, [{"name": "a", "type": "http_request", "config": {"url": f"{receiver.url}/a"}}]
        )
        async with running_tendril(shared) as second:
            view = await second.core.executions.start(UUID(owner.id), workflow, {}, started_by="api")
            assert (await finished(first, owner.id, view.id)).status == "completed"
            elsewhere = settings.model_copy(
                update={
                    "data_dir": tmp_path / "elsewhere",
                    "database_url": f"sqlite+aiosqlite:///{tmp_path / 'other.db'}",
                }
            )
            async with running_tendril(elsewhere) as other:
                stranger = await other.new_owner()
                mine = await add_workflow(other, stranger.id, [])
                with pytest.raises(Unavailable):
                    await other.core.executions.start(UUID(stranger.id), mine, {}, started_by="api")
        again = await first.core.executions.start(UUID(owner.id), workflow, {}, started_by="api")
        assert (await finished(first, owner.id, again.id)).status == "completed"
    assert len(receiver.seen) == 2
