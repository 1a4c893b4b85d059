"""Workflow definitions over REST, as integration-layer APIs document them: the seed's create
request as written, the list as a JSON array of summaries, PATCH semantics, soft delete, pages with
a Link header, 400s naming the step, owner isolation, the audit trail, and which workflows an agent
may run. Both engines."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest

from clients import TendrilApiError
from server.core.identity import AgentPrincipal
from tests.conftest import TELEGRAM_TOKEN, Owner, Tendril
from tests.support.rest import assert_error

pytestmark = pytest.mark.anyio

SEED_CREATE = {
    "name": "New Workflow",
    "description": "Optional description",
    "definition": {
        "steps": [
            {
                "name": "step1",
                "type": "http_request",
                "config": {"method": "GET", "url": "https://api.example.com/data"},
            }
        ]
    },
    "isPublic": False,
}
SUMMARY_KEYS = {"id", "name", "description", "isPublic", "createdAt", "updatedAt"}


def http_for(tendril: Tendril, owner: Owner) -> httpx.AsyncClient:
    client = tendril.raw()
    client.headers["Authorization"] = f"Bearer {owner.api_key}"
    return client


def telegram_step(
    name: str = "notify", text: str = "{{ steps.step1.output.json.title }}", **config: Any
) -> dict[str, Any]:
    return {
        "name": name,
        "type": "action",
        "config": {
            "connector": "telegram",
            "action": "send_message",
            "parameters": {"chat_id": "{{ input.chat }}", "text": text},
            **config,
        },
    }


async def test_the_seed_requests_work_as_written(tendril: Tendril) -> None:
    owner = await tendril.new_owner()
    async with http_for(tendril, owner) as http:
        created = await http.post("/api/v1/workflows", json=SEED_CREATE)
        assert created.status_code == 201, created.text
        workflow = created.json()
        assert set(workflow) == SUMMARY_KEYS | {"definition"}
        assert workflow["definition"] == SEED_CREATE["definition"]
        assert (workflow["name"], workflow["description"], workflow["isPublic"]) == (
            "New Workflow",
            "Optional description",
            False,
        )
        uuid.UUID(workflow["id"])
        assert workflow["createdAt"] == workflow["updatedAt"]

        listed = await http.get("/api/v1/workflows")
        assert listed.status_code == 200
        assert "link" not in listed.headers
        assert listed.json() == [{k: v for k, v in workflow.items() if k != "definition"}]

        fetched = await http.get(f"/api/v1/workflows/{workflow['id']}")
        assert fetched.json() == workflow


async def test_a_bad_definition_is_a_400_naming_the_step(tendril: Tendril) -> None:
    owner = await tendril.new_owner()
    body = {
        **SEED_CREATE,
        "definition": {
            "steps": [
                *SEED_CREATE["definition"]["steps"],
                {
                    "name": "notify",
                    "type": "action",
                    "config": {"connector": "slack", "action": "post_mesage"},
                },
            ]
        },
    }
    async with http_for(tendril, owner) as http:
        answer = await http.post("/api/v1/workflows", json=body)
        error = assert_error(
            answer,
            400,
            "BAD_REQUEST",
            "step 'notify' (2): unknown action 'slack.post_mesage'",
            "post_message",
        )
        assert error["field"] == "definition.steps[1].config.action"
        later = {
            **SEED_CREATE,
            "definition": {"steps": [telegram_step("first"), SEED_CREATE["definition"]["steps"][0]]},
        }
        answer = await http.post("/api/v1/workflows", json=later)
        assert_error(
            answer, 400, "BAD_REQUEST", "step 'first' (1): refers to steps.step1, which runs later (2)"
        )
        for broken, words in (
            ({**SEED_CREATE, "definition": "steps"}, "definition must be an object"),
            ({**SEED_CREATE, "definition": {"steps": [{"name": "x", "type": "sleep"}]}}, "unknown step type"),
            ({k: v for k, v in SEED_CREATE.items() if k != "definition"}, "definition"),
            ({**SEED_CREATE, "name": " "}, "name must be a non-empty string"),
        ):
            assert_error(await http.post("/api/v1/workflows", json=broken), 400, "BAD_REQUEST", words)
        assert (await http.get("/api/v1/workflows")).json() == []


async def test_patch_changes_only_what_it_is_given(tendril: Tendril) -> None:
    owner = await tendril.new_owner()
    async with http_for(tendril, owner) as http:
        workflow = (await http.post("/api/v1/workflows", json=SEED_CREATE)).json()
        path = f"/api/v1/workflows/{workflow['id']}"
        tendril.clock.advance(timedelta(seconds=5))
        public = (await http.patch(path, json={"isPublic": True})).json()
        assert public["isPublic"] is True
        assert {k: public[k] for k in ("name", "description", "definition", "createdAt")} == {
            k: workflow[k] for k in ("name", "description", "definition", "createdAt")
        }
        assert public["updatedAt"] > workflow["updatedAt"]

        steps = [*SEED_CREATE["definition"]["steps"], telegram_step()]
        changed = (await http.patch(path, json={"name": "Renamed", "definition": {"steps": steps}})).json()
        assert (changed["name"], changed["isPublic"], changed["definition"]) == (
            "Renamed",
            True,
            {"steps": steps},
        )

        bad = {"steps": [*steps, {"name": "step1", "type": "delay", "config": {"seconds": 1}}]}
        answer = await http.patch(path, json={"definition": bad})
        assert_error(answer, 400, "BAD_REQUEST", "step 'step1' (3): the name is already used by step 1")
        assert_error(await http.patch(path, json={"nmae": "x"}), 400, "BAD_REQUEST", "unknown field(s): nmae")
        assert (await http.get(path)).json() == changed


async def test_delete_is_soft_and_final(tendril: Tendril) -> None:
    owner = await tendril.new_owner()
    async with http_for(tendril, owner) as http:
        workflow = (await http.post("/api/v1/workflows", json=SEED_CREATE)).json()
        path = f"/api/v1/workflows/{workflow['id']}"
        assert (await http.delete(path)).json() == {"deleted": True}
        assert_error(await http.get(path), 404, "NOT_FOUND", "workflow not found")
        assert_error(await http.patch(path, json={"name": "x"}), 404, "NOT_FOUND")
        assert_error(await http.delete(path), 404, "NOT_FOUND")
        assert (await http.get("/api/v1/workflows")).json() == []
    # The row stays for the executions that point at it.
    record = await tendril.core.workflows._store.names(uuid.UUID(owner.id), [uuid.UUID(workflow["id"])])  # pyright: ignore[reportPrivateUsage]
    assert record == {uuid.UUID(workflow["id"]): "New Workflow"}


async def test_another_owners_workflow_is_not_found(tendril: Tendril) -> None:
    alice, bob = await tendril.new_owner(), await tendril.new_owner()
    async with http_for(tendril, alice) as http:
        workflow = (await http.post("/api/v1/workflows", json=SEED_CREATE)).json()
    path = f"/api/v1/workflows/{workflow['id']}"
    async with http_for(tendril, bob) as http:
        assert_error(await http.get(path), 404, "NOT_FOUND")
        assert_error(await http.patch(path, json={"isPublic": True}), 404, "NOT_FOUND")
        assert_error(await http.delete(path), 404, "NOT_FOUND")
        assert (await http.get("/api/v1/workflows")).json() == []
    async with http_for(tendril, alice) as http:
        assert (await http.get(path)).json() == workflow


async def test_lists_come_in_pages_linked_by_the_link_header(tendril: Tendril) -> None:
    owner = await tendril.new_owner()
    async with http_for(tendril, owner) as http:
        made = [
            (await http.post("/api/v1/workflows", json={**SEED_CREATE, "name": f"w{i}"})).json()
            for i in range(5)
        ]
        seen: list[str] = []
        url: str | None = "/api/v1/workflows?limit=2"
        pages = 0
        while url is not None:
            answer = await http.get(url)
            assert answer.status_code == 200
            seen += [w["name"] for w in answer.json()]
            url = answer.links.get("next", {}).get("url")
            pages += 1
        assert pages == 3
        assert seen == [w["name"] for w in reversed(made)]
        assert_error(await http.get("/api/v1/workflows?cursor=nope"), 400, "BAD_REQUEST", "malformed cursor")
        assert_error(await http.get("/api/v1/workflows?limit=0"), 400, "BAD_REQUEST", "limit")


async def test_connection_steps_must_name_the_owners_own_connections(tendril: Tendril) -> None:
    alice, bob = await tendril.new_owner(), await tendril.new_owner()
    bobs = await tendril.client(bob.api_key).create_connection("telegram", label="bob's")
    async with http_for(tendril, alice) as http:
        started = (await http.post("/api/v1/connections", json={"connectorSlug": "telegram"})).json()
        mine = started["connection"]["id"]
        step = {"name": "n", "type": "action", "config": {"connectionId": mine, "action": "send_message"}}
        answer = await http.post("/api/v1/workflows", json={**SEED_CREATE, "definition": {"steps": [step]}})
        assert answer.status_code == 201, answer.text
        theirs = {**step, "config": {**step["config"], "connectionId": bobs.connection.id}}
        answer = await http.post("/api/v1/workflows", json={**SEED_CREATE, "definition": {"steps": [theirs]}})
        error = assert_error(answer, 400, "BAD_REQUEST", "step 'n' (1): no connection of yours")
        assert error["field"] == "definition.steps[0].config.connectionId"
        wrong = {**step, "config": {**step["config"], "action": "create_issue"}}
        answer = await http.post("/api/v1/workflows", json={**SEED_CREATE, "definition": {"steps": [wrong]}})
        assert_error(answer, 400, "BAD_REQUEST", "unknown action 'telegram.create_issue'")


async def test_agents_may_run_public_workflows_of_connectors_they_are_allowed(tendril: Tendril) -> None:
    owner = await tendril.new_owner()
    other = await tendril.new_owner()
    client = tendril.client(owner.api_key)
    started = await client.create_connection("telegram")
    await client.submit_credentials(started.connection.id, {"bot_token": TELEGRAM_TOKEN})
    by_id = {
        "name": "n",
        "type": "action",
        "config": {"connectionId": started.connection.id, "action": "send_message"},
    }
    seed_step = SEED_CREATE["definition"]["steps"][0]
    made = {
        name: await client.create_workflow(name, {"steps": steps}, is_public=public)
        for name, steps, public in (
            ("telegram by slug", [telegram_step("step1", "{{ input.text }}")], True),
            ("telegram by connection", [by_id], True),
            ("telegram, private", [telegram_step("step1", "{{ input.text }}")], False),
            ("http", [seed_step], True),
            ("http then telegram", [seed_step, telegram_step()], True),
            (
                "slack",
                [
                    {
                        **telegram_step("step1", "{{ input.text }}"),
                        "config": {"connector": "slack", "action": "post_message"},
                    }
                ],
                True,
            ),
        )
    }
    await client.create_workflow(
        "another owner's", {"steps": [telegram_step("step1", "{{ input.text }}")]}, is_public=True
    )
    await tendril.client(other.api_key).create_workflow(
        "other", {"steps": [telegram_step("step1", "{{ input.text }}")]}, is_public=True
    )

    def agent(*allowed: str) -> AgentPrincipal:
        return AgentPrincipal(uuid.uuid4(), uuid.UUID(owner.id), frozenset(allowed))

    workflows = tendril.core.workflows
    names = lambda records: {r.name for r in records}  # noqa: E731
    assert names(await workflows.runnable_by(agent("telegram"))) == {
        "telegram by slug",
        "telegram by connection",
        "another owner's",
    }
    assert names(await workflows.runnable_by(agent("telegram", "http"))) == {
        "telegram by slug",
        "telegram by connection",
        "another owner's",
        "http",
        "http then telegram",
    }
    assert names(await workflows.runnable_by(agent("slack"))) == {"slack"}
    assert await workflows.runnable_by(agent()) == []
    telegram = agent("telegram")
    assert (
        await workflows.runnable(telegram, uuid.UUID(made["telegram by slug"].id))
    ).name == "telegram by slug"
    for name in ("telegram, private", "http", "slack"):
        with pytest.raises(Exception, match="workflow not found"):
            await workflows.runnable(telegram, uuid.UUID(made[name].id))
    # A workflow whose connection is gone is offered to no agent.
    await client.delete_connection(started.connection.id)
    assert "telegram by connection" not in names(await workflows.runnable_by(telegram))


async def test_the_python_client_and_the_audit_trail(tendril: Tendril) -> None:
    owner = await tendril.new_owner()
    client = tendril.client(owner.api_key)
    created = await client.create_workflow(
        "New Workflow", SEED_CREATE["definition"], description="Optional description"
    )
    assert [w.id for w in await client.workflows()] == [created.id]
    assert [w.id for w in await client.workflows(limit=1)] == [created.id]
    assert (await client.workflow(created.id)).definition == SEED_CREATE["definition"]
    changed = await client.update_workflow(created.id, is_public=True, description="Now public")
    assert (changed.is_public, changed.description, changed.name) == (True, "Now public", "New Workflow")
    with pytest.raises(TendrilApiError) as caught:
        await client.update_workflow(
            created.id, definition={"steps": [{"name": "s", "type": "delay", "config": {}}]}
        )
    assert caught.value.status == 400 and "step 's' (1): config.seconds is required" in caught.value.message
    await client.delete_workflow(created.id)
    assert await client.workflows() == []

    page = await client.audit(kind="workflow")
    assert [(e.kind, e.detail) for e in reversed(page.events)] == [
        ("workflow.create", {"workflow": created.id, "name": "New Workflow"}),
        (
            "workflow.update",
            {"workflow": created.id, "name": "New Workflow", "changed": ["description", "isPublic"]},
        ),
        ("workflow.delete", {"workflow": created.id, "name": "New Workflow"}),
    ]
    assert all(e.actor.type == "key" for e in page.events)
